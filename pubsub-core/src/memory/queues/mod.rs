//! The queue broker: queues and their bindings (the topology), topic routing to them,
//! competing consumers, dead-letter queues, and the reply addresses of requests (direct
//! reply-to), as a RabbitMQ node's queues behave.

mod consumer;
pub(super) mod queue;
mod routing;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use self::consumer::MemoryConsumer;
use self::queue::Queue;
use super::connection::Connection;
use super::error::InspectError;
use super::replies::ReplyInbox;
use super::signal::BrokerSignal;
use super::sync::{lock, read, write};
use crate::metadata::Message;
use crate::pattern::Pattern;
use crate::router::Router;
use crate::transport::{Consumer, Destination, Source, Subscription, TransportError};

/// The queues of one in-memory broker.
#[derive(Default)]
pub(super) struct QueueBroker {
    /// Most ready messages per queue (reject-publish past it).
    max_length: Option<usize>,
    /// The reply addresses of the connections that made requests.
    replies: Mutex<HashMap<String, Arc<ReplyInbox>>>,
    /// Replies no request waited for.
    dropped_replies: AtomicU64,
    /// Shared with the consumers of live queues, which remove theirs when dropped.
    topology: Arc<TopologyCell>,
    signal: Arc<BrokerSignal>,
    /// Publishes no queue was bound for.
    unroutable: AtomicU64,
    next_consumer: AtomicU64,
}

/// The current topology, and the lock that serialises its changes.
#[derive(Default)]
pub(super) struct TopologyCell {
    current: RwLock<Arc<Topology>>,
    declare: Mutex<()>,
}

impl TopologyCell {
    fn get(&self) -> Arc<Topology> {
        Arc::clone(&read(&self.current))
    }

    /// Replaces the topology with `change` applied to its queues and bindings.
    fn change<T>(
        &self,
        change: impl FnOnce(&mut HashMap<String, Arc<Queue>>, &mut Vec<(Pattern, Arc<Queue>)>) -> T,
    ) -> T {
        let _serial = lock(&self.declare);
        let current = self.get();
        let mut queues = current.queues.clone();
        let mut bindings = current.bindings.clone();
        let changed = change(&mut queues, &mut bindings);
        let router = Router::new(bindings.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>());
        *write(&self.current) = Arc::new(Topology {
            queues,
            bindings,
            router,
        });
        changed
    }

    /// Removes the queue `name` and its bindings (a live queue whose consumer went).
    pub(super) fn remove(&self, name: &str) {
        self.change(|queues, bindings| {
            queues.remove(name);
            bindings.retain(|(_, queue)| queue.name != name);
        });
    }
}

/// The queues and bindings at one moment: replaced whole on every change, so that routing
/// reads it without a lock held.
#[derive(Default)]
pub(super) struct Topology {
    pub(super) queues: HashMap<String, Arc<Queue>>,
    bindings: Vec<(Pattern, Arc<Queue>)>,
    router: Router,
}

impl QueueBroker {
    pub(super) fn new(signal: Arc<BrokerSignal>, max_length: Option<usize>) -> Self {
        Self {
            max_length,
            signal,
            ..Self::default()
        }
    }

    pub(super) fn topology(&self) -> Arc<Topology> {
        self.topology.get()
    }

    pub(super) fn queue(&self, name: &str) -> Option<Arc<Queue>> {
        self.topology().queues.get(name).cloned()
    }

    /// The queue of `service`; an error naming the services whose queues exist if it was
    /// never declared.
    pub(super) fn existing_queue(&self, service: &str) -> Result<Arc<Queue>, InspectError> {
        let topology = self.topology();
        topology.queues.get(service).cloned().ok_or_else(|| {
            let mut known: Vec<String> = topology.queues.keys().cloned().collect();
            known.sort();
            InspectError::UnknownQueue {
                service: service.to_owned(),
                known,
            }
        })
    }

    /// Publishes no queue was bound for.
    pub(super) fn unroutable(&self) -> u64 {
        self.unroutable.load(Ordering::Relaxed)
    }

