//! What a stream consumer writes to its service's error stream when handling failed.

use crate::headers::{HEADER_STREAM, HEADER_STREAM_OFFSET};
use crate::metadata::Message;
use crate::transport::DeadLetter;

/// An entry of a service's error stream
/// ([`StreamNaming::error_stream`](crate::stream::StreamNaming::error_stream)): an event its
/// handlers gave up on, with why, which handlers failed, and where it was read.
///
/// A stream consumer settling a delivery with
/// [`Settlement::DeadLetter`](crate::transport::Settlement::DeadLetter) appends
/// [`ErrorStreamEntry::copy_of`] the message to the error stream (confirmed) and only then
/// lets its offset advance: nothing is skipped silently.
///
/// ```
/// use pubsub::{Message, stream::ErrorStreamEntry, transport::{Bytes, DeadLetter}};
/// let event = Message::new("order.created", Bytes::from_static(b"{}"));
/// let failed = DeadLetter::new("charge: card declined", vec!["charge".into()]);
/// let copy = ErrorStreamEntry::copy_of(&event, &failed, "events.order", 41);
/// let entry = ErrorStreamEntry::read(copy);
/// assert_eq!(entry.reason, "charge: card declined");
/// assert_eq!(entry.failed_handlers, ["charge"]);
/// assert_eq!((entry.stream.as_deref(), entry.offset), (Some("events.order"), Some(41)));
/// assert_eq!(entry.message.metadata.id, event.metadata.id);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErrorStreamEntry {
    /// The event as it was read, its id kept, with the headers below added.
    pub message: Message,
    /// Why handling failed ([`HEADER_DEATH_REASON`](crate::headers::HEADER_DEATH_REASON)).
    pub reason: String,
    /// The handlers that failed ([`HEADER_FAILED_HANDLERS`](crate::headers::HEADER_FAILED_HANDLERS));
    /// empty for input no handler could take.
    pub failed_handlers: Vec<String>,
    /// The stream it was read from ([`HEADER_STREAM`]).
    pub stream: Option<String>,
    /// Its offset there ([`HEADER_STREAM_OFFSET`]).
    pub offset: Option<u64>,
}

impl ErrorStreamEntry {
    /// The copy of `message` (read at `offset` of `stream`) to append to the error
    /// stream: the reason, failed handlers, stream and offset in its headers.
    pub fn copy_of(message: &Message, failed: &DeadLetter, stream: &str, offset: u64) -> Message {
        let mut copy = message.clone();
        failed.mark(&mut copy);
        let headers = &mut copy.metadata.headers;
        headers.insert(HEADER_STREAM.to_owned(), stream.to_owned());
        headers.insert(HEADER_STREAM_OFFSET.to_owned(), offset.to_string());
        copy
    }

    /// An entry as its headers describe it.
    pub fn read(message: Message) -> Self {
        let headers = &message.metadata.headers;
        let stream = headers.get(HEADER_STREAM).cloned();
        let offset = headers
            .get(HEADER_STREAM_OFFSET)
            .and_then(|o| o.parse().ok());
        let (reason, failed_handlers) = message.metadata.death();
        Self {
            message,
            reason,
            failed_handlers,
            stream,
            offset,
        }
    }
}
