//! Confirmed, pipelined publishing on a channel of its own connection.
//!
//! Every publish is persistent and, to the topic, `mandatory`, with publisher confirms on.
//! Many can be in flight: each gets its own [`Confirmation`]. One collector task owns every
//! pending broker confirm of the channel, because lapin attaches a returned message to
//! whichever confirmation completes next, not to its own publish: the collector drains all
//! the confirms that are ready before resolving any, and matches each return to its publish
//! by `message_id`. Both the frame write and the confirm are bounded by the publish timeout.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{Channel, Connection, PublisherConfirm};
use pubsub_core::{Confirmation, Destination, Message, Outgoing, TransportError};
use tokio::sync::{mpsc, oneshot};

use crate::config::AmqpConfig;
use crate::convert;
use crate::error::AmqpError;

/// Publishes on one confirm-mode channel.
#[derive(Debug)]
pub(crate) struct Publisher {
    channel: Channel,
    /// Wait queues (service, delay step) declared on this channel already.
    waits: std::sync::Mutex<HashSet<(String, Duration)>>,
    exchange: String,
    timeout: Duration,
    pending: mpsc::UnboundedSender<Pending>,
}

/// A publish whose confirm the collector waits for.
struct Pending {
    message_id: String,
    key: String,
    confirm: PublisherConfirm,
    answer: oneshot::Sender<Result<(), TransportError>>,
}

impl Publisher {
    /// A confirm-mode channel on `connection`, and its collector task.
    pub(crate) async fn open(
        connection: &Connection,
        config: &AmqpConfig,
    ) -> Result<Self, AmqpError> {
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| AmqpError::channel("opening the publishing channel", e))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| AmqpError::channel("turning publisher confirms on", e))?;
        let (pending, incoming) = mpsc::unbounded_channel();
        tokio::spawn(collect(incoming));
        Ok(Self {
            channel,
            waits: std::sync::Mutex::default(),
            exchange: config.exchange.clone(),
            timeout: config.publish_timeout,
            pending,
        })
    }

    /// Writes the message and hands back its confirmation.
    pub(crate) async fn send(&self, outgoing: Outgoing) -> Result<Confirmation, TransportError> {
        let Outgoing {
            message,
            destination,
            ..
        } = outgoing;
        let (exchange, routing_key, mandatory) = match destination {
            Destination::Topic => (self.exchange.clone(), message.metadata.key.clone(), true),
            Destination::Queue(queue) => (String::new(), queue, true),
            // a reply to amq.rabbitmq.reply-to.* is returned as unroutable in 4.0 even when
            // it is delivered: never mandatory
            Destination::Reply(address) => (String::new(), address, false),
            _ => {
                return Err(TransportError::Unsupported {
                    what: "streams as destinations: use the Streams transport",
                    transport: "amqp",
                });
            }
        };
        self.publish_raw(&exchange, &routing_key, mandatory, &message)
            .await
    }

    /// Writes `message` to `exchange` with `routing_key`.
    pub(crate) async fn publish_raw(
        &self,
        exchange: &str,
        routing_key: &str,
        mandatory: bool,
        message: &Message,
    ) -> Result<Confirmation, TransportError> {
        let options = BasicPublishOptions {
            mandatory,
            ..BasicPublishOptions::default()
        };
        let write = self.channel.basic_publish(
            exchange.into(),
            routing_key.into(),
            options,
            &message.body,
            convert::properties(message),
        );
        let confirm = match tokio::time::timeout(self.timeout, write).await {
            Ok(Ok(confirm)) => confirm,
            Ok(Err(error)) => return Err(publish_error(error)),
            Err(_) => {
                return Err(TransportError::TimedOut {
                    operation: "writing a publish (is the connection blocked?)",
                    after: self.timeout,
                });
            }
        };
        let (answer, answered) = oneshot::channel();
        let pending = Pending {
            message_id: message.metadata.id.to_string(),
            key: routing_key.to_owned(),
            confirm,
            answer,
        };
        if self.pending.send(pending).is_err() {
            return Err(TransportError::Closed);
        }
        let timeout = self.timeout;
        Ok(Confirmation::new(async move {
            match tokio::time::timeout(timeout, answered).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(TransportError::unavailable(
                    "the publishing channel closed before the broker confirmed",
                )),
                Err(_) => Err(TransportError::TimedOut {
                    operation: "publish confirm",
                    after: timeout,
                }),
            }
        }))
    }

    /// Publishes `message` to wait `delay` (rounded up to the ladder) in a wait queue of
    /// `service`, which then dead-letters it back into the service's queue; returns the
    /// broker's confirmation.
    pub(crate) async fn publish_delayed(
        &self,
        service: &str,
        delay: Duration,
        message: &Message,
    ) -> Result<Confirmation, TransportError> {
        let step = crate::topology::retry_step(delay);
        let key = (service.to_owned(), step);
        let known = self
            .waits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&key);
        let queue = if known {
            crate::topology::wait_queue(service, step)
        } else {
            let queue = crate::topology::declare_wait_queue(&self.channel, service, step).await?;
            self.waits
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key);
            queue
        };
        self.publish_raw("", &queue, true, message).await
    }

    /// Closes the channel (pending confirms fail).
    pub(crate) async fn close(&self) {
        if let Err(error) = self.channel.close(200, "closing".into()).await {
            tracing::debug!(%error, "closing the publishing channel");
        }
    }
}

fn publish_error(error: lapin::Error) -> TransportError {
    TransportError::Unavailable {
        message: format!("publishing failed: {error}"),
        source: Some(Arc::new(error)),
    }
}

/// Resolves every pending publish of one channel (see the module docs).
async fn collect(mut incoming: mpsc::UnboundedReceiver<Pending>) {
    let mut waiting = FuturesUnordered::new();
    let mut returned: HashSet<String> = HashSet::new();
    let mut open = true;
    while open || !waiting.is_empty() {
        tokio::select! {
            next = incoming.recv(), if open => match next {
                Some(pending) => waiting.push(confirmed(pending)),
                None => open = false,
            },
            Some(first) = waiting.next(), if !waiting.is_empty() => {
                // everything the broker answered by now, before resolving any of it
                let mut ready = vec![first];
                while let Some(Some(more)) = waiting.next().now_or_never() {
                    ready.push(more);
                }
                for (_, _, result, _) in &ready {
                    if let Ok(lapin::Confirmation::Ack(Some(back)) | lapin::Confirmation::Nack(Some(back))) = result
                        && let Some(id) = back.delivery.properties.message_id()
                    {
                        returned.insert(id.as_str().to_owned());
                    }
                }
                for (message_id, key, result, answer) in ready {
                    let outcome = match result {
                        _ if returned.remove(&message_id) => Err(TransportError::Unroutable { message_id, key }),
                        Ok(lapin::Confirmation::Ack(_) | lapin::Confirmation::NotRequested) => Ok(()),
                        Ok(lapin::Confirmation::Nack(_)) => Err(TransportError::Nacked {
                            reason: "the broker could not take the message (a full queue with reject-publish, an internal error)".into(),
                        }),
                        Err(error) => Err(publish_error(error)),
                    };
                    let _ = answer.send(outcome);
                }
            }
        }
    }
}

type Confirmed = (
    String,
    String,
    Result<lapin::Confirmation, lapin::Error>,
    oneshot::Sender<Result<(), TransportError>>,
);

async fn confirmed(pending: Pending) -> Confirmed {
    let result = pending.confirm.await;
    (pending.message_id, pending.key, result, pending.answer)
}
