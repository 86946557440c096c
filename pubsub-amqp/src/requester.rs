//! Requests over direct reply-to: a request is published `mandatory` on a channel that
//! consumes `amq.rabbitmq.reply-to` (no-ack), and its reply comes back on that channel,
//! matched to the request by its correlation id.
//!
//! The reply address belongs to the channel, so a channel lost is every reply of it lost:
//! the requests waiting on it fail at once, and the next request opens a new channel with
//! its reply consumer before it is published. A request is never written again on another
//! channel: its reply would go to the old address.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection};
use pubsub_core::{
    Message,
    transport::{Destination, Outgoing, TransportError},
};
use tokio::sync::oneshot;

use crate::channel_slot::{ChannelSlot, Live};
use crate::confirms::{self, Answer, Pending};
use crate::convert;
use crate::error::AmqpError;
use crate::link::{Deadline, Link};
use crate::publisher::events_channel;
use crate::sync::lock;

/// The pseudo-queue a channel consumes for its replies, and the `reply_to` of its requests
/// (the broker rewrites it into the channel's own address).
pub(crate) const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// What a waiting request is handed: its reply, or why none will come.
type Reply = Result<Message, TransportError>;

/// The requests waiting on one channel, by correlation id; `None` once its reply consumer
/// ended, so that no request waits on a channel that will not answer.
type Waiting = Arc<Mutex<Option<HashMap<String, oneshot::Sender<Reply>>>>>;

/// Sends requests and hands each its reply (see the module docs).
#[derive(Debug)]
pub(crate) struct Requester {
    session: ChannelSlot<ReplySession>,
    exchange: String,
    /// Replies no request waited for.
    dropped: Arc<AtomicU64>,
    /// Set when the transport closes: the requests still waiting fail with `Closed`.
    closed: Arc<AtomicBool>,
}

/// A channel consuming its direct reply-to address, with its confirm collector.
#[derive(Debug)]
struct ReplySession {
    channel: Channel,
    confirms: tokio::sync::mpsc::UnboundedSender<Pending>,
    waiting: Waiting,
}

/// A request waiting on a session, until dropped (answered, timed out, or the caller gone).
struct Registered<'a> {
    waiting: &'a Waiting,
    correlation_id: &'a str,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        if let Some(waiting) = lock(self.waiting).as_mut() {
            waiting.remove(self.correlation_id);
        }
    }
}

impl Requester {
    /// A requester publishing requests to `exchange`; it opens its channel on first use.
    pub(crate) fn new(exchange: &str) -> Self {
        Self {
            session: ChannelSlot::new(),
            exchange: exchange.to_owned(),
            dropped: Arc::default(),
            closed: Arc::default(),
        }
    }

    /// How many replies arrived that no request waited for.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Publishes `request` on `link` and waits, at most `timeout`, for its reply.
    pub(crate) async fn request(
        &self,
        link: &Link,
        request: Outgoing,
        timeout: Duration,
    ) -> Result<Message, TransportError> {
        let deadline = Deadline::after(timeout);
        let Outgoing {
            mut message,
            destination,
            ..
        } = request;
        let (exchange, routing_key) = match destination {
            Destination::Topic => (self.exchange.clone(), message.metadata.key.clone()),
            Destination::Queue(queue) => (String::new(), queue),
            _ => {
                return Err(TransportError::Unsupported {
                    what: "requests to streams or reply addresses",
                    transport: "amqp",
                });
            }
        };
        let correlation_id = message.metadata.correlation_or_id();
        message.metadata.correlation_id = Some(correlation_id.clone());
        message.metadata.reply_to = Some(DIRECT_REPLY_TO.to_owned());

        let (session, replied) = self.register(link, &deadline, &correlation_id).await?;
        let _registered = Registered {
            waiting: &session.waiting,
            correlation_id: &correlation_id,
        };
        // expires in the queue when its caller gives up (the broker dead-letters it, reason
        // `expired`, to the service's dead-letter queue)
        let left = deadline
            .at
            .saturating_duration_since(std::time::Instant::now());
        let properties = convert::properties(&message)
            .with_expiration(ShortString::from(left.as_millis().max(1).to_string()));
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let write = session.channel.basic_publish(
            exchange.as_str().into(),
            routing_key.as_str().into(),
            options,
            &message.body,
            properties,
        );
        let timed_out = || TransportError::TimedOut {
            operation: "request",
            after: deadline.waited(),
        };
        let confirm = match tokio::time::timeout_at(deadline.at.into(), write).await {
            Ok(Ok(confirm)) => confirm,
            Ok(Err(error)) => return Err(lost(error)),
            Err(_) => return Err(timed_out()),
        };
        let (answer, answered) = oneshot::channel();
        let pending = Pending {
            message_id: message.metadata.id.to_string(),
            key: routing_key,
            confirm,
            answer,
        };
        if session.confirms.send(pending).is_err() {
            return Err(self.gone());
        }
        // the broker's word first: a request nothing is bound to is returned (no responder)
        match tokio::time::timeout_at(deadline.at.into(), answered).await {
            Ok(Ok(Answer::Done(Ok(())))) => {}
            Ok(Ok(Answer::Done(Err(error)))) => return Err(error),
            Ok(Ok(Answer::Lost { error })) => return Err(lost(error)),
            Ok(Err(_)) => return Err(self.gone()),
            Err(_) => return Err(timed_out()),
        }
        match tokio::time::timeout_at(deadline.at.into(), replied).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(self.gone()),
            Err(_) => Err(timed_out()),
        }
    }

    /// Registers a request under `correlation_id` on a live session (opening one, with its
    /// reply consumer, if there is none): where its reply will be handed.
    async fn register(
        &self,
        link: &Link,
        deadline: &Deadline,
        correlation_id: &str,
    ) -> Result<(Arc<ReplySession>, oneshot::Receiver<Reply>), TransportError> {
        loop {
            let session = self.session(link, deadline).await?;
            let (reply, replied) = oneshot::channel();
            if let Some(waiting) = lock(&session.waiting).as_mut() {
                waiting.insert(correlation_id.to_owned(), reply);
                return Ok((Arc::clone(&session), replied));
            }
            // its reply consumer ended a moment ago: no longer live, so the next round
            // opens another
        }
    }

    /// The session in use, or a new one on the link's current connection.
    async fn session(
        &self,
        link: &Link,
        deadline: &Deadline,
    ) -> Result<Arc<ReplySession>, TransportError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(TransportError::Closed);
        }
        let exchange = self.exchange.as_str();
        self.session
            .get_or_open(|| {
                link.open_on(deadline, |connection| {
                    let (dropped, closed) = (Arc::clone(&self.dropped), Arc::clone(&self.closed));
                    async move { ReplySession::open(&connection, exchange, dropped, closed).await }
                })
            })
            .await
    }

    /// Why a request's session stopped answering.
    fn gone(&self) -> TransportError {
        if self.closed.load(Ordering::SeqCst) {
            TransportError::Closed
        } else {
            TransportError::Unavailable {
                message: "the channel of the request was lost before its reply came".to_owned(),
                source: None,
            }
        }
    }

    /// Fails every waiting request with `Closed` and closes the channel.
    pub(crate) async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let session = self.session.take();
        if let Some(session) = session {
            fail_all(&session.waiting, || TransportError::Closed);
            let close = session.channel.close(200, "closing".into());
            crate::connection::close_bounded(close, "request channel").await;
        }
    }
}

