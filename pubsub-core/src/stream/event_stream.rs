//! Typed async streams of events, for code that iterates rather than registering handlers
//! ([`Bus::subscribe`](crate::Bus::subscribe)).

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::stream::{BoxStream, Stream, StreamExt};

use crate::error::{Error, Result};
use crate::event::{Event, is_type_of};
use crate::metadata::Metadata;
use crate::pattern::Pattern;
use crate::transport::{Consumer, Settlement, TransportError};

/// One event of an [`EventStream`]: the typed payload, its metadata, and where it was read.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StreamedEvent<E> {
    /// The event.
    pub event: E,
    /// Its id, key, version, timestamp, correlation and causation ids, headers.
    pub metadata: Metadata,
    /// The stream it was read from (on a queue transport, the subscription's private
    /// queue).
    pub stream: String,
    /// Its offset in the stream (`None` on a queue transport).
    pub offset: Option<u64>,
}

/// A typed async [`Stream`] of the events of type `E`, made by
/// [`Bus::subscribe`](crate::Bus::subscribe): on a stream-backed transport read from a
/// stream from where it was asked to start, on a queue transport live from a private
/// queue. Messages of other types, or of other entities than the subscription's
/// parameters name, are passed over; a message of type `E` that does not decode (another
/// version, a malformed body) is an `Err` item ([`Error::Undecodable`]), and the stream
/// goes on. It ends when the transport closes.
///
/// The reader is anonymous: it stores no offset, and every subscription starts where it
/// is told. Dropping the stream stops reading, and removes its private queue.
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
    /// The stream it reads (on a queue transport, its private queue).
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

impl<E: Event> EventStream<E> {
    /// Reads `consumer` (of `source`, a stream or a live queue): each delivery is settled
    /// at once, and the events of type `E` whose key matches `pattern` (all of them, with
    /// none) come out decoded.
    pub(crate) fn new(
        consumer: Box<dyn Consumer>,
        source: String,
        pattern: Option<Pattern>,
    ) -> Self {
        let reader = Reader {
            consumer,
            source: source.clone(),
            pattern,
        };
        let items = futures::stream::unfold(Some(reader), |state| async move {
            let mut reader = state?;
            let item = reader.next_event::<E>().await?;
            let ended = matches!(item, Err(Error::Transport(TransportError::Closed)));
            Some((item, (!ended).then_some(reader)))
        })
        .boxed();
        Self {
            stream: source,
            items,
            _event: PhantomData,
        }
    }
}

/// What an [`EventStream`] reads from, and what it lets through.
struct Reader {
    consumer: Box<dyn Consumer>,
    source: String,
    pattern: Option<Pattern>,
}

impl Reader {
    /// The next item: an event of type `E`, or why one was not; `None` at the end.
    async fn next_event<E: Event>(&mut self) -> Option<Result<StreamedEvent<E>>> {
        let stream = self.source.as_str();
        loop {
            let delivery = match self.consumer.next().await? {
                Ok(delivery) => delivery,
                Err(error) => return Some(Err(error.into())),
            };
            let (message, offset) = (delivery.message, delivery.offset);
            // anonymous: settling only frees the read-ahead
            if let Err(error) = delivery.acker.settle(Settlement::Ack).await {
                return Some(Err(error.into()));
            }
            let wanted = self
                .pattern
                .as_ref()
                .is_none_or(|pattern| pattern.matches(&message.metadata.key));
            if !wanted || !is_type_of::<E>(&message.metadata) {
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
}
