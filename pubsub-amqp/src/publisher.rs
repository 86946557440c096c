//! Confirmed, pipelined publishing on a channel of the publishing connection, surviving
//! reconnects.
//!
//! Every publish is persistent and, to the topic, `mandatory`, with publisher confirms on.
//! Many can be in flight: each gets its own [`Confirmation`], answered by the channel's
//! collector (see `confirms.rs`).
//!
//! **At least once across reconnects.** A publish whose confirm is lost with its channel or
//! connection is written again, with the same `message_id`, on the next channel, by the
//! [`Confirmation`] that awaits it; the broker may then hold it twice (duplicates are the
//! price of never losing a confirmed publish). A publish issued while the connection is
//! down waits for it. Everything, from the first write to the last confirm, is bounded by
//! the publish timeout, after which the error says why: `Blocked` by an alarm, `Unavailable`
//! with the connection's last error, or `TimedOut`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::Channel;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use pubsub_core::{
    Message,
    transport::{Confirmation, Destination, Outgoing, TransportError},
};
use tokio::sync::{mpsc, oneshot};

use crate::channel_slot::{ChannelSlot, Live};
use crate::config::AmqpConfig;
use crate::confirms::{self, Answer, Pending};
use crate::convert;
use crate::error::AmqpError;
use crate::link::{Deadline, Link};
use crate::sync::lock;

/// How often one message may close its channel with a channel-level error (an exchange
/// deleted under it) before that error is final.
const CHANNEL_ERRORS_PER_MESSAGE: u32 = 3;

/// Publishes on one confirm-mode channel at a time, opening another after a loss.
#[derive(Debug)]
pub(crate) struct Publisher {
    link: Link,
    /// The channel in use; replaced under `opening` when it is gone.
    session: ChannelSlot<Session>,
    exchange: String,
    timeout: Duration,
    /// Whether service queues are per process (their wait queues then are exclusive).
    per_process: bool,
    /// Publishes written again after their channel was lost.
    resent: AtomicU64,
}

/// One confirm-mode channel and its collector.
#[derive(Debug)]
struct Session {
    channel: Channel,
    pending: mpsc::UnboundedSender<Pending>,
    /// Wait queues (service, delay step) declared on this channel already.
    waits: Mutex<HashSet<(String, Duration)>>,
}

/// Where a message goes.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    exchange: String,
    routing_key: String,
    mandatory: bool,
}

impl Route {
    /// To `exchange` with `routing_key`.
    pub(crate) fn new(exchange: &str, routing_key: &str, mandatory: bool) -> Self {
        Self {
            exchange: exchange.to_owned(),
            routing_key: routing_key.to_owned(),
            mandatory,
        }
    }
}

impl Publisher {
    /// A publisher on `link`, opening its channel on first use.
    pub(crate) fn new(link: Link, config: &AmqpConfig) -> Self {
        Self {
            link,
            session: ChannelSlot::new(),
            exchange: config.exchange.clone(),
            timeout: config.publish_timeout,
            per_process: config.queue.per_process(),
            resent: AtomicU64::new(0),
        }
    }

    /// The publishing connection.
    pub(crate) fn link(&self) -> &Link {
        &self.link
    }

    /// How many publishes were written again after their channel was lost.
    pub(crate) fn resent(&self) -> u64 {
        self.resent.load(Ordering::Relaxed)
    }

    /// Writes the message and hands back its confirmation.
    pub(crate) async fn send(
        self: &Arc<Self>,
        outgoing: Outgoing,
    ) -> Result<Confirmation, TransportError> {
        let Outgoing {
            message,
            destination,
            ..
        } = outgoing;
        let route = match destination {
            Destination::Topic => Route::new(&self.exchange, &message.metadata.key, true),
            Destination::Queue(queue) => Route::new("", &queue, true),
            // a reply to amq.rabbitmq.reply-to.* is returned as unroutable in 4.0 even when
            // it is delivered: never mandatory
            Destination::Reply(address) => Route::new("", &address, false),
            _ => {
                return Err(TransportError::Unsupported {
                    what: "streams as destinations: use the Streams transport",
                    transport: "amqp",
                });
            }
        };
        self.publish(route, message).await
    }

    /// Writes `message` along `route` and hands back its confirmation, which writes it again
    /// if its channel is lost before the broker answers.
    pub(crate) async fn publish(
        self: &Arc<Self>,
        route: Route,
        message: Message,
    ) -> Result<Confirmation, TransportError> {
        let deadline = Deadline::after(self.timeout);
        let mut answered = self.write(&route, &message, &deadline).await?;
        let publisher = Arc::clone(self);
        Ok(Confirmation::new(async move {
            let mut channel_errors = 0;
            loop {
                let answer = match tokio::time::timeout_at(deadline.at.into(), &mut answered).await
                {
                    Ok(Ok(answer)) => answer,
                    Ok(Err(_)) => Answer::Lost {
                        error: lapin::ErrorKind::InvalidChannelState(
                            lapin::ChannelState::Closed,
                            "the collector ended",
                        )
                        .into(),
                    },
                    Err(_) => return Err(publisher.link.unavailable(deadline.waited())),
                };
                match answer {
                    Answer::Done(result) => return result,
                    Answer::Lost { error } => {
                        if is_channel_error(&error) {
                            channel_errors += 1;
                            if channel_errors >= CHANNEL_ERRORS_PER_MESSAGE {
                                return Err(publish_error(error));
                            }
                        }
                        publisher.resent.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(id = %message.metadata.id, error = %pubsub_core::Report::new(&error), "the publish lost its channel before the confirm; writing it again");
                        answered = publisher.write(&route, &message, &deadline).await?;
                    }
                }
            }
        }))
    }

