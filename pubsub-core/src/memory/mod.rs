//! The in-memory transport: a broker in the process, with RabbitMQ's semantics.
//!
//! Topic routing to one queue per service, competing consumers on a shared queue,
//! prefetch, ack / dead-letter, redelivery of what a departed consumer left unsettled,
//! and an inspectable dead-letter queue per service. In stream mode
//! ([`MemoryTransport::streams`]), an append-only log per stream instead.

mod consumer;
mod queue;
mod stream;
mod stream_consumer;
mod streams;

use std::collections::HashMap;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::oneshot;

use consumer::MemoryConsumer;
use queue::{BrokerSignal, Queue};
use stream::Log;
pub use streams::DEFAULT_MEMORY_STREAM_LENGTH;
use streams::Streams;

use crate::error::{Error, TransportError};
use crate::health::{ConnectionHealth, ConnectionState, TransportHealth};
use crate::metadata::Message;
use crate::pattern::Pattern;
use crate::router::Router;
use crate::stream::StreamNaming;
use crate::transport::{
    Capabilities, Confirmation, Consumer, DeadLetteredMessage, DelayedRedelivery, Destination,
    Outgoing, Source, Subscription, Transport,
};

thread_local! {
    /// Reused routing buffer: publishing allocates nothing for the lookup.
    static ROUTE_SCRATCH: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A RabbitMQ look-alike living in the process: the default transport, for examples and
/// for unit tests of handlers. Clones share one broker and one connection, so several
/// buses (services) can talk through it; [`connection`](Self::connection) opens another
/// connection to the same broker, closed on its own.
///
/// Like RabbitMQ it routes by topic to one queue per service, serves competing consumers,
/// honours prefetch, requeues what a departed consumer left unsettled, counts deliveries,
/// delays retries, answers requests, refuses publishes to a full queue
/// ([`with_max_length`](Self::with_max_length)) and keeps a dead-letter queue per service.
///
/// ```
/// use pubsub::MemoryTransport;
/// let transport = MemoryTransport::new();
/// let same_broker = transport.clone();
/// assert!(same_broker.dead_letters("orders").is_err()); // no such queue yet
/// ```
#[derive(Clone, Default)]
pub struct MemoryTransport {
    broker: Arc<Broker>,
    connection: Arc<Connection>,
}

/// One connection to the in-memory broker.
#[derive(Debug, Default)]
pub(crate) struct Connection {
    pub(crate) closed: AtomicBool,
    /// The consumers opened on it: closing the connection ends them, as the broker does,
    /// requeueing what they left unsettled.
    consumers: Mutex<Vec<(Arc<Queue>, u64)>>,
    /// The stream readers opened on it: closing the connection detaches them, storing
    /// nothing more.
    readers: Mutex<Vec<(Arc<Log>, u64)>>,
}

#[derive(Default)]
struct Broker {
    /// Most ready messages per queue (reject-publish past it).
    max_length: Option<usize>,
    /// Requests waiting for their reply, by reply address.
    replies: Mutex<HashMap<String, oneshot::Sender<Message>>>,
    topology: RwLock<Arc<Topology>>,
    /// Serialises topology changes.
    declare: Mutex<()>,
    signal: Arc<BrokerSignal>,
    recording: AtomicBool,
    published: Mutex<Vec<Message>>,
    unroutable: AtomicU64,
    next_consumer: AtomicU64,
    /// Stream mode: the streams, and no queues.
    streams: Option<Streams>,
}

#[derive(Default)]
struct Topology {
    queues: HashMap<String, Arc<Queue>>,
    bindings: Vec<(Pattern, Arc<Queue>)>,
    router: Router,
}

/// Counts of one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct QueueDepth {
    /// Messages waiting for a consumer.
    pub ready: usize,
    /// Messages delivered (pushed to a consumer) and not yet settled.
    pub unacked: usize,
    /// Attached consumers.
    pub consumers: usize,
    /// Messages in the dead-letter queue.
    pub dead_lettered: usize,
    /// Messages waiting out a retry delay before they come back.
    pub delayed: usize,
}

