//! Typed async streams of events, for code that iterates a stream rather than registering
//! handlers ([`Bus::subscribe`], [`Bus::subscribe_to`]).

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::stream::{BoxStream, Stream, StreamExt};

use crate::bus::Bus;
use crate::error::{Error, Result};
use crate::event::{Event, is_type_of};
use crate::metadata::Metadata;
use crate::transport::TransportError;
use crate::transport::{Consumer, Settlement, StartAt, StoreOffsets, StreamSource, Subscription};

/// How many messages an event stream reads ahead of its iterator.
const READ_AHEAD: u16 = 100;

/// One event read from a stream: the typed payload, its metadata, and where it was read.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StreamedEvent<E> {
    /// The event.
    pub event: E,
    /// Its id, key, version, timestamp, correlation and causation ids, headers.
    pub metadata: Metadata,
    /// The stream it was read from.
    pub stream: String,
    /// Its offset there (where the transport says).
    pub offset: Option<u64>,
}

/// A typed async [`Stream`] of the events of type `E` in one stream, from where it was
/// asked to start ([`Bus::subscribe`]). Messages with another key are passed over (a
/// domain's stream holds all its events); a message under `E`'s key that does not decode
/// (another version, a malformed body) is an `Err` item
/// ([`Error::Undecodable`]), and the stream goes on. It ends when the transport closes.
///
/// The reader is anonymous: it stores no offset, and every subscription starts where it
/// is told. Dropping the stream stops reading.
#[must_use = "a stream does nothing unless polled"]
pub struct EventStream<E> {
    stream: String,
    items: BoxStream<'static, Result<StreamedEvent<E>>>,
    _event: PhantomData<fn() -> E>,
}

impl<E> std::fmt::Debug for EventStream<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl<E> EventStream<E> {
    /// The stream it reads.
    pub fn stream(&self) -> &str {
        &self.stream
    }
}

impl<E> Stream for EventStream<E> {
    type Item = Result<StreamedEvent<E>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.items.poll_next_unpin(cx)
    }
}

impl Bus {
    /// Iterates the events of type `E` in the stream of their domain
    /// ([`StreamNaming::stream_of_domain`](crate::stream::StreamNaming::stream_of_domain)), from
    /// `start`: the chat room's `async for message in consume_messages(room)`.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use pubsub::prelude::*;
    /// use pubsub::{Bus, MemoryTransport, stream::StartAt};
    ///
    /// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
    /// #[event(domain = "room", action = "said")]
    /// struct Said { text: String }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> pubsub::Result<()> {
    /// let bus = Bus::publisher("chat", MemoryTransport::stream_backed());
    /// bus.publish(&Said { text: "first".into() }).await?;
    /// // a late joiner replays the history
    /// let mut history = bus.subscribe::<Said>(StartAt::First).await?;
    /// bus.publish(&Said { text: "second".into() }).await?;
    /// for expected in ["first", "second"] {
    ///     let said = history.next().await.expect("the stream goes on")?;
    ///     assert_eq!(said.event.text, expected);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`TransportError::Unsupported`] on a transport that is not stream-backed.
    pub async fn subscribe<E: Event>(&self, start: StartAt) -> Result<EventStream<E>> {
        let transport = self.transport();
        let Some(naming) = transport.stream_naming() else {
            return Err(TransportError::Unsupported {
                what: "event streams (Bus::subscribe needs a stream-backed transport)",
                transport: transport.name(),
            }
            .into());
        };
        self.subscribe_to(naming.stream_of_domain(E::DOMAIN), start)
            .await
    }

    /// Iterates the events of type `E` in the stream named `stream`, from `start` (see
    /// [`subscribe`](Self::subscribe)). Of a super stream, every partition is read, each
    /// from `start`: events of one partition key come in order, across keys interleaved.
    pub async fn subscribe_to<E: Event>(
        &self,
        stream: impl Into<String>,
        start: StartAt,
    ) -> Result<EventStream<E>> {
        let stream = stream.into();
        let transport = self.transport();
        let partitioned = transport
            .stream_naming()
            .is_some_and(|naming| naming.partitions(&stream).is_some());
        let subscription = Subscription::stream(
            self.service(),
            StreamSource::new(stream.clone())
                .super_stream(partitioned)
                .start_at(start)
                .store_offsets(StoreOffsets::Never),
        )
        .prefetch(READ_AHEAD);
        let consumer = transport.consume(&subscription).await?;
        let items = futures::stream::unfold(Some((consumer, stream.clone())), |state| async move {
            let (mut consumer, stream) = state?;
            let item = next_event::<E>(&mut consumer, &stream).await?;
            let ended = matches!(item, Err(Error::Transport(TransportError::Closed)));
            Some((item, (!ended).then_some((consumer, stream))))
        })
        .boxed();
        Ok(EventStream {
            stream,
            items,
            _event: PhantomData,
        })
    }
}

/// The next item: an event of type `E`, or why one was not; `None` at the end.
async fn next_event<E: Event>(
    consumer: &mut Box<dyn Consumer>,
    stream: &str,
) -> Option<Result<StreamedEvent<E>>> {
    loop {
        let delivery = match consumer.next().await? {
            Ok(delivery) => delivery,
            Err(error) => return Some(Err(error.into())),
        };
        let (message, offset) = (delivery.message, delivery.offset);
        // anonymous: settling only frees the read-ahead
        if let Err(error) = delivery.acker.settle(Settlement::Ack).await {
            return Some(Err(error.into()));
        }
        if !is_type_of::<E>(&message.metadata) {
            continue;
        }
        return Some(match E::decode_message(&message) {
            Ok(event) => Ok(StreamedEvent {
                event,
                metadata: message.metadata.clone(),
                stream: stream.to_owned(),
                offset,
            }),
            Err(source) => Err(Error::Undecodable {
                stream: stream.to_owned(),
                offset,
                id: message.metadata.id,
                source,
            }),
        });
    }
}