impl Live for ReplySession {
    /// Its channel is open and its reply consumer still hands replies out.
    fn live(&self) -> bool {
        self.channel.status().connected() && lock(&self.waiting).is_some()
    }
}

impl ReplySession {
    /// An events channel on `connection` consuming its reply address, and the task that
    /// hands each reply to its request.
    async fn open(
        connection: &Connection,
        exchange: &str,
        dropped: Arc<AtomicU64>,
        closed: Arc<AtomicBool>,
    ) -> Result<Self, AmqpError> {
        let channel = events_channel(connection, exchange).await?;
        let replies = channel
            .basic_consume(
                DIRECT_REPLY_TO.into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| AmqpError::channel("consuming the direct reply-to address", e))?;
        let waiting: Waiting = Arc::new(Mutex::new(Some(HashMap::new())));
        tokio::spawn(hand_out(replies, Arc::clone(&waiting), dropped, closed));
        Ok(Self {
            channel,
            confirms: confirms::collector(),
            waiting,
        })
    }
}

/// Hands each reply of a channel to the request waiting for it, until the channel goes;
/// then fails the requests still waiting, at once.
async fn hand_out(
    mut replies: lapin::Consumer,
    waiting: Waiting,
    dropped: Arc<AtomicU64>,
    closed: Arc<AtomicBool>,
) {
    let mut lost = None;
    while let Some(next) = replies.next().await {
        let delivery = match next {
            Ok(delivery) => delivery,
            Err(error) => {
                lost = Some(error);
                break;
            }
        };
        let reply = convert::message(
            delivery.routing_key.as_str(),
            false,
            &delivery.properties,
            delivery.data,
        );
        let Some(correlation_id) = reply.metadata.correlation_id.clone() else {
            dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(id = %reply.metadata.id, "dropped a reply without a correlation id");
            continue;
        };
        let waiter = lock(&waiting)
            .as_mut()
            .and_then(|w| w.remove(&correlation_id));
        let handed = match waiter {
            Some(waiter) => waiter.send(Ok(reply)).is_ok(),
            None => false,
        };
        // a second reply, or one after its caller gave up: the first reply won
        if !handed {
            dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%correlation_id, "dropped a reply no request waits for (a second answer, or its caller gave up)");
        }
    }
    if closed.load(Ordering::SeqCst) {
        fail_all(&waiting, || TransportError::Closed);
        return;
    }
    let source = lost.map(|e| Arc::new(e) as pubsub_core::transport::BoxedSource);
    let count = fail_all(&waiting, || TransportError::Unavailable {
        message: "the connection was lost while waiting for the reply".to_owned(),
        source: source.clone(),
    });
    if count > 0 {
        tracing::warn!(
            requests = count,
            "the request channel was lost: its waiting requests failed (their replies would go to its old address)"
        );
    }
}

/// Ends `waiting` (no request waits there from now on) and fails each request that was
/// waiting with `error()`; returns how many there were.
fn fail_all(waiting: &Waiting, error: impl Fn() -> TransportError) -> usize {
    let Some(requests) = lock(waiting).take() else {
        return 0;
    };
    let count = requests.len();
    for (_, request) in requests {
        let _ = request.send(Err(error()));
    }
    count
}

/// A request whose channel or connection went before the broker answered it.
fn lost(error: lapin::Error) -> TransportError {
    TransportError::Unavailable {
        message: "the connection was lost while sending the request".to_owned(),
        source: Some(Arc::new(error)),
    }
}
