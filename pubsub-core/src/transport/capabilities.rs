//! What a transport can do, stated so that the bus adapts instead of guessing.

/// What a transport can do.
///
/// ```
/// use pubsub::{MemoryTransport, transport::{Capabilities, SettlementModel, Transport}};
/// let caps = MemoryTransport::new().capabilities();
/// assert!(caps.requeue);
/// assert_eq!(caps.settlement, SettlementModel::PerMessage);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// A delivery can be given back to its queue ([`Settlement::Requeue`](crate::transport::Settlement::Requeue))
    /// and is redelivered, flagged as such. Streams cannot: an unsettled delivery there is
    /// simply read again from the last stored offset.
    pub requeue: bool,
    /// How settlements reach the broker.
    pub settlement: SettlementModel,
    /// Whether the transport can deliver a message again after a delay
    /// ([`Settlement::Retry`](crate::transport::Settlement::Retry)), which lets a long retry leave the
    /// prefetch window.
    pub delayed_redelivery: DelayedRedelivery,
    /// Several consumers of one service share its messages (each message to one of them).
    pub competing_consumers: bool,
    /// [`Transport::request`](crate::transport::Transport::request) is implemented.
    pub request_reply: bool,
    /// A consumer can start again from an earlier position (streams).
    pub replay: bool,
    /// The broker reports how often it delivered a message
    /// ([`Delivery::delivery_count`](crate::transport::Delivery::delivery_count)).
    pub delivery_count: bool,
}

/// How a transport settles deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SettlementModel {
    /// Each delivery is acked, rejected or requeued on its own (AMQP queues, memory).
    PerMessage,
    /// The consumer commits an offset: deliveries finish out of order, and only the
    /// contiguous prefix of settled ones may be committed (see
    /// [`OffsetTracker`](crate::transport::OffsetTracker)). Failures go to an error stream.
    OffsetCommit,
}

/// Whether, and how durably, a transport delivers a message again after a delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DelayedRedelivery {
    /// Not supported: the bus retries in process, holding the delivery meanwhile.
    None,
    /// A timer in the process; lost if the process dies (the in-memory transport).
    InProcess,
    /// On the broker (a delay queue); survives restarts.
    Durable,
}

impl Capabilities {
    /// A per-message-ack queue transport with requeue, competing consumers and durable
    /// delayed redelivery, and nothing else: the base AMQP and memory transports extend.
    pub const fn queue() -> Self {
        Self {
            requeue: true,
            settlement: SettlementModel::PerMessage,
            delayed_redelivery: DelayedRedelivery::Durable,
            competing_consumers: true,
            request_reply: false,
            replay: false,
            delivery_count: false,
        }
    }

    /// An offset-commit stream transport: replay, no requeue, no delayed redelivery.
    ///
    /// A log has no requeue: a failed handler is retried **in process**, its delivery held
    /// (and the stored offset held back) meanwhile; after the retries the event goes to the
    /// service's error stream and the offset advances. A delivery abandoned at shutdown is
    /// read again after a restart, from the stored offset.
    ///
    /// ```
    /// use pubsub::{MemoryTransport, transport::{Capabilities, DelayedRedelivery, Transport}};
    /// let caps = MemoryTransport::stream_backed().capabilities();
    /// assert_eq!(caps, Capabilities::stream());
    /// assert!(!caps.requeue && caps.replay);
    /// assert_eq!(caps.delayed_redelivery, DelayedRedelivery::None); // retries in process
    /// ```
    pub const fn stream() -> Self {
        Self {
            requeue: false,
            settlement: SettlementModel::OffsetCommit,
            delayed_redelivery: DelayedRedelivery::None,
            competing_consumers: false,
            request_reply: false,
            replay: true,
            delivery_count: false,
        }
    }
}
