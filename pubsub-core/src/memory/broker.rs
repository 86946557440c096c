//! The broker's state shared by every connection: its queues and bindings (the topology),
//! the replies waited for, and the connections' own state; declaring queues and bindings.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::oneshot;

use super::MemoryTransport;
use super::queue::{BrokerSignal, Queue};
use super::stream::Log;
use super::streams::Streams;
use crate::error::TransportError;
use crate::metadata::Message;
use crate::pattern::Pattern;
use crate::router::Router;
use crate::transport::{Source, Subscription};

/// One connection to the in-memory broker.
#[derive(Debug, Default)]
pub(crate) struct Connection {
    pub(crate) closed: AtomicBool,
    /// The consumers opened on it: closing the connection ends them, as the broker does,
    /// requeueing what they left unsettled.
    pub(super) consumers: Mutex<Vec<(Arc<Queue>, u64)>>,
    /// The stream readers opened on it: closing the connection detaches them, storing
    /// nothing more.
    pub(super) readers: Mutex<Vec<(Arc<Log>, u64)>>,
}

#[derive(Default)]
pub(super) struct Broker {
    /// Most ready messages per queue (reject-publish past it).
    pub(super) max_length: Option<usize>,
    /// Requests waiting for their reply, by reply address.
    pub(super) replies: Mutex<HashMap<String, oneshot::Sender<Message>>>,
    pub(super) topology: RwLock<Arc<Topology>>,
    /// Serialises topology changes.
    pub(super) declare: Mutex<()>,
    pub(super) signal: Arc<BrokerSignal>,
    pub(super) recording: AtomicBool,
    pub(super) published: Mutex<Vec<Message>>,
    pub(super) unroutable: AtomicU64,
    pub(super) next_consumer: AtomicU64,
    /// Stream mode: the streams, and no queues.
    pub(super) streams: Option<Streams>,
}

#[derive(Default)]
pub(super) struct Topology {
    pub(super) queues: HashMap<String, Arc<Queue>>,
    pub(super) bindings: Vec<(Pattern, Arc<Queue>)>,
    pub(super) router: Router,
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MemoryTransport {
    pub(super) fn topology(&self) -> Arc<Topology> {
        let guard = self
            .broker
            .topology
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(&guard)
    }

    pub(super) fn queue(&self, name: &str) -> Option<Arc<Queue>> {
        self.topology().queues.get(name).cloned()
    }

    /// Declares what `subscription` needs; returns the queue to consume: the service's
    /// queue, or its dead-letter queue.
    pub(super) fn declare_queue(
        &self,
        subscription: &Subscription,
    ) -> Result<Arc<Queue>, TransportError> {
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
