//! The one error type of `pubsub-core`.

use std::time::Duration;

use crate::metadata::{
    HEADER_CAUSATION_ID, HEADER_DEATH_REASON, HEADER_FAILED_HANDLERS, HEADER_VERSION,
};
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
    /// The bus was configured inconsistently. The misuses with a variant of their own
    /// ([`MissingService`](Self::MissingService), [`DuplicateHandler`](Self::DuplicateHandler),
    /// ...) are not reported with this one.
    #[error("configuration error: {0}")]
    Config(String),
    /// The bus builder was not given a service name (reported by
    /// [`BusBuilder::build`](crate::BusBuilder::build)).
    #[error(
        "a bus needs a service name, which names its queue: Bus::builder().service(\"orders\")"
    )]
    MissingService,
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
    /// [`HandlerSelection::named`](crate::HandlerSelection::named) names a handler that no
    /// `#[handler]` registered (reported by [`BusBuilder::build`](crate::BusBuilder::build)).
    #[error(
        "no #[handler] is named {names:?} (registered: {registered:?}): select registered names \
         (a handler is named after its fn unless #[handler(name = \"...\")] says otherwise), or \
         the fns by path with pubsub::handlers![..], which the compiler checks"
    )]
    UnknownHandler {
        /// The selected names that match no handler.
        names: Vec<String>,
        /// The names of every registered handler.
        registered: Vec<String>,
    },
    /// A handler uses a named retry policy the bus does not define (reported by
    /// [`BusBuilder::build`](crate::BusBuilder::build)).
    #[error(
        "handler `{handler}` uses retry policy `{policy}`, which this bus does not define: \
         .define_retry_policy(\"{policy}\", RetryPolicy::exponential(..)) on the bus builder"
    )]
    UnknownRetryPolicy {
        /// The handler's name.
        handler: String,
        /// The policy it names.
        policy: String,
    },
    /// A handler name is empty or has a character outside ASCII letters, digits, `_`, `-`,
    /// `.` and `:` — names travel in a comma-separated dead-letter header (reported by
    /// [`BusBuilder::build`](crate::BusBuilder::build)).
    #[error(
        "handler name {name:?} ({origin}) is not plain: use only ASCII letters, digits, `_`, \
         `-`, `.` and `:` (names travel in a comma-separated dead-letter header)"
    )]
    InvalidHandlerName {
        /// The name as given.
        name: String,
        /// Where the handler was declared.
        origin: HandlerOrigin,
    },
    /// A free header given to a publish shadows a header the envelope itself uses.
    #[error("header {header:?} is reserved for the envelope: {}", reserved_header_hint(.header))]
    ReservedHeader {
        /// The header, as given.
        header: String,
    },
    /// The bus is already running: it consumes from one place at a time.
    #[error(
        "bus {service} is already running: run it once, or build another bus of the service to \
         add consumers"
    )]
    AlreadyRunning {
        /// The bus's service.
        service: String,
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

/// Where a reserved header's value comes from, for [`Error::ReservedHeader`].
fn reserved_header_hint(header: &str) -> &'static str {
    match header.to_ascii_lowercase().as_str() {
        HEADER_VERSION => "it carries the event's version, #[event(version = N)]",
        HEADER_CAUSATION_ID => {
            "set it with PublishOptions::causation_id(..), or use PublishOptions::caused_by(..)"
        }
        HEADER_DEATH_REASON | HEADER_FAILED_HANDLERS => {
            "the bus sets it when it dead-letters a message"
        }
        _ => "set it through its own field of PublishOptions",
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
