//! The in-memory transport: a broker in the process, with RabbitMQ's semantics.
//!
//! Topic routing to one queue per service, competing consumers on a shared queue,
//! prefetch, ack / dead-letter, redelivery of what a departed consumer left unsettled,
//! and an inspectable dead-letter queue per service. In stream mode
//! ([`MemoryTransport::streams`]), an append-only log per stream instead.

mod broker;
mod consumer;
mod inspect;
mod queue;
mod retention;
mod routing;
mod stream;
mod stream_consumer;
mod streams;
mod transport;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use broker::{Broker, Connection};
pub use inspect::QueueDepth;
pub use retention::StreamRetention;
pub use streams::DEFAULT_MEMORY_STREAM_LENGTH;

use crate::error::TransportError;

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
}
