//! One delivery and how it ends.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::error::TransportError;
use crate::headers::{HEADER_ATTEMPTS, HEADER_DEATH_REASON, HEADER_FAILED_HANDLERS};
use crate::metadata::Message;

/// One message handed to a consumer, to be settled exactly once through its [`Acker`].
#[non_exhaustive]
pub struct Delivery {
    /// The message (shared: the dispatcher hands it to every handler without copying).
    pub message: Arc<Message>,
    /// Whether the broker delivered it before.
    pub redelivered: bool,
    /// How often the broker has delivered it, this time included, where the broker says
    /// (quorum queues' `x-delivery-count` + 1, the in-memory broker); `None` where unknown.
    pub delivery_count: Option<u32>,
    /// Its position in a stream; `None` for queues.
    pub offset: Option<u64>,
    /// Settles the delivery.
    pub acker: Box<dyn Acker>,
}

impl Delivery {
    /// A delivery of `message`, settled through `acker`.
    pub fn new(message: Arc<Message>, redelivered: bool, acker: Box<dyn Acker>) -> Self {
        Self {
            message,
            redelivered,
            delivery_count: None,
            offset: None,
            acker,
        }
    }

    /// Sets how often the broker delivered it (this time included).
    #[must_use]
    pub fn with_delivery_count(mut self, count: u32) -> Self {
        self.delivery_count = Some(count);
        self
    }

    /// Sets its stream offset.
    #[must_use]
    pub fn with_offset(mut self, offset: u64) -> Self {
        self.offset = Some(offset);
        self
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("message", &self.message)
            .field("redelivered", &self.redelivered)
            .field("delivery_count", &self.delivery_count)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

/// Settles one delivery with the broker.
#[async_trait]
pub trait Acker: Send + Sync {
    /// Settles the delivery. An error means the broker did not take the settlement (the
    /// channel is gone, say): the delivery is not done, and the broker will deliver it
    /// again; the bus counts it as a settle error, never as settled.
    ///
    /// A delivery dropped without being settled is returned to the broker when its consumer
    /// goes away (queues requeue it; streams read it again from the stored offset). The bus
    /// always settles explicitly; dropping is the crash path.
    async fn settle(self: Box<Self>, settlement: Settlement) -> Result<(), TransportError>;
}

/// How a delivery ends.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Settlement {
    /// Every matching handler succeeded (or none matched).
    Ack,
    /// Handling failed for good: the message goes to the dead-letter queue (or error
    /// stream) with the reason.
    DeadLetter(DeadLetter),
    /// Handling was abandoned (shutdown deadline): the message goes back to the queue and
    /// is redelivered, flagged as such. Only for transports with
    /// [`Capabilities::requeue`](crate::transport::Capabilities::requeue).
    Requeue,
    /// Deliver the message again after a delay, to run the handlers that failed (only for
    /// transports with [`Capabilities::delayed_redelivery`](crate::transport::Capabilities::delayed_redelivery)).
    Retry(Retry),
}

/// Why a message was dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// Human-readable failure reason, bounded in size (see
    /// [`HEADER_DEATH_REASON`](crate::headers::HEADER_DEATH_REASON)).
    pub reason: String,
    /// Names of the handlers that failed (empty for bad input that reached no handler).
    pub failed_handlers: Vec<String>,
}

impl DeadLetter {
    /// A dead letter with its reason and the names of the handlers that failed.
    pub fn new(reason: impl Into<String>, failed_handlers: Vec<String>) -> Self {
        Self {
            reason: reason.into(),
            failed_handlers,
        }
    }

    /// Writes the reason and failed handlers into the headers of the copy that goes to the
    /// dead-letter queue ([`HEADER_DEATH_REASON`], [`HEADER_FAILED_HANDLERS`]).
    pub fn mark(&self, message: &mut Message) {
        let headers = &mut message.metadata.headers;
        headers.insert(HEADER_DEATH_REASON.to_owned(), self.reason.clone());
        headers.insert(
            HEADER_FAILED_HANDLERS.to_owned(),
            self.failed_handlers.join(","),
        );
    }
}

/// A delayed redelivery: the message comes back after `delay` carrying the handlers to run
/// again ([`HEADER_FAILED_HANDLERS`](crate::headers::HEADER_FAILED_HANDLERS)) and the attempts spent
/// so far ([`HEADER_ATTEMPTS`](crate::headers::HEADER_ATTEMPTS)). The transport sets those headers on
/// the copy it delivers again.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retry {
    /// How long to wait before delivering again.
    pub delay: Duration,
    /// Handler attempts spent on this event so far, this delivery's included.
    pub attempts: u32,
    /// The handlers to run on the next delivery (those that failed).
    pub handlers: Vec<String>,
}

impl Retry {
    /// Deliver again after `delay`, with `attempts` spent, running `handlers`.
    pub fn new(delay: Duration, attempts: u32, handlers: Vec<String>) -> Self {
        Self {
            delay,
            attempts,
            handlers,
        }
    }

    /// Writes the attempts spent and the handlers to run into the headers of the copy that
    /// is delivered again ([`HEADER_ATTEMPTS`], [`HEADER_FAILED_HANDLERS`]).
    pub fn mark(&self, message: &mut Message) {
        let headers = &mut message.metadata.headers;
        headers.insert(HEADER_ATTEMPTS.to_owned(), self.attempts.to_string());
        headers.insert(HEADER_FAILED_HANDLERS.to_owned(), self.handlers.join(","));
    }
}