impl std::fmt::Debug for MemoryTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let topology = self.topology();
        f.debug_struct("MemoryTransport")
            .field("queues", &topology.queues.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl MemoryTransport {
    /// A new, empty broker.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new, empty broker whose queues hold at most `max_length` ready messages each; a
    /// publish to a full queue fails with [`TransportError::Nacked`], as RabbitMQ's
    /// `x-overflow: reject-publish` does, so that publishers feel back-pressure.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use pubsub::{Bytes, Message, MemoryTransport, Subscription, Transport, TransportError};
    /// let broker = MemoryTransport::with_max_length(1);
    /// broker.declare(&Subscription::queue("jobs", ["job.#"])).await.unwrap();
    /// let job = || Message::new("job.run", Bytes::from_static(b"{}"));
    /// broker.publish(job().into()).await.unwrap();
    /// let full = broker.publish(job().into()).await;
    /// assert!(matches!(full, Err(TransportError::Nacked { .. })));
    /// # }
    /// ```
    pub fn with_max_length(max_length: usize) -> Self {
        Self {
            broker: Arc::new(Broker {
                max_length: Some(max_length),
                ..Broker::default()
            }),
            connection: Arc::default(),
        }
    }

    /// Another connection to the same broker (in the same mode): closing it leaves this
    /// one open.
    pub fn connection(&self) -> Self {
        Self {
            broker: Arc::clone(&self.broker),
            connection: Arc::default(),
        }
    }

    fn check_open(&self) -> Result<(), TransportError> {
        if self.connection.closed.load(Ordering::SeqCst) {
            Err(TransportError::Closed)
        } else {
            Ok(())
        }
    }

    fn topology(&self) -> Arc<Topology> {
        let guard = self
            .broker
            .topology
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(&guard)
    }

    fn queue(&self, name: &str) -> Option<Arc<Queue>> {
        self.topology().queues.get(name).cloned()
    }

    /// Starts keeping a copy of every published message (see [`published`](Self::published)).
    pub fn record_published(&self) {
        self.broker.recording.store(true, Ordering::SeqCst);
    }

    /// Every message published since [`record_published`](Self::record_published), in order.
    pub fn published(&self) -> Vec<Message> {
        lock(&self.broker.published).clone()
    }

    /// Messages published that no queue was bound for (RabbitMQ would return them to a
    /// `mandatory` publisher).
    pub fn unroutable(&self) -> u64 {
        self.broker.unroutable.load(Ordering::Relaxed)
    }

    /// The dead-letter queue of `service`, oldest first; an error if no queue of that
    /// service was ever declared (a typo must not look like "no dead letters"). In stream
    /// mode, the service's error stream (see [`error_stream`](Self::error_stream)).
    pub fn dead_letters(&self, service: &str) -> Result<Vec<DeadLetteredMessage>, Error> {
        if self.stream_mode().is_some() {
            return self.stream_dead_letters(service);
        }
        self.existing_queue(service).map(|q| dead_lettered(&q))
    }

    fn existing_queue(&self, service: &str) -> Result<Arc<Queue>, Error> {
        self.queue(service).ok_or_else(|| {
            let mut known: Vec<String> = self.topology().queues.keys().cloned().collect();
            known.sort();
            Error::UnknownQueue {
                service: service.to_owned(),
                known,
            }
        })
    }

    /// Every dead-lettered message of every service.
    pub fn all_dead_letters(&self) -> Vec<DeadLetteredMessage> {
        let topology = self.topology();
        let mut names: Vec<&String> = topology.queues.keys().collect();
        names.sort();
        names
            .into_iter()
            .flat_map(|n| dead_lettered(&topology.queues[n]))
            .collect()
    }

    /// Moves the dead letters of `service` back into its queue, as redeliveries without
    /// their reason; each keeps the names of the handlers that failed
    /// ([`HEADER_FAILED_HANDLERS`](crate::HEADER_FAILED_HANDLERS)), so only those run again
    /// and a handler that had succeeded (an email sent) is not run twice. Returns how many.
    pub fn replay_dead_letters(&self, service: &str) -> Result<usize, Error> {
        self.existing_queue(service)
            .map(|q| q.replay_dead_letters(true))
    }

    /// Like [`replay_dead_letters`](Self::replay_dead_letters), but every matching handler
    /// runs again, those that had succeeded too.
    pub fn replay_dead_letters_to_all(&self, service: &str) -> Result<usize, Error> {
        self.existing_queue(service)
            .map(|q| q.replay_dead_letters(false))
    }

    /// Counts of the queue of `service`; an error if it was never declared.
    pub fn queue_depth(&self, service: &str) -> Result<QueueDepth, Error> {
        self.existing_queue(service).map(|q| {
            let state = q.lock();
            QueueDepth {
                ready: state.ready.len(),
                unacked: state.unacked.len() + state.assigned(),
                consumers: state.consumers.len(),
                dead_lettered: q.dead_letters.as_ref().map_or(0, |dlq| dlq.len()),
                delayed: state.delayed,
            }
        })
    }

    /// Whether nothing is in flight: no unsettled delivery, and no ready message in a queue
    /// that has a consumer to take it.
    pub fn is_idle(&self) -> bool {
        self.streams_idle()
            && self
                .topology()
                .queues
                .values()
                .all(|q| !q.is_busy() && q.dead_letters.as_ref().is_none_or(|dlq| !dlq.is_busy()))
    }

    /// Waits until [`is_idle`](Self::is_idle), at most `timeout`.
    pub async fn wait_idle(&self, timeout: Duration) -> Result<(), Error> {
        let signal = &self.broker.signal;
        let _waiting = signal.waiting();
        let wait = async {
            loop {
                let mut changed = pin!(signal.notify.notified());
                changed.as_mut().enable();
                // Queues are checked one after the other: the view is consistent only if
                // nothing changed meanwhile (a handler publishing to another queue, then
                // settling its own delivery, must not look idle).
                let before = signal.generation();
                if self.is_idle() && signal.generation() == before {
                    return;
                }
                // settles notify; the short tick covers consumers attaching late
                let _ = tokio::time::timeout(Duration::from_millis(50), changed).await;
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| Error::Timeout(timeout, "the in-memory broker did not become idle".into()))
    }

    /// Declares what `subscription` needs; returns the queue to consume: the service's
    /// queue, or its dead-letter queue.
    fn declare_queue(&self, subscription: &Subscription) -> Result<Arc<Queue>, TransportError> {
        self.check_open()?;
        let patterns: &[String] = match &subscription.source {
            Source::Queue(source) => &source.patterns,
            Source::DeadLetters => &[],
            Source::Stream(_) => {
                return Err(TransportError::Unsupported {
                    what: "stream subscriptions (yet)",
                    transport: "memory",
                });
            }
        };
        let queue = self.declare_service_queue(&subscription.service, patterns)?;
        match (&subscription.source, &queue.dead_letters) {
            (Source::DeadLetters, Some(dlq)) => Ok(Arc::clone(dlq)),
            _ => Ok(queue),
        }
    }

    fn declare_service_queue(
        &self,
        service: &str,
        patterns: &[String],
    ) -> Result<Arc<Queue>, TransportError> {
        let patterns = patterns
            .iter()
            .map(|p| Pattern::new(p.as_str()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TransportError::Topology {
                message: e.to_string(),
                source: Some(Arc::new(e)),
            })?;
        let _serial = lock(&self.broker.declare);
        let current = self.topology();
        let mut queues = current.queues.clone();
        let queue = Arc::clone(queues.entry(service.to_owned()).or_insert_with(|| {
            Arc::new(Queue::service(
                service.to_owned(),
                Arc::clone(&self.broker.signal),
                self.broker.max_length,
            ))
        }));
        let mut bindings = current.bindings.clone();
        for pattern in patterns {
            let bound = bindings
                .iter()
                .any(|(p, q)| *p == pattern && Arc::ptr_eq(q, &queue));
            if !bound {
                bindings.push((pattern, Arc::clone(&queue)));
            }
        }
        let router = Router::new(bindings.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>());
        let next = Arc::new(Topology {
            queues,
            bindings,
            router,
        });
        *self
            .broker
            .topology
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = next;
        Ok(queue)
    }
}

/// The dead letters of a service queue.
fn dead_lettered(queue: &Queue) -> Vec<DeadLetteredMessage> {
    queue
        .dead_letters
        .as_ref()
        .map(|dlq| dlq.dead_lettered(&queue.name))
        .unwrap_or_default()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[async_trait]
impl Transport for MemoryTransport {
    fn name(&self) -> &'static str {
        if self.stream_mode().is_some() {
            "memory-streams"
        } else {
            "memory"
        }
    }

    fn capabilities(&self) -> Capabilities {
        if self.stream_mode().is_some() {
            return Capabilities::stream();
        }
        Capabilities {
            delayed_redelivery: DelayedRedelivery::InProcess,
            request_reply: true,
            delivery_count: true,
            ..Capabilities::queue()
        }
    }

    fn stream_naming(&self) -> Option<StreamNaming> {
        self.stream_mode().map(|streams| streams.naming.clone())
    }

    fn health(&self) -> TransportHealth {
        let state = if self.check_open().is_ok() {
            ConnectionState::Up
        } else {
            ConnectionState::Closed
        };
        let mut health = TransportHealth::new(self.name());
        health
            .connections
            .push(ConnectionHealth::new("memory", state));
        health
    }

    async fn dead_letters(
        &self,
        service: &str,
    ) -> Result<Vec<DeadLetteredMessage>, TransportError> {
        self.check_open()?;
        MemoryTransport::dead_letters(self, service)
            .map_err(|e| TransportError::topology(e.to_string()))
    }

    async fn send(&self, outgoing: Outgoing) -> Result<Confirmation, TransportError> {
        self.check_open()?;
        // a long publishing loop gives the other tasks of its thread their turn
        tokio::task::consume_budget().await;
        let Outgoing {
            message,
            destination,
        } = outgoing;
        if self.broker.recording.load(Ordering::Relaxed) {
            lock(&self.broker.published).push(message.clone());
        }
        let message = Arc::new(message);
        if self.stream_mode().is_some() {
            return Ok(Confirmation::ready(self.append(message, destination)));
        }
        let result = match destination {
            Destination::Topic => self.route(&message),
            Destination::Queue(name) => match self.queue(&name) {
                Some(queue) => push_all(&message, [&queue]),
                None => Err(self.refuse_unroutable(&message)),
            },
            Destination::Reply(address) => {
                let waiter = lock(&self.broker.replies).remove(&address);
                match waiter {
                    Some(reply) => {
                        // a requester that gave up dropped its receiver: the reply is lost,
                        // as direct reply-to loses it on the broker
                        let _ = reply.send(Message::clone(&message));
                    }
                    None => {
                        tracing::warn!(%address, id = %message.metadata.id, "no request waits at this reply address; reply dropped")
                    }
                }
                Ok(())
            }
            Destination::Stream { .. } => Err(TransportError::Unsupported {
                what: "streams (yet)",
                transport: "memory",
            }),
        };
        Ok(Confirmation::ready(result))
    }

    async fn declare(&self, subscription: &Subscription) -> Result<(), TransportError> {
        if self.stream_mode().is_some() {
            return self.declare_stream(subscription).map(drop);
        }
        self.declare_queue(subscription).map(drop)
    }

    async fn consume(
        &self,
        subscription: &Subscription,
    ) -> Result<Box<dyn Consumer>, TransportError> {
        if self.stream_mode().is_some() {
            return self.consume_stream(subscription);
        }
        let queue = self.declare_queue(subscription)?;
        let id = self.broker.next_consumer.fetch_add(1, Ordering::Relaxed);
        queue.add_consumer(id, usize::from(subscription.prefetch));
        lock(&self.connection.consumers).push((Arc::clone(&queue), id));
        Ok(Box::new(MemoryConsumer {
            queue,
            id,
            connection: Arc::clone(&self.connection),
        }))
    }

    async fn request(
        &self,
        request: Outgoing,
        timeout: Duration,
    ) -> Result<Message, TransportError> {
        self.check_open()?;
        let Outgoing {
            mut message,
            destination,
        } = request;
        let address = format!("memory.reply-to.{}", uuid::Uuid::now_v7().simple());
        message.metadata.reply_to = Some(address.clone());
        if message.metadata.correlation_id.is_none() {
            message.metadata.correlation_id = Some(message.metadata.id.to_string());
        }
        let (sender, receiver) = oneshot::channel();
        lock(&self.broker.replies).insert(address.clone(), sender);
        let forget = |broker: &Broker| lock(&broker.replies).remove(&address);
        if let Err(error) = self.publish(Outgoing::new(message, destination)).await {
            forget(&self.broker);
            return Err(error);
        }
        match tokio::time::timeout(timeout, receiver).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(TransportError::Closed),
            Err(_) => {
                forget(&self.broker);
                Err(TransportError::TimedOut {
                    operation: "request",
                    after: timeout,
                })
            }
        }
    }

    async fn close(&self) -> Result<(), TransportError> {
        if !self.connection.closed.swap(true, Ordering::SeqCst) {
            // its consumers end (woken to see it), their unsettled deliveries go back to
            // their queues, and settling those later fails
            let consumers = std::mem::take(&mut *lock(&self.connection.consumers));
            for (queue, id) in consumers {
                queue.remove_consumer(id);
            }
            // stream readers leave without storing, as on a lost connection
            let readers = std::mem::take(&mut *lock(&self.connection.readers));
            for (log, id) in readers {
                log.detach(id, false);
            }
        }
        Ok(())
    }
}

impl MemoryTransport {
    /// Routes to every bound queue, once per queue.
    fn route(&self, message: &Arc<Message>) -> Result<(), TransportError> {
        let topology = self.topology();
        let queues: Vec<&Arc<Queue>> = ROUTE_SCRATCH.with_borrow_mut(|matched| {
            topology.router.route_into(&message.metadata.key, matched);
            // bindings are deduplicated per (pattern, queue); one copy per queue
            let mut queues: Vec<&Arc<Queue>> = Vec::with_capacity(matched.len());
            for &index in matched.iter() {
                let queue = &topology.bindings[index].1;
                if !queues.iter().any(|q| Arc::ptr_eq(q, queue)) {
                    queues.push(queue);
                }
            }
            queues
        });
        if queues.is_empty() {
            return Err(self.refuse_unroutable(message));
        }
        push_all(message, queues)
    }

    fn refuse_unroutable(&self, message: &Message) -> TransportError {
        self.broker.unroutable.fetch_add(1, Ordering::Relaxed);
        TransportError::Unroutable {
            message_id: message.metadata.id.to_string(),
            key: message.metadata.key.clone(),
        }
    }
}

/// Pushes to each queue; like RabbitMQ with reject-publish, the queues with room keep
/// their copy and the publish is refused if any queue was full.
fn push_all<'a>(
    message: &Arc<Message>,
    queues: impl IntoIterator<Item = &'a Arc<Queue>>,
) -> Result<(), TransportError> {
    let full: Vec<&str> = queues
        .into_iter()
        .filter(|queue| !queue.push(Arc::clone(message)))
        .map(|queue| queue.name.as_str())
        .collect();
    if full.is_empty() {
        Ok(())
    } else {
        Err(TransportError::Nacked {
            reason: format!("queue(s) {full:?} full (reject-publish)"),
        })
    }
}
