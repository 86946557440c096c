//! What a publish sends, where to, and the confirmation it waits for.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use sync_wrapper::SyncWrapper;

use super::error::TransportError;
use crate::metadata::Message;

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Destination {
    /// The topic exchange, routed by the message's key to every bound queue (the default).
    /// A stream-backed transport appends it to the stream of the key's domain instead
    /// ([`StreamNaming::stream_of_key`](crate::stream::StreamNaming::stream_of_key)): the bus
    /// always publishes to the topic, and the transport maps it.
    #[default]
    Topic,
    /// Straight to one named queue.
    Queue(String),
    /// A reply address taken from a request's `reply_to`.
    Reply(String),
    /// A stream named explicitly (a chat room's own stream, raw input for a test); with a
    /// partition key, the partition of a super stream that key hashes to.
    Stream {
        /// The stream (or super stream) name.
        stream: String,
        /// Chooses the partition of a super stream (an order id, say).
        partition_key: Option<String>,
    },
}

/// A message and where it goes.
///
/// ```
/// use pubsub::{Message, transport::{Bytes, Destination, Outgoing}};
/// let to_topic: Outgoing = Message::new("order.created", Bytes::from_static(b"{}")).into();
/// assert_eq!(to_topic.destination, Destination::Topic);
/// let to_queue = Outgoing::new(Message::new("job.run", Bytes::new()), Destination::Queue("jobs".into()));
/// # let _ = to_queue;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Outgoing {
    /// The message.
    pub message: Message,
    /// Where it goes.
    pub destination: Destination,
}

impl Outgoing {
    /// `message` to `destination`.
    pub fn new(message: Message, destination: Destination) -> Self {
        Self {
            message,
            destination,
        }
    }
}

impl From<Message> for Outgoing {
    /// To the topic exchange.
    fn from(message: Message) -> Self {
        Self::new(message, Destination::Topic)
    }
}

/// The broker's answer to one send: resolves once the broker confirmed the message, or
/// with why it did not. Independent of other sends; dropping it does not cancel the send.
///
/// `Send` and `Sync` whatever the transport's future (only polling, through `&mut`, reaches
/// it), so that a task may hold a `&` to a collection of them across an `.await`.
#[must_use = "a confirmation does nothing unless awaited; drop it only if you do not care whether the broker took the message"]
pub struct Confirmation(SyncWrapper<BoxFuture<'static, Result<(), TransportError>>>);

impl Confirmation {
    /// A confirmation that resolves when `future` does.
    pub fn new(future: impl Future<Output = Result<(), TransportError>> + Send + 'static) -> Self {
        Self(SyncWrapper::new(Box::pin(future)))
    }

    /// Already confirmed (a transport that stores synchronously, like memory).
    pub fn confirmed() -> Self {
        Self::ready(Ok(()))
    }

    /// Already answered.
    pub fn ready(result: Result<(), TransportError>) -> Self {
        Self::new(std::future::ready(result))
    }
}

impl Future for Confirmation {
    type Output = Result<(), TransportError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.get_mut().as_mut().poll(cx)
    }
}

impl std::fmt::Debug for Confirmation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Confirmation(..)")
    }
}
