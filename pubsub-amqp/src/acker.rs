//! Settling one AMQP delivery.
//!
//! - **Ack**: `basic.ack`.
//! - **Requeue**: `basic.nack` with requeue.
//! - **Dead letter**: a copy carrying the reason and the failed handlers is published (with
//!   confirm) to the service's dead-letter exchange, then the original is acked. If that
//!   publish fails, the original is rejected without requeue, so that the broker's own
//!   dead-lettering still keeps it (reason `rejected` in `x-death`): never lost, at worst
//!   a duplicate in the dead-letter queue.
//! - **Retry**: a copy carrying the attempts spent and the handlers to run again is
//!   published (with confirm) to the service's wait queue for that delay, which
//!   dead-letters it back into the service's queue when the delay is over; then the
//!   original is acked. If that publish fails, the original is requeued (retried sooner,
//!   never lost).
//! - Acking on a channel that has gone is an error, never reported as done; the broker
//!   delivers the message again. Each ack, nack and reject is raced against the loss of
//!   its channel and of its connection (lapin may leave one queued at the moment the
//!   connection dies pending forever): it fails as soon as either is gone, so the delivery
//!   leaves the bus's in-flight count at once, as a settle error. The settlements under
//!   way are counted for health ([`Settlements`]); one under way for longer than
//!   [`SETTLEMENT_STUCK_AFTER`](pubsub_core::health::SETTLEMENT_STUCK_AFTER) (a
//!   connection that takes bytes and answers nothing) makes the consumer unhealthy.

use std::sync::Arc;

use async_trait::async_trait;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};
use pubsub_core::{
    Message,
    health::Settlements,
    transport::{Acker, Confirmation, DeadLetter, Retry, Settlement, TransportError},
};
use tokio::sync::watch;

use crate::link::Link;
use crate::publisher::{Publisher, Route};

/// Settles one delivery (see the module docs).
pub(crate) struct AmqpAcker {
    pub(crate) acker: lapin::Acker,
    pub(crate) message: Arc<Message>,
    pub(crate) service: String,
    pub(crate) dead_letter_exchange: String,
    pub(crate) publisher: Arc<Publisher>,
    /// The consuming connection, and the generation of it that delivered the message.
    pub(crate) link: Arc<Link>,
    pub(crate) generation: u64,
    /// Ends (its sender dropped) once the channel that delivered the message is gone.
    pub(crate) alive: watch::Receiver<()>,
    pub(crate) settlements: Settlements,
}

impl AmqpAcker {
    async fn dead_letter(&self, dead: DeadLetter) -> Result<(), TransportError> {
        let mut copy = Message::clone(&self.message);
        dead.mark(&mut copy);
        let route = Route::new(&self.dead_letter_exchange, &copy.metadata.key, false);
        let sent = self.publisher.publish(route, copy).await;
        // if the copy fails, the broker's own dead-lettering keeps it (without reason)
        self.ack_once_confirmed(sent, "the dead letter", false)
            .await
    }

    async fn retry(&self, retry: Retry) -> Result<(), TransportError> {
        let mut copy = Message::clone(&self.message);
        retry.mark(&mut copy);
        let sent = self
            .publisher
            .publish_delayed(&self.service, retry.delay, copy)
            .await;
        // if the copy fails, the message comes back at once and is retried sooner
        self.ack_once_confirmed(sent, "the delayed retry", true)
            .await
    }

    /// Acks the original once the broker confirmed the copy that replaces it; otherwise
    /// rejects it, requeued or not, so that it is never lost.
    async fn ack_once_confirmed(
        &self,
        sent: Result<Confirmation, TransportError>,
        copy: &str,
        requeue: bool,
    ) -> Result<(), TransportError> {
        let confirmed = match sent {
            Ok(confirmation) => confirmation.await,
            Err(error) => Err(error),
        };
        match confirmed {
            Ok(()) => self.ack().await,
            Err(error) => {
                tracing::warn!(id = %self.message.metadata.id, error = %pubsub_core::Report::new(&error), requeue, "publishing {copy} failed; rejecting the original");
                self.unless_gone(self.acker.reject(BasicRejectOptions { requeue }))
                    .await
            }
        }
    }

    async fn ack(&self) -> Result<(), TransportError> {
        self.unless_gone(self.acker.ack(BasicAckOptions::default()))
            .await
    }

    /// `settle` (an ack, nack or reject), unless the channel or the connection that
    /// delivered the message is gone first: then it fails at once.
    async fn unless_gone(
        &self,
        settle: impl std::future::Future<Output = Result<bool, lapin::Error>>,
    ) -> Result<(), TransportError> {
        let mut alive = self.alive.clone();
        tokio::select! {
            biased;
            settled = settle => taken(settled),
            // never sent to: it completes only when the sender is dropped
            _ = alive.changed() => Err(TransportError::settle(
                "the channel that delivered the message is gone; the broker will deliver it again",
            )),
            () = self.link.lost(self.generation) => Err(TransportError::settle(
                "the connection that delivered the message is lost; the broker will deliver it again",
            )),
        }
    }
}

/// lapin answers `Ok(false)`, not an error, when the channel that delivered the message is
/// gone (or the delivery was settled already): the broker did not take the settlement.
fn taken(result: Result<bool, lapin::Error>) -> Result<(), TransportError> {
    match result {
        Ok(true) => Ok(()),
        Ok(false) => Err(TransportError::settle(
            "the channel that delivered the message is gone (or it was settled already); the broker will deliver it again",
        )),
        Err(error) => Err(settle_error(error)),
    }
}

fn settle_error(error: lapin::Error) -> TransportError {
    TransportError::Settle {
        message: "the broker did not take the settlement; it will deliver the message again"
            .to_owned(),
        source: Some(Arc::new(error)),
    }
}

#[async_trait]
impl Acker for AmqpAcker {
    async fn settle(self: Box<Self>, settlement: Settlement) -> Result<(), TransportError> {
        let _settling = self.settlements.start();
        match settlement {
            Settlement::Ack => self.ack().await,
            Settlement::Requeue => {
                self.unless_gone(self.acker.nack(BasicNackOptions {
                    requeue: true,
                    multiple: false,
                }))
                .await
            }
            // boxed: the copies are rare, and their publish state would make every
            // settle's future (boxed by async_trait, so copied to the heap) larger
            Settlement::DeadLetter(dead) => Box::pin(self.dead_letter(dead)).await,
            Settlement::Retry(retry) => Box::pin(self.retry(retry)).await,
            _ => Err(TransportError::Unsupported {
                what: "this settlement",
                transport: "amqp",
            }),
        }
    }
}
