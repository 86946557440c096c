//! Publishing: turning a typed event into a [`Message`] and handing it to the transport.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::SystemTime;

use tracing::Instrument;
use uuid::Uuid;

use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::headers::{
    HEADER_ATTEMPTS, HEADER_CAUSATION_ID, HEADER_DEADLINE, HEADER_DEATH_REASON, HEADER_ERROR_KIND,
    HEADER_EVENT_KEY, HEADER_FAILED_HANDLERS, HEADER_REPLY_STATUS, HEADER_VERSION,
};
use crate::metadata::{Message, Metadata};
use crate::transport::TransportError;
use crate::transport::{Capabilities, Confirmation, Destination, Outgoing, Transport};

/// Optional envelope fields for one publish.
///
/// ```
/// use pubsub::PublishOptions;
/// let options = PublishOptions::new()
///     .correlation_id("checkout-42")
///     .header("tenant", "acme");
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    pub(crate) correlation_id: Option<String>,
    pub(crate) causation_id: Option<String>,
    pub(crate) reply_to: Option<String>,
    pub(crate) headers: BTreeMap<String, String>,
    /// The event id (set for events caused by a handler); a new UUID v7 otherwise.
    pub(crate) id: Option<Uuid>,
    /// Picks the partition of a super stream.
    pub(crate) partition_key: Option<String>,
    /// A stream named by the publisher, instead of the stream of the event's domain.
    pub(crate) stream: Option<String>,
}

impl PublishOptions {
    /// No options: a new conversation whose correlation id is the event's own id.
    pub fn new() -> Self {
        Self::default()
    }

    /// Joins an existing conversation.
    #[must_use]
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Names the event that caused this one.
    #[must_use]
    pub fn causation_id(mut self, id: impl Into<String>) -> Self {
        self.causation_id = Some(id.into());
        self
    }

    /// Where a response should be sent.
    #[must_use]
    pub fn reply_to(mut self, address: impl Into<String>) -> Self {
        self.reply_to = Some(address.into());
        self
    }

    /// Adds a free header.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// On a stream-backed transport whose stream of the event's domain is a super stream
    /// ([`StreamNaming::super_stream`](crate::stream::StreamNaming::super_stream)): the key that
    /// picks its partition (an order id), so that the events of one key stay in order.
    /// Ignored by queue transports.
    #[must_use]
    pub fn partition_key(mut self, key: impl Into<String>) -> Self {
        self.partition_key = Some(key.into());
        self
    }

    /// On a stream-backed transport, appends the event to the stream named `stream` (a
    /// chat room's `chat_room_1`), with the event's own codec and content type, instead of
    /// the stream of its domain; a super stream's partition is picked by the
    /// [`partition_key`](Self::partition_key). A queue transport refuses it
    /// ([`TransportError::Unsupported`](crate::transport::TransportError::Unsupported)).
    ///
    /// ```
    /// use futures::StreamExt;
    /// use pubsub::prelude::*;
    /// use pubsub::stream::StartAt;
    ///
    /// #[derive(Debug, Clone, Serialize, Deserialize, Event)]
    /// #[event(domain = "chat", action = "said")]
    /// struct Said { text: String }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> pubsub::Result<()> {
    /// let chat = Bus::publisher("chat", MemoryTransport::stream_backed());
    /// let to_room = PublishOptions::new().to_stream("chat_room_1");
    /// chat.publish_with(&Said { text: "hi".into() }, to_room).await?;
    /// let mut room = chat.subscribe::<Said>().stream("chat_room_1").start_at(StartAt::First).await?;
    /// let said = room.next().await.expect("one event")?;
    /// assert_eq!((said.event.text.as_str(), said.stream.as_str()), ("hi", "chat_room_1"));
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn to_stream(mut self, stream: impl Into<String>) -> Self {
        self.stream = Some(stream.into());
        self
    }

    /// Options for an event published while handling `cause`: same correlation id,
    /// causation id set to the cause's id.
    pub fn caused_by(cause: &Metadata) -> Self {
        Self {
            correlation_id: Some(cause.correlation_or_id()),
            causation_id: Some(cause.id.to_string()),
            ..Self::default()
        }
    }
}

/// The publishing half of a bus, shared with every handler context.
#[derive(Clone)]
pub(crate) struct Publisher {
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) capabilities: Capabilities,
    pub(crate) service: Arc<str>,
    /// Whether a publish that no queue is bound for fails (otherwise: a warning).
    pub(crate) unroutable_is_error: bool,
}

