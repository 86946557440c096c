//! [`DeadLetteredMessage`]: a message in a service's dead-letter queue, with why it is there.

use crate::metadata::Message;

impl DeadLetteredMessage {
    /// A dead letter as its headers describe it: the reason from
    /// [`HEADER_DEATH_REASON`](crate::headers::HEADER_DEATH_REASON), the handlers from [`HEADER_FAILED_HANDLERS`](crate::headers::HEADER_FAILED_HANDLERS).
    ///
    /// ```
    /// use pubsub_core::{Message, headers::HEADER_DEATH_REASON, transport::DeadLetteredMessage};
    ///
    /// let mut message = Message::new("order.created", b"{}".to_vec());
    /// message.metadata.headers.insert(HEADER_DEATH_REASON.into(), "boom".into());
    /// let dead = DeadLetteredMessage::new(message, "billing");
    /// assert_eq!((dead.reason.as_str(), dead.queue.as_str()), ("boom", "billing"));
    /// ```
    pub fn new(message: Message, queue: &str) -> Self {
        let (reason, failed_handlers) = message.metadata.death();
        Self {
            message,
            queue: queue.to_owned(),
            reason,
            failed_handlers,
        }
    }
}

/// A message in a dead-letter queue, with why it got there.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetteredMessage {
    /// The message, with `x-death-reason` and `x-failed-handlers` headers added.
    pub message: Message,
    /// The queue (service) it was dead-lettered from.
    pub queue: String,
    /// Why.
    pub reason: String,
    /// The handlers that failed.
    pub failed_handlers: Vec<String>,
}
