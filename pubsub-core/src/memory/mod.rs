//! The in-memory transport: a broker in the process, with RabbitMQ's semantics.
//!
//! Like a RabbitMQ node it has queues and streams ([`MemoryTransport`] is a connection to
//! it): topic routing to one queue per service, competing consumers on a shared queue,
//! prefetch, ack / dead-letter, redelivery of what a departed consumer left unsettled, an
//! inspectable dead-letter queue per service; and append-only streams with offsets, named
//! consumers and error streams. [`MemoryTransport::new`] routes topic publishes to queues,
//! as the AMQP transport does; [`MemoryTransport::stream_backed`] appends them to streams,
//! as the RabbitMQ Streams transport does.

mod broker;
mod connection;
mod error;
mod inspect;
mod queues;
mod replies;
mod signal;
mod streams;
mod sync;
mod transport;

use std::sync::Arc;

use broker::{Broker, Topics};
use connection::Connection;
pub use error::InspectError;
pub use inspect::QueueDepth;
pub use streams::retention::MAX_MEMORY_STREAM_LENGTH;

use crate::stream::{Retention, StreamNaming};

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
/// assert!(same_broker.dead_lettered("orders").is_err()); // no such queue yet
/// ```
#[derive(Clone)]
pub struct MemoryTransport {
    broker: Arc<Broker>,
    connection: Arc<Connection>,
}

impl Default for MemoryTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let topology = self.broker.queues.topology();
        f.debug_struct("MemoryTransport")
            .field("topics", &self.broker.topics)
            .field("queues", &topology.queues.keys().collect::<Vec<_>>())
            .field("streams", &self.broker.streams.names())
            .finish_non_exhaustive()
    }
}

impl MemoryTransport {
    /// A new, empty broker whose topic publishes go to the queues bound to their key, as
    /// on the AMQP transport.
    pub fn new() -> Self {
        Self::on(Broker::new(
            Topics::Queues,
            None,
            StreamNaming::default(),
            Retention::default(),
        ))
    }

    /// A new, empty broker whose queues hold at most `max_length` ready messages each; a
    /// publish to a full queue fails with [`TransportError::Nacked`], as RabbitMQ's
    /// `x-overflow: reject-publish` does, so that publishers feel back-pressure.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use pubsub::{MemoryTransport, Message, transport::{Bytes, Subscription, Transport, TransportError}};
    /// let broker = MemoryTransport::with_max_length(1);
    /// broker.declare(&Subscription::queue("jobs", ["job.#"])).await.unwrap();
    /// let job = || Message::new("job.run", Bytes::from_static(b"{}"));
    /// broker.publish(job().into()).await.unwrap();
    /// let full = broker.publish(job().into()).await;
    /// assert!(matches!(full, Err(TransportError::Nacked { .. })));
    /// # }
    /// ```
    ///
    /// [`TransportError::Nacked`]: crate::transport::TransportError::Nacked
    pub fn with_max_length(max_length: usize) -> Self {
        Self::on(Broker::new(
            Topics::Queues,
            Some(max_length),
            StreamNaming::default(),
            Retention::default(),
        ))
    }

    /// A new, empty broker that behaves like the RabbitMQ Streams transport: every event
    /// published is appended to the stream of its domain (named by
    /// [`StreamNaming::default`], `events.order`), each an append-only log with offsets
    /// that keeps at most [`MAX_MEMORY_STREAM_LENGTH`] messages (other names and
    /// retention: [`stream_backed_with`](Self::stream_backed_with)); a bus on it reads the
    /// streams its handlers need with a consumer named after its service, whose offset is
    /// stored after handling; single active consumer; each service's failures go to its
    /// error stream; super streams if the naming has some
    /// ([`StreamNaming::super_stream`]), each partition its own log. Its capabilities are
    /// [`Capabilities::stream`](crate::transport::Capabilities::stream): no requeue, retries in
    /// process.
    ///
    /// ```
    /// use pubsub::prelude::*;
    /// use pubsub::{Bus, MemoryTransport};
    ///
    /// #[derive(Debug, Clone, Serialize, Deserialize, Event)]
    /// #[event(domain = "room", action = "said")]
    /// struct Said { text: String }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> pubsub::Result<()> {
    /// let broker = MemoryTransport::stream_backed();
    /// let chat = Bus::publisher("chat", broker.clone());
    /// chat.publish(&Said { text: "hi".into() }).await?;
    /// assert_eq!(broker.stream_length("events.room")?, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn stream_backed() -> Self {
        Self::stream_backed_with(StreamNaming::default(), Retention::default())
    }

    /// Like [`stream_backed`](Self::stream_backed), with these stream names, each stream
    /// created with this retention, as the RabbitMQ Streams transport creates its streams:
    /// past the maximum count or bytes the oldest messages go, and messages older than the
    /// maximum age go (checked whenever the stream is appended to or read). Offsets never
    /// change; a consumer whose next offset was removed goes on from the oldest message
    /// kept.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> pubsub::Result<()> {
    /// use pubsub::{MemoryTransport, Message, stream::{Retention, StreamNaming}, transport::{Bytes, Transport}};
    /// let retention = Retention::default().max_length_bytes(10);
    /// let broker = MemoryTransport::stream_backed_with(StreamNaming::default(), retention);
    /// for _ in 0..3 {
    ///     broker.publish(Message::new("room.said", Bytes::from_static(b"12345")).into()).await?;
    /// }
    /// assert_eq!(broker.stream_length("events.room")?, 2); // 10 bytes of bodies
    /// let (oldest, _) = &broker.stream_messages("events.room")?[0];
    /// assert_eq!(*oldest, 1); // the oldest went; offsets never change
    /// # Ok(())
    /// # }
    /// ```
    pub fn stream_backed_with(naming: StreamNaming, retention: Retention) -> Self {
        Self::on(Broker::new(Topics::Streams, None, naming, retention))
    }

    /// Another connection to the same broker: closing it leaves this one open.
    pub fn connection(&self) -> Self {
        Self {
            broker: Arc::clone(&self.broker),
            connection: Arc::default(),
        }
    }

    fn on(broker: Broker) -> Self {
        Self {
            broker: Arc::new(broker),
            connection: Arc::default(),
        }
    }
}