impl Publisher {
    pub(crate) fn new(
        service: String,
        transport: Arc<dyn Transport>,
        unroutable_is_error: bool,
    ) -> Self {
        Self {
            capabilities: transport.capabilities(),
            transport,
            service: Arc::from(service),
            unroutable_is_error,
        }
    }
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Encodes `event` into a message with fresh metadata and the given options, routed by
    /// its [`routing_key`](Event::routing_key) (refused before anything is sent).
    pub(crate) fn message<E: Event>(&self, event: &E, options: PublishOptions) -> Result<Message> {
        check_headers(&options.headers)?;
        let key = event.routing_key()?;
        let body = event.encode()?;
        let id = options.id.unwrap_or_else(Uuid::now_v7);
        let event_type = (key != E::KEY).then(|| E::KEY.to_owned());
        let metadata = Metadata {
            id,
            key: key.into_owned(),
            event_type,
            version: E::VERSION,
            content_type: <E::Codec as Codec<E>>::CONTENT_TYPE.to_owned(),
            timestamp: SystemTime::now(),
            correlation_id: Some(options.correlation_id.unwrap_or_else(|| id.to_string())),
            causation_id: options.causation_id,
            reply_to: options.reply_to,
            app_id: Some(self.service.to_string()),
            headers: options.headers,
        };
        Ok(Message { metadata, body })
    }

    /// Publishes and waits for the transport's confirmation; returns the event id.
    pub(crate) async fn publish<E: Event>(
        &self,
        event: &E,
        options: PublishOptions,
    ) -> Result<Uuid> {
        self.send(event, options).await?.await
    }

    /// Hands the event to the transport; the returned publish resolves on confirmation.
    pub(crate) async fn send<E: Event>(
        &self,
        event: &E,
        mut options: PublishOptions,
    ) -> Result<PendingPublish> {
        // where it goes; the message is made of the rest
        let (stream, partition_key) = (options.stream.take(), options.partition_key.take());
        let message = self.message(event, options)?;
        let destination = self.destination(&message, stream, partition_key);
        self.send_message(message, destination).await
    }

    /// The stream named; else the topic, or with a partition key on a stream-backed
    /// transport, the stream of the event's domain with that key.
    fn destination(
        &self,
        message: &Message,
        stream: Option<String>,
        partition_key: Option<String>,
    ) -> Destination {
        match (stream, partition_key, self.transport.stream_naming()) {
            (Some(stream), partition_key, _) => Destination::Stream {
                stream,
                partition_key,
            },
            (None, Some(partition_key), Some(naming)) => Destination::Stream {
                stream: naming.stream_of_key(&message.metadata.key),
                partition_key: Some(partition_key),
            },
            _ => Destination::Topic,
        }
    }

    /// Sends to `destination`; the returned publish resolves on confirmation.
    async fn send_message(
        &self,
        message: Message,
        destination: Destination,
    ) -> Result<PendingPublish> {
        let id = message.metadata.id;
        let span = tracing::debug_span!(
            "publish",
            service = %self.service,
            key = %message.metadata.key,
            %id,
        );
        let confirmation = self
            .transport
            .send(Outgoing::new(message, destination))
            .instrument(span)
            .await?;
        Ok(PendingPublish {
            id,
            confirmation,
            unroutable_is_error: self.unroutable_is_error,
        })
    }
    /// Publishes an already encoded message; `app_id` defaults to this service.
    pub(crate) async fn publish_message(&self, mut message: Message) -> Result<Uuid> {
        check_headers(&message.metadata.headers)?;
        let id = message.metadata.id;
        if message.metadata.app_id.is_none() {
            message.metadata.app_id = Some(self.service.to_string());
        }
        self.send_message(message, Destination::Topic)
            .await?
            .await?;
        Ok(id)
    }
}

/// A publish on its way: resolves to the event id once the broker confirmed it, or to why
/// not. Many can be in flight at once from one task ([`Bus::begin_publish`](crate::Bus::begin_publish)).
/// A message no queue is bound for resolves to its id with a warning, unless the bus was
/// built with [`unroutable_is_error`](crate::BusBuilder::unroutable_is_error).
#[must_use = "a publish is confirmed only when this is awaited"]
#[derive(Debug)]
pub struct PendingPublish {
    id: Uuid,
    confirmation: Confirmation,
    unroutable_is_error: bool,
}

impl PendingPublish {
    /// The id of the event being published.
    pub fn id(&self) -> Uuid {
        self.id
    }
}

impl Future for PendingPublish {
    type Output = Result<Uuid>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        Pin::new(&mut this.confirmation).poll(cx).map(|result| match result {
            Ok(()) => Ok(this.id),
            Err(TransportError::Unroutable { message_id, key }) if !this.unroutable_is_error => {
                tracing::warn!(%key, id = %message_id, "unroutable: no queue is bound for this key; nobody will receive it");
                Ok(this.id)
            }
            Err(error) => Err(error.into()),
        })
    }
}

/// Headers the envelope itself uses on the wire; free headers must not shadow them.
const RESERVED_HEADERS: [&str; 9] = [
    HEADER_VERSION,
    HEADER_EVENT_KEY,
    HEADER_CAUSATION_ID,
    HEADER_DEATH_REASON,
    HEADER_FAILED_HANDLERS,
    HEADER_ATTEMPTS,
    HEADER_DEADLINE,
    HEADER_REPLY_STATUS,
    HEADER_ERROR_KIND,
];

fn check_headers(headers: &BTreeMap<String, String>) -> Result<()> {
    match headers
        .keys()
        .find(|name| RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()))
    {
        Some(name) => Err(Error::ReservedHeader {
            header: name.clone(),
        }),
        None => Ok(()),
    }
}
