//! The in-memory transport: a broker in the process, with RabbitMQ's semantics.
//!
//! Topic routing to one queue per service, competing consumers on a shared queue,
//! prefetch, ack / dead-letter, redelivery of what a departed consumer left unsettled,
//! and an inspectable dead-letter queue per service.

mod queue;

use std::collections::HashMap;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;

pub use queue::DeadLetteredMessage;
use queue::{BrokerSignal, Queue, Take};

use crate::error::{Error, TransportError};
use crate::metadata::Message;
use crate::pattern::Pattern;
use crate::router::Router;
use crate::transport::{Acker, Consumer, Delivery, Settlement, Subscription, Transport};

thread_local! {
    /// Reused routing buffer: publishing allocates nothing for the lookup.
    static ROUTE_SCRATCH: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A RabbitMQ look-alike living in the process: the default transport, for examples and
/// for unit tests of handlers. Clones share one broker, so several buses (services) can
/// talk through it.
///
/// ```
/// use pubsub::MemoryTransport;
/// let transport = MemoryTransport::new();
/// let same_broker = transport.clone();
/// assert!(same_broker.dead_letters("orders").is_empty());
/// ```
#[derive(Clone, Default)]
pub struct MemoryTransport {
    broker: Arc<Broker>,
}

#[derive(Default)]
struct Broker {
    topology: RwLock<Arc<Topology>>,
    /// Serialises topology changes.
    declare: Mutex<()>,
    signal: Arc<BrokerSignal>,
    recording: AtomicBool,
    published: Mutex<Vec<Message>>,
    unroutable: AtomicU64,
    next_consumer: AtomicU64,
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
    /// Messages delivered and not yet settled.
    pub unacked: usize,
    /// Attached consumers.
    pub consumers: usize,
    /// Messages in the dead-letter queue.
    pub dead_lettered: usize,
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

    /// The dead-letter queue of `service`, oldest first.
    pub fn dead_letters(&self, service: &str) -> Vec<DeadLetteredMessage> {
        self.queue(service)
            .map(|q| q.lock().dead.clone())
            .unwrap_or_default()
    }

    /// Every dead-lettered message of every service.
    pub fn all_dead_letters(&self) -> Vec<DeadLetteredMessage> {
        let topology = self.topology();
        let mut names: Vec<&String> = topology.queues.keys().collect();
        names.sort();
        names
            .into_iter()
            .flat_map(|n| topology.queues[n].lock().dead.clone())
            .collect()
    }

    /// Moves the dead letters of `service` back into its queue (as redeliveries, without
    /// their death headers); returns how many.
    pub fn replay_dead_letters(&self, service: &str) -> usize {
        self.queue(service)
            .map(|q| q.replay_dead_letters())
            .unwrap_or(0)
    }

    /// Counts of the queue of `service`, if it was declared.
    pub fn queue_depth(&self, service: &str) -> Option<QueueDepth> {
        self.queue(service).map(|q| {
            let state = q.lock();
            QueueDepth {
                ready: state.ready.len(),
                unacked: state.unacked.len(),
                consumers: state.consumers.len(),
                dead_lettered: state.dead.len(),
            }
        })
    }

    /// Whether nothing is in flight: no unsettled delivery, and no ready message in a queue
    /// that has a consumer to take it.
    pub fn is_idle(&self) -> bool {
        self.topology().queues.values().all(|q| !q.is_busy())
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

    fn declare_queue(&self, subscription: &Subscription) -> Result<Arc<Queue>, TransportError> {
        let patterns = subscription
            .patterns
            .iter()
            .map(|p| Pattern::new(p.as_str()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TransportError::Topology(e.to_string()))?;
        let _serial = lock(&self.broker.declare);
        let current = self.topology();
        let mut queues = current.queues.clone();
        let queue = Arc::clone(
            queues
                .entry(subscription.service.clone())
                .or_insert_with(|| {
                    Arc::new(Queue::new(
                        subscription.service.clone(),
                        Arc::clone(&self.broker.signal),
                    ))
                }),
        );
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

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[async_trait]
impl Transport for MemoryTransport {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn publish(&self, message: Message) -> Result<(), TransportError> {
        if self.broker.recording.load(Ordering::Relaxed) {
            lock(&self.broker.published).push(message.clone());
        }
        let message = Arc::new(message);
        let topology = self.topology();
        let routed = ROUTE_SCRATCH.with_borrow_mut(|matched| {
            topology.router.route_into(&message.metadata.key, matched);
            // bindings are deduplicated per (pattern, queue); one copy per queue
            let mut routed = 0;
            for (n, &index) in matched.iter().enumerate() {
                let queue = &topology.bindings[index].1;
                let first = !matched[..n]
                    .iter()
                    .any(|&earlier| Arc::ptr_eq(&topology.bindings[earlier].1, queue));
                if first {
                    queue.push(Arc::clone(&message));
                    routed += 1;
                }
            }
            routed
        });
        if routed == 0 {
            self.broker.unroutable.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(key = %message.metadata.key, id = %message.metadata.id, "unroutable: no queue is bound for this key");
        }
        Ok(())
    }

    async fn declare(&self, subscription: &Subscription) -> Result<(), TransportError> {
        self.declare_queue(subscription).map(drop)
    }

    async fn consume(
        &self,
        subscription: &Subscription,
    ) -> Result<Box<dyn Consumer>, TransportError> {
        let queue = self.declare_queue(subscription)?;
        let id = self.broker.next_consumer.fetch_add(1, Ordering::Relaxed);
        queue.add_consumer(id, usize::from(subscription.prefetch));
        Ok(Box::new(MemoryConsumer { queue, id }))
    }
}

struct MemoryConsumer {
    queue: Arc<Queue>,
    id: u64,
}

impl MemoryConsumer {
    /// `None` means "wait"; `Some(None)` means the consumer is done.
    fn delivery(&self, take: Take) -> Option<Option<Result<Delivery, TransportError>>> {
        match take {
            Take::Message {
                message,
                redelivered,
                tag,
            } => Some(Some(Ok(Delivery {
                message,
                redelivered,
                acker: Box::new(MemoryAcker {
                    queue: Arc::clone(&self.queue),
                    tag: Some(tag),
                }),
            }))),
            Take::Cancelled => Some(None),
            Take::Wait => None,
        }
    }
}

#[async_trait]
impl Consumer for MemoryConsumer {
    async fn next(&mut self) -> Option<Result<Delivery, TransportError>> {
        // Fast path without arming a notification; a `Wait` here flags us as waiting,
        // so every later change wakes us.
        if let Some(delivery) = self.delivery(self.queue.take(self.id)) {
            return delivery;
        }
        loop {
            let mut changed = pin!(self.queue.changed.notified());
            changed.as_mut().enable();
            match self.delivery(self.queue.take(self.id)) {
                Some(delivery) => return delivery,
                None => changed.await,
            }
        }
    }

    async fn cancel(&mut self) -> Result<(), TransportError> {
        self.queue.cancel(self.id);
        Ok(())
    }
}

impl Drop for MemoryConsumer {
    fn drop(&mut self) {
        self.queue.remove_consumer(self.id);
    }
}

/// Settles one delivery; one dropped unsettled requeues it, as a closed channel would.
struct MemoryAcker {
    queue: Arc<Queue>,
    tag: Option<u64>,
}

#[async_trait]
impl Acker for MemoryAcker {
    async fn settle(mut self: Box<Self>, settlement: Settlement) -> Result<(), TransportError> {
        let Some(tag) = self.tag.take() else {
            return Err(TransportError::Settle("delivery already settled".into()));
        };
        if self.queue.settle(tag, settlement) {
            Ok(())
        } else {
            Err(TransportError::Settle(format!(
                "delivery {tag} on queue {} is unknown: its consumer went away and the message was requeued",
                self.queue.name
            )))
        }
    }
}

impl Drop for MemoryAcker {
    fn drop(&mut self) {
        if let Some(tag) = self.tag.take() {
            self.queue.settle(tag, Settlement::Requeue);
        }
    }
}
