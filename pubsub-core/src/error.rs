//! The one error type of `pubsub-core`.

use std::time::Duration;

use crate::metadata::{
    HEADER_CAUSATION_ID, HEADER_DEATH_REASON, HEADER_FAILED_HANDLERS, HEADER_VERSION,
};
use crate::registration::HandlerOrigin;

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
    /// The in-memory broker has no queue of this service (it was never declared).
    #[error("the in-memory broker has no queue for service {service:?}; known services: {known:?}")]
    UnknownQueue {
        /// The service asked for.
        service: String,
        /// The services whose queues exist.
        known: Vec<String>,
    },
    /// The in-memory broker has no stream of this name (nothing was published to it and no
    /// consumer declared it).
    #[error("the in-memory broker has no stream {stream:?}; known streams: {known:?}")]
    UnknownStream {
        /// The stream asked for.
        stream: String,
        /// The streams that exist.
        known: Vec<String>,
    },
    /// A message read from a stream under an event's key did not decode as that event
    /// (an item of an [`EventStream`](crate::EventStream); the stream goes on).
    #[error("message {id} at offset {offset:?} of stream {stream} does not decode: {source}")]
    Undecodable {
        /// The stream.
        stream: String,
        /// Its offset there.
        offset: Option<u64>,
        /// The message's id.
        id: uuid::Uuid,
        /// Why it does not decode.
        #[source]
        source: CodecError,
    },
    /// A handler pattern maps to no stream (reported by
    /// [`BusBuilder::build`](crate::BusBuilder::build) for a bus that reads streams).
    #[error(transparent)]
    UnmappedPattern(#[from] crate::stream::UnmappedPattern),
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

/// The source error a transport keeps (lapin's, the stream client's), shared so that the
/// error stays `Clone`.
pub type BoxedSource = std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>;

/// A transport could not do what was asked. Transports wrap their client's errors into
/// this type (keeping them as [`source`](std::error::Error::source)) so that no broker
/// type leaks into the core.
///
/// ```
/// use pubsub::TransportError;
/// let error = TransportError::unavailable("connection reset");
/// assert!(error.is_transient());
/// assert!(!TransportError::Closed.is_transient());
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The connection to the broker is gone and could not be restored in time.
    #[error("connection unavailable: {message}")]
    Unavailable {
        /// What happened.
        message: String,
        /// The client's error.
        #[source]
        source: Option<BoxedSource>,
    },
    /// The broker blocked the connection (memory or disk alarm) and the publish could not
    /// be written within the bound.
    #[error("the broker blocks publishing ({reason}); gave up after {waited:?}")]
    Blocked {
        /// The broker's reason (`low on memory`).
        reason: String,
        /// How long the publish waited.
        waited: Duration,
    },
    /// No queue is bound for the message: the broker returned it.
    #[error("unroutable: no queue is bound for key {key:?} (message {message_id})")]
    Unroutable {
        /// The message's id.
        message_id: String,
        /// Its routing key.
        key: String,
    },
    /// The broker refused the message (a full queue with `reject-publish`, an internal error).
    #[error("the broker refused the message: {reason}")]
    Nacked {
        /// Why, as far as the broker or transport says.
        reason: String,
    },
    /// An operation got no answer in time.
    #[error("{operation} timed out after {after:?}")]
    TimedOut {
        /// What timed out (`publish confirm`, `connect`).
        operation: &'static str,
        /// The bound.
        after: Duration,
    },
    /// Declaring or binding broker topology failed.
    #[error("topology: {message}")]
    Topology {
        /// What failed.
        message: String,
        /// The client's error.
        #[source]
        source: Option<BoxedSource>,
    },
    /// Settling (ack, dead-letter, requeue) a delivery failed: it is not done, and the broker
    /// will deliver it again.
    #[error("settle failed: {message}")]
    Settle {
        /// What failed.
        message: String,
        /// The client's error.
        #[source]
        source: Option<BoxedSource>,
    },
    /// The transport cannot do this at all.
    #[error("the {transport} transport does not support {what}")]
    Unsupported {
        /// What was asked.
        what: &'static str,
        /// The transport's name.
        transport: &'static str,
    },
    /// The transport has been closed.
    #[error("transport closed")]
    Closed,
    /// Anything else the client reported.
    #[error("{message}")]
    Other {
        /// What happened.
        message: String,
        /// The client's error.
        #[source]
        source: Option<BoxedSource>,
    },
}

impl TransportError {
    /// [`Unavailable`](Self::Unavailable) without a source.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable {
            message: message.into(),
            source: None,
        }
    }

    /// [`Topology`](Self::Topology) without a source.
    pub fn topology(message: impl Into<String>) -> Self {
        Self::Topology {
            message: message.into(),
            source: None,
        }
    }

    /// [`Settle`](Self::Settle) without a source.
    pub fn settle(message: impl Into<String>) -> Self {
        Self::Settle {
            message: message.into(),
            source: None,
        }
    }

    /// [`Other`](Self::Other) without a source.
    pub fn other(message: impl Into<String>) -> Self {
        Self::Other {
            message: message.into(),
            source: None,
        }
    }

    /// Whether trying again later may succeed (a lost connection, a blocked broker, a
    /// timeout), as opposed to a refusal that will repeat.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unavailable { .. } | Self::Blocked { .. } | Self::TimedOut { .. }
        )
    }
}
