//! Consuming a queue on a channel of the consuming connection, and settling deliveries.
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
//!   delivers the message again.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    BasicRejectOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection};
use pubsub_core::{
    Acker, Confirmation, Consumer, DeadLetter, Delivery, Message, Retry, Settlement, TransportError,
};

use crate::config::AmqpConfig;
use crate::convert;
use crate::error::AmqpError;
use crate::publisher::Publisher;
use crate::topology;

/// A consumer of one queue.
pub(crate) struct AmqpConsumer {
    channel: Channel,
    consumer: lapin::Consumer,
    exchange: String,
    service: String,
    dead_letter_exchange: String,
    publisher: Arc<Publisher>,
}

impl AmqpConsumer {
    /// Consumes `queue` with `prefetch` on a new channel of `connection`.
    pub(crate) async fn start(
        connection: &Connection,
        config: &AmqpConfig,
        service: &str,
        queue: &str,
        prefetch: u16,
        publisher: Arc<Publisher>,
    ) -> Result<Self, AmqpError> {
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| AmqpError::channel("opening a consuming channel", e))?;
        channel
            .basic_qos(prefetch.max(1), BasicQosOptions::default())
            .await
            .map_err(|e| AmqpError::channel("setting the prefetch", e))?;
        let consumer = channel
            .basic_consume(
                queue.into(),
                format!("pubsub {service}").into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| AmqpError::channel("starting to consume", e))?;
        Ok(Self {
            channel,
            consumer,
            exchange: config.exchange.clone(),
            service: service.to_owned(),
            dead_letter_exchange: topology::dead_letter_exchange(service),
            publisher,
        })
    }

    fn delivery(&self, delivery: lapin::message::Delivery) -> Delivery {
        let via_topic = delivery.exchange.as_str() == self.exchange;
        // quorum queues count earlier deliveries in x-delivery-count
        let earlier = delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("x-delivery-count").and_then(count));
        let message = Arc::new(convert::message(
            delivery.routing_key.as_str(),
            via_topic,
            &delivery.properties,
            delivery.data,
        ));
        let acker = Box::new(AmqpAcker {
            acker: delivery.acker,
            message: Arc::clone(&message),
            service: self.service.clone(),
            dead_letter_exchange: self.dead_letter_exchange.clone(),
            publisher: Arc::clone(&self.publisher),
        });
        let core = Delivery::new(message, delivery.redelivered, acker);
        match earlier {
            Some(n) => core.with_delivery_count(n.saturating_add(1)),
            None => core,
        }
    }
}

fn count(value: &AMQPValue) -> Option<u32> {
    match value {
        AMQPValue::LongLongInt(n) => u32::try_from(*n).ok(),
        AMQPValue::LongInt(n) => u32::try_from(*n).ok(),
        AMQPValue::LongUInt(n) => Some(*n),
        AMQPValue::ShortInt(n) => u32::try_from(*n).ok(),
        AMQPValue::ShortUInt(n) => Some((*n).into()),
        _ => None,
    }
}

#[async_trait]
impl Consumer for AmqpConsumer {
    async fn next(&mut self) -> Option<Result<Delivery, TransportError>> {
        match self.consumer.next().await? {
            Ok(delivery) => Some(Ok(self.delivery(delivery))),
            Err(error) => Some(Err(TransportError::Unavailable {
                message: format!("consuming failed: {error}"),
                source: Some(Arc::new(error)),
            })),
        }
    }

    async fn cancel(&mut self) -> Result<(), TransportError> {
        self.channel
            .basic_cancel(self.consumer.tag(), BasicCancelOptions::default())
            .await
            .map_err(|e| TransportError::unavailable(format!("cancelling the consumer: {e}")))
    }

    async fn close(self: Box<Self>) -> Result<(), TransportError> {
        // unsettled deliveries go back to the queue with the channel
        self.channel
            .close(200, "consumer closed".into())
            .await
            .map_err(|e| TransportError::unavailable(format!("closing the consumer: {e}")))
    }
}

/// Settles one delivery (see the module docs).
struct AmqpAcker {
    acker: lapin::Acker,
    message: Arc<Message>,
    service: String,
    dead_letter_exchange: String,
    publisher: Arc<Publisher>,
}

impl AmqpAcker {
    async fn dead_letter(&self, dead: DeadLetter) -> Result<(), TransportError> {
        let mut copy = Message::clone(&self.message);
        dead.mark(&mut copy);
        let key = copy.metadata.key.clone();
        let sent = self
            .publisher
            .publish_raw(&self.dead_letter_exchange, &key, false, &copy)
            .await;
        // if the copy fails, the broker's own dead-lettering keeps it (without reason)
        self.ack_once_confirmed(sent, "the dead letter", false)
            .await
    }

    async fn retry(&self, retry: Retry) -> Result<(), TransportError> {
        let mut copy = Message::clone(&self.message);
        retry.mark(&mut copy);
        let sent = self
            .publisher
            .publish_delayed(&self.service, retry.delay, &copy)
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
                tracing::warn!(id = %self.message.metadata.id, %error, requeue, "publishing {copy} failed; rejecting the original");
                taken(self.acker.reject(BasicRejectOptions { requeue }).await)
            }
        }
    }

    async fn ack(&self) -> Result<(), TransportError> {
        taken(self.acker.ack(BasicAckOptions::default()).await)
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
        message: format!(
            "the broker did not take the settlement ({error}); it will deliver the message again"
        ),
        source: Some(Arc::new(error)),
    }
}

#[async_trait]
impl Acker for AmqpAcker {
    async fn settle(self: Box<Self>, settlement: Settlement) -> Result<(), TransportError> {
        match settlement {
            Settlement::Ack => self.ack().await,
            Settlement::Requeue => taken(
                self.acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        multiple: false,
                    })
                    .await,
            ),
            Settlement::DeadLetter(dead) => self.dead_letter(dead).await,
            Settlement::Retry(retry) => self.retry(retry).await,
            _ => Err(TransportError::Unsupported {
                what: "this settlement",
                transport: "amqp",
            }),
        }
    }
}