    /// Writes the message on the current channel (opening one, waiting for the connection
    /// if needed) and returns where its confirm will be answered.
    async fn write(
        &self,
        route: &Route,
        message: &Message,
        deadline: &Deadline,
    ) -> Result<oneshot::Receiver<Answer>, TransportError> {
        let options = BasicPublishOptions {
            mandatory: route.mandatory,
            ..BasicPublishOptions::default()
        };
        let mut failures = 0;
        loop {
            let session = self.session(deadline).await?;
            let write = session.channel.basic_publish(
                route.exchange.as_str().into(),
                route.routing_key.as_str().into(),
                options,
                &message.body,
                convert::properties(message),
            );
            let error = match tokio::time::timeout_at(deadline.at.into(), write).await {
                Ok(Ok(confirm)) => {
                    let (answer, answered) = oneshot::channel();
                    let pending = Pending {
                        message_id: message.metadata.id.to_string(),
                        key: route.routing_key.clone(),
                        confirm,
                        answer,
                    };
                    if session.pending.send(pending).is_ok() {
                        return Ok(answered);
                    }
                    lapin::ErrorKind::InvalidChannelState(
                        lapin::ChannelState::Closed,
                        "the collector ended",
                    )
                    .into()
                }
                Ok(Err(error)) => error,
                Err(_) => return Err(self.link.unavailable(deadline.waited())),
            };
            // the channel or the connection went: the next round waits for a new one
            failures += 1;
            if failures >= CHANNEL_ERRORS_PER_MESSAGE && is_channel_error(&error) {
                return Err(publish_error(error));
            }
            tracing::debug!(error = %pubsub_core::Report::new(&error), "writing a publish failed; trying on a new channel");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The channel in use, or a new one on the current connection.
    async fn session(&self, deadline: &Deadline) -> Result<Arc<Session>, TransportError> {
        let exchange = self.exchange.as_str();
        self.session
            .get_or_open(|| {
                self.link.open_on(deadline, |connection| async move {
                    Session::open(&connection, exchange).await
                })
            })
            .await
    }

    /// Publishes `message` to wait `delay` (rounded up to the ladder) in a wait queue of
    /// `service`, which then dead-letters it back into the service's queue; returns the
    /// broker's confirmation.
    pub(crate) async fn publish_delayed(
        self: &Arc<Self>,
        service: &str,
        delay: Duration,
        message: Message,
    ) -> Result<Confirmation, TransportError> {
        let step = crate::topology::retry_step(delay);
        let key = (service.to_owned(), step);
        let session = self.session(&Deadline::after(self.timeout)).await?;
        let queue = if lock(&session.waits).contains(&key) {
            crate::topology::wait_queue(service, step)
        } else {
            let queue = crate::topology::declare_wait_queue(
                &session.channel,
                service,
                step,
                self.per_process,
            )
            .await?;
            lock(&session.waits).insert(key);
            queue
        };
        self.publish(Route::new("", &queue, true), message).await
    }

    /// Closes the channel (pending confirms fail) and the connection.
    pub(crate) async fn close(&self) {
        let session = self.session.take();
        if let Some(session) = session {
            let close = session.channel.close(200, "closing".into());
            crate::connection::close_bounded(close, "publishing channel").await;
        }
        self.link.close().await;
    }
}

impl Live for Session {
    fn live(&self) -> bool {
        self.channel.status().connected()
    }
}

impl Session {
    /// An events channel on `connection` and its collector task.
    async fn open(connection: &lapin::Connection, exchange: &str) -> Result<Self, AmqpError> {
        Ok(Self {
            channel: events_channel(connection, exchange).await?,
            pending: confirms::collector(),
            waits: Mutex::default(),
        })
    }
}

/// A confirm-mode channel on `connection` with the events exchange `exchange` declared. A
/// broker that refuses the declaration (a user without the configure permission, an
/// exchange declared otherwise) closes that channel: then it is a new one, to publish to
/// the exchange as it is, and a warning says so.
pub(crate) async fn events_channel(
    connection: &lapin::Connection,
    exchange: &str,
) -> Result<Channel, AmqpError> {
    let channel = confirm_channel(connection).await?;
    match crate::topology::declare_events_exchange(&channel, exchange).await {
        Ok(()) => Ok(channel),
        Err(AmqpError::Topology { source, .. }) if is_channel_error(&source) => {
            tracing::warn!(
                exchange,
                error = %pubsub_core::Report::new(&source),
                "the broker refused to declare the events exchange; publishing to it as it \
                 is (a user without the configure permission needs it declared by another)"
            );
            confirm_channel(connection).await
        }
        Err(error) => Err(error),
    }
}

/// A new channel on `connection`, in confirm mode.
async fn confirm_channel(connection: &lapin::Connection) -> Result<lapin::Channel, AmqpError> {
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| AmqpError::channel("opening the publishing channel", e))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| AmqpError::channel("turning publisher confirms on", e))?;
    Ok(channel)
}

/// Whether the broker closed the channel for something it refused (a soft error), as
/// opposed to the connection going.
fn is_channel_error(error: &lapin::Error) -> bool {
    matches!(error.kind(), lapin::ErrorKind::ProtocolError(e) if matches!(e.kind(), lapin::protocol::AMQPErrorKind::Soft(_)))
}

fn publish_error(error: lapin::Error) -> TransportError {
    TransportError::Unavailable {
        message: "publishing failed".to_owned(),
        source: Some(Arc::new(error)),
    }
}