    /// Delivers a published message: to every queue bound to its key, to the named queue,
    /// or to the request waiting at a reply address.
    pub(super) fn publish(
        &self,
        message: &Arc<Message>,
        destination: Destination,
    ) -> Result<(), TransportError> {
        match destination {
            Destination::Topic => self.route(message),
            Destination::Queue(name) => match self.queue(&name) {
                Some(queue) => routing::push_all(message, [&queue]),
                None => Err(self.refuse_unroutable(message)),
            },
            Destination::Reply(address) => {
                let inbox = lock(&self.replies).get(&address).cloned();
                // like direct reply-to: a reply nobody waits for is dropped, never refused
                if !inbox.is_some_and(|inbox| inbox.deliver(Message::clone(message))) {
                    self.dropped_replies.fetch_add(1, Ordering::Relaxed);
                    let correlation_id = message.metadata.correlation_id.as_deref();
                    tracing::debug!(%address, ?correlation_id, "no request waits for this reply (answered already, or its caller gave up); dropped");
                }
                Ok(())
            }
            Destination::Stream { .. } => Err(TransportError::Unsupported {
                what: "publishing to a stream (use MemoryTransport::stream_backed())",
                transport: "memory",
            }),
        }
    }

    /// Makes `inbox` reachable at its reply address (idempotent).
    pub(super) fn open_inbox(&self, inbox: &Arc<ReplyInbox>) {
        lock(&self.replies)
            .entry(inbox.address.clone())
            .or_insert_with(|| Arc::clone(inbox));
    }

    /// Replies that found no request waiting: a second answer to one request, or one
    /// that came after its caller gave up.
    pub(super) fn dropped_replies(&self) -> u64 {
        self.dropped_replies.load(Ordering::Relaxed)
    }

    /// Declares what `subscription` needs; returns the queue to consume: the service's
    /// queue, its dead-letter queue, or a live subscription's private queue.
    pub(super) fn declare(
        &self,
        subscription: &Subscription,
    ) -> Result<Arc<Queue>, TransportError> {
        let patterns = match &subscription.source {
            Source::Queue(source) => &source.patterns,
            Source::DeadLetters => &Vec::new(),
            Source::Live(live) => {
                let queue = Queue::live(live.queue.clone(), Arc::clone(&self.signal));
                return self.declare_queue(&live.queue, &live.patterns, || queue);
            }
            Source::Stream(_) => {
                return Err(TransportError::Unsupported {
                    what: "stream subscriptions (use MemoryTransport::stream_backed())",
                    transport: "memory",
                });
            }
        };
        let service = &subscription.service;
        let queue = self.declare_queue(service, patterns, || {
            Queue::service(service.clone(), Arc::clone(&self.signal), self.max_length)
        })?;
        match (&subscription.source, &queue.dead_letters) {
            (Source::DeadLetters, Some(dlq)) => Ok(Arc::clone(dlq)),
            _ => Ok(queue),
        }
    }

    /// Consumes the queue `subscription` names, on `connection`; a live subscription's
    /// queue is removed when the consumer is dropped.
    pub(super) fn consume(
        &self,
        subscription: &Subscription,
        connection: &Arc<Connection>,
    ) -> Result<Box<dyn Consumer>, TransportError> {
        let queue = self.declare(subscription)?;
        let id = self.next_consumer.fetch_add(1, Ordering::Relaxed);
        queue.add_consumer(id, usize::from(subscription.prefetch));
        connection.opened_consumer(&queue, id);
        let live = matches!(subscription.source, Source::Live(_));
        Ok(Box::new(MemoryConsumer {
            queue,
            id,
            connection: Arc::clone(connection),
            removes: live.then(|| Arc::clone(&self.topology)),
        }))
    }

    /// Whether no queue has work in flight (what waits in a live subscription's queue is
    /// its reader's).
    pub(super) fn is_idle(&self) -> bool {
        self.topology().queues.values().all(|q| {
            q.live || !q.is_busy() && q.dead_letters.as_ref().is_none_or(|dlq| !dlq.is_busy())
        })
    }

    /// Declares the queue `name` (made by `make` if new) bound to `patterns`.
    fn declare_queue(
        &self,
        name: &str,
        patterns: &[String],
        make: impl FnOnce() -> Queue,
    ) -> Result<Arc<Queue>, TransportError> {
        let patterns = patterns
            .iter()
            .map(|p| Pattern::new(p.as_str()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TransportError::Topology {
                message: e.to_string(),
                source: Some(Arc::new(e)),
            })?;
        Ok(self.topology.change(|queues, bindings| {
            let queue = Arc::clone(
                queues
                    .entry(name.to_owned())
                    .or_insert_with(|| Arc::new(make())),
            );
            for pattern in patterns {
                let bound = bindings
                    .iter()
                    .any(|(p, q)| *p == pattern && Arc::ptr_eq(q, &queue));
                if !bound {
                    bindings.push((pattern, Arc::clone(&queue)));
                }
            }
            queue
        }))
    }
}
