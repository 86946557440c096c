//! The bus's error type: what can go wrong in building, publishing and running a bus.
//! It sits above the data and transport layers, whose errors it wraps.

use std::time::Duration;

use crate::codec::CodecError;
use crate::headers::reserved_header_hint;
use crate::memory::InspectError;
use crate::origin::HandlerOrigin;
use crate::request::RequestError;
use crate::transport::TransportError;

/// Everything that can go wrong in the bus itself (handlers fail with
/// [`HandlerError`](crate::HandlerError) instead).
///
/// Each variant says only its own part; the cause is its
/// [`source`](std::error::Error::source). [`Report`](crate::Report) shows the whole chain
/// on one line, and `Debug` (what `main` prints when it returns the error) shows it with
/// one cause per line.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An event could not be encoded or a payload could not be decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The transport failed (connection lost, publish not confirmed, ...).
    #[error(transparent)]
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
        HandlerOrigin::rename_hint(*.first, *.second)
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
    /// A request got no reply the caller can use ([`Bus::request`](crate::Bus::request)).
    #[error(transparent)]
    Request(#[from] RequestError),
    /// An event's routing key could not be made from its fields (a key parameter's value
    /// is empty, holds `.`, `*`, `#` or whitespace, or makes the key too long): nothing was
    /// published.
    #[error(transparent)]
    Key(#[from] crate::key_template::KeyError),
    /// A topic pattern is not valid AMQP topic syntax.
    #[error(transparent)]
    Pattern(#[from] crate::pattern::PatternError),
    /// A wait (harness assertion, request, shutdown) ran out of time.
    #[error("timed out after {0:?}: {1}")]
    Timeout(Duration, String),
    /// The bus was shut down: it does not run again ([`Bus::shutdown`](crate::Bus::shutdown)).
    #[error("the bus was shut down")]
    ShutDown,
    /// Inspecting the in-memory broker named a queue or stream it does not have.
    #[error(transparent)]
    Inspect(#[from] InspectError),
    /// A message read from a stream under an event's key did not decode as that event
    /// (an item of an [`EventStream`](crate::stream::EventStream); the stream goes on).
    #[error("message {id} at offset {offset:?} of stream {stream} does not decode")]
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
    /// A bus that selects its handlers by default would run `#[handler]`s that name no
    /// service, which a bus of another service already runs in this process (reported by
    /// [`BusBuilder::build`](crate::BusBuilder::build)). Such handlers run on one service's
    /// buses per process.
    #[error(
        "bus `{service}` would run the #[handler]s {}, which name no service and already \
         run on bus `{owner}` in this process: a #[handler] without `service` runs on one \
         service per process. Reserve each for its service with \
         #[handler(service = \"...\")], or choose what `{service}` runs with \
         .select_handlers(..) (pubsub::handlers![..]; HandlerSelection::ForService to run \
         them here too; Bus::publisher for a bus that only publishes)",
        .handlers.join(", ")
    )]
    UnassignedHandlersTaken {
        /// The service of the bus being built.
        service: String,
        /// The service whose buses run those handlers.
        owner: String,
        /// The handlers, each with where it was declared.
        handlers: Vec<String>,
    },
    /// A task of the bus (its consumer loop) panicked or was cancelled.
    #[error("a bus task failed: {0}")]
    Task(String),
}

/// The error and its causes, one per line (see [`Report`](crate::Report)'s `Debug`).
impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&crate::Report::new(self), f)
    }
}

/// Shorthand for results whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::Error;
    use crate::transport::TransportError;

    #[test]
    fn debug_shows_each_cause_once_on_its_own_line() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset");
        let error = Error::from(TransportError::Unavailable {
            message: "publishing failed".into(),
            source: Some(std::sync::Arc::new(io)),
        });
        assert_eq!(
            error.to_string(),
            "connection unavailable: publishing failed"
        );
        assert_eq!(
            format!("{error:?}"),
            "connection unavailable: publishing failed\n\nCaused by:\n    connection reset"
        );
    }
}
