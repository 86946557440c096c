//! [`InspectError`]: what inspecting the in-memory broker reports.

/// A name the in-memory broker does not know, from its inspection methods
/// ([`MemoryTransport::queue_depth`](crate::MemoryTransport::queue_depth),
/// [`stream_messages`](crate::MemoryTransport::stream_messages), ...): a typo must not look
/// like an empty queue or stream.
///
/// ```
/// use pubsub::MemoryTransport;
/// use pubsub::memory::InspectError;
///
/// let broker = MemoryTransport::new();
/// let typo = broker.queue_depth("ordres");
/// assert!(matches!(typo, Err(InspectError::UnknownQueue { .. })));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    /// The broker has no queue of this service (it was never declared).
    #[error("the in-memory broker has no queue for service {service:?}; known services: {known:?}")]
    UnknownQueue {
        /// The service asked for.
        service: String,
        /// The services whose queues exist.
        known: Vec<String>,
    },
    /// The broker has no stream of this name (nothing was published to it and no consumer
    /// declared it).
    #[error("the in-memory broker has no stream {stream:?}; known streams: {known:?}")]
    UnknownStream {
        /// The stream asked for.
        stream: String,
        /// The streams that exist.
        known: Vec<String>,
    },
}
