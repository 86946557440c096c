//! The one error type of `pubsub-core`.

use std::time::Duration;

use crate::registry::HandlerOrigin;

/// Everything that can go wrong in the bus itself (handlers fail with
/// [`HandlerError`](crate::HandlerError) instead).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An event could not be encoded or a payload could not be decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The transport failed (connection lost, publish not confirmed, ...).
    #[error("transport error: {0}")]
    Transport(#[from] TransportError),
    /// The bus was configured inconsistently (reported by [`BusBuilder::build`](crate::BusBuilder::build)).
    #[error("configuration error: {0}")]
    Config(String),
    /// Two handlers of one bus have the same name, which tells handlers apart in logs, dead
    /// letters and the test harness (reported by
    /// [`BusBuilder::build`](crate::BusBuilder::build)).
    #[error(
        "two handlers are named `{name}`: {first} and {second}; {}",
        rename_hint(*.first, *.second)
    )]
    DuplicateHandler {
        /// The name both handlers have.
        name: String,
        /// Where the first one was declared.
        first: HandlerOrigin,
        /// Where the second one was declared.
        second: HandlerOrigin,
    },
    /// A topic pattern is not valid AMQP topic syntax.
    #[error(transparent)]
    Pattern(#[from] crate::pattern::PatternError),
    /// A wait (harness assertion, request, shutdown) ran out of time.
    #[error("timed out after {0:?}: {1}")]
    Timeout(Duration, String),
    /// The bus has been shut down.
    #[error("the bus was shut down")]
    Closed,
    /// A task of the bus (its consumer loop) panicked or was cancelled.
    #[error("a bus task failed: {0}")]
    Task(String),
}

/// How to rename one of two handlers that share a name, for [`Error::DuplicateHandler`].
fn rename_hint(first: HandlerOrigin, second: HandlerOrigin) -> &'static str {
    let is_fn = |origin| matches!(origin, HandlerOrigin::Attribute { .. });
    match (is_fn(first), is_fn(second)) {
        (true, true) => "rename one with #[handler(name = \"...\")] on its fn",
        (false, false) => {
            "rename one: Handler::typed(\"other-name\", ..) or Handler::raw(\"other-name\", ..)"
        }
        _ => {
            "rename one: #[handler(name = \"...\")] on the fn, or Handler::typed(\"other-name\", ..) \
             / Handler::raw(\"other-name\", ..) for the other"
        }
    }
}

/// Shorthand for results whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Encoding or decoding a payload failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The event could not be serialized.
    #[error("cannot encode {key}: {reason}")]
    Encode {
        /// Routing key of the event.
        key: &'static str,
        /// What the serializer reported.
        reason: String,
    },
    /// The body is not a valid payload of the expected type.
    #[error("malformed {content_type} body for {key}: {reason}")]
    Malformed {
        /// The key the handler expected.
        key: &'static str,
        /// Content type of the body.
        content_type: &'static str,
        /// What the deserializer reported.
        reason: String,
    },
    /// The message's content type is not the one the event type is encoded with.
    #[error("content type {found:?} cannot be decoded as {key} (expects {expected:?})")]
    ContentType {
        /// The key the handler expected.
        key: &'static str,
        /// Content type of the event type.
        expected: &'static str,
        /// Content type found on the message.
        found: String,
    },
    /// The message carries a version this consumer does not know.
    #[error("unknown version {found} of {key} (this consumer knows version {known})")]
    UnknownVersion {
        /// The key of the event.
        key: &'static str,
        /// The version compiled into this consumer.
        known: u32,
        /// The version found on the message.
        found: u32,
    },
}

/// A transport could not do what was asked. Transports wrap their client's
/// errors into this type so that no broker type leaks into the core.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The connection to the broker is gone and could not be restored in time.
    #[error("connection unavailable: {0}")]
    Unavailable(String),
    /// The broker refused or did not confirm a publish.
    #[error("publish not confirmed: {0}")]
    NotConfirmed(String),
    /// Declaring or binding broker topology failed.
    #[error("topology: {0}")]
    Topology(String),
    /// Settling (ack or dead-letter) a delivery failed.
    #[error("settle failed: {0}")]
    Settle(String),
    /// The transport has been closed.
    #[error("transport closed")]
    Closed,
    /// Anything else the client reported.
    #[error("{0}")]
    Other(String),
}
