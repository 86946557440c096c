//! The [`Transport`] trait: how a bus reaches a broker (AMQP, Streams, or memory).
//!
//! A transport moves messages and settles deliveries. It knows nothing about handlers:
//! the bus subscribes with a service name and the patterns its handlers need, and settles
//! each delivery once every handler has finished.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::TransportError;
use crate::metadata::Message;

/// A broker connection as the bus uses it.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// A short name for logs (`memory`, `amqp`, `streams`).
    fn name(&self) -> &'static str;

    /// Publishes `message` and returns only once the broker confirmed it (durably stored
    /// or routed). Unconfirmed publishes are errors, never silently dropped. A message that
    /// no queue is bound for is not an error: the transport reports it (a warning and a
    /// counter; RabbitMQ returns it to a `mandatory` publisher) and confirms the publish.
    async fn publish(&self, message: Message) -> Result<(), TransportError>;

    /// Declares what `subscription` needs — the service's queue bound to its patterns, its
    /// dead-letter queue — without consuming. Idempotent. Called when a bus is built, so
    /// that events published before the bus runs are already routed to its queue.
    async fn declare(&self, subscription: &Subscription) -> Result<(), TransportError>;

    /// Starts consuming the service's queue with the subscription's prefetch (declaring it
    /// first if needed). Called when a bus starts running.
    async fn consume(
        &self,
        subscription: &Subscription,
    ) -> Result<Box<dyn Consumer>, TransportError>;

    /// Flushes outstanding work and closes connections.
    async fn close(&self) -> Result<(), TransportError> {
        Ok(())
    }
}

/// What a service consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Subscription {
    /// Queue / consumer name: buses with the same service compete for its messages.
    pub service: String,
    /// Topic patterns the queue is bound to.
    pub patterns: Vec<String>,
    /// How many deliveries may be unsettled at once.
    pub prefetch: u16,
}

impl Subscription {
    /// The queue of `service`, bound to `patterns`, consumed with `prefetch`.
    pub fn new(service: impl Into<String>, patterns: Vec<String>, prefetch: u16) -> Self {
        Self {
            service: service.into(),
            patterns,
            prefetch,
        }
    }
}

/// A stream of deliveries for one subscription.
#[async_trait]
pub trait Consumer: Send {
    /// The next delivery; `None` once the consumer is cancelled or the transport closed.
    /// An `Err` is a transport problem the bus logs before asking again
    /// ([`TransportError::Closed`] ends the bus's run).
    ///
    /// Must be cancel-safe: the bus polls it in `tokio::select!`, and a future dropped
    /// before completion must not have taken a delivery.
    async fn next(&mut self) -> Option<Result<Delivery, TransportError>>;

    /// Stops new deliveries. Deliveries already handed out can still be settled; those
    /// never settled go back to the queue when the consumer is dropped.
    async fn cancel(&mut self) -> Result<(), TransportError>;
}

/// One message handed to a consumer, to be settled exactly once.
#[non_exhaustive]
pub struct Delivery {
    /// The message (shared: the dispatcher hands it to every handler without copying).
    pub message: Arc<Message>,
    /// Whether the broker delivered it before.
    pub redelivered: bool,
    /// Settles the delivery.
    pub acker: Box<dyn Acker>,
}

impl Delivery {
    /// A delivery of `message`, settled through `acker`.
    pub fn new(message: Arc<Message>, redelivered: bool, acker: Box<dyn Acker>) -> Self {
        Self {
            message,
            redelivered,
            acker,
        }
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("message", &self.message)
            .field("redelivered", &self.redelivered)
            .finish_non_exhaustive()
    }
}

/// Settles one delivery with the broker.
#[async_trait]
pub trait Acker: Send + Sync {
    /// Acks the delivery, moves it to the service's dead-letter queue, or requeues it.
    /// A delivery dropped without being settled is requeued by the transport (at the
    /// latest when its consumer goes away).
    async fn settle(self: Box<Self>, settlement: Settlement) -> Result<(), TransportError>;
}

/// How a delivery ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Every matching handler succeeded (or none matched).
    Ack,
    /// Handling failed for good: the message goes to the dead-letter queue with the reason.
    DeadLetter(DeadLetter),
    /// Handling was abandoned (shutdown deadline): the message goes back to the queue and
    /// is redelivered, flagged as such.
    Requeue,
}

/// Why a message was dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// Human-readable failure reason.
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
}
