//! The names of the headers the framework owns on the wire, and what each carries.
//!
//! A free header given to a publish may not shadow one of these
//! ([`Error::ReservedHeader`](crate::Error::ReservedHeader)).

/// Header carrying the event version (`x-event-version`).
pub const HEADER_VERSION: &str = "x-event-version";
/// Header carrying the routing key of an event whose type (its key template,
/// `session.{session_id}.code_updated`) differs from it: `session.42.code_updated`. The
/// transports write it where the wire's key field carries the type, so that the key
/// survives a trip through a retry queue or a dead-letter queue.
pub const HEADER_EVENT_KEY: &str = "x-event-key";
/// Header carrying the causation id (`x-causation-id`).
pub const HEADER_CAUSATION_ID: &str = "x-causation-id";
/// Header on dead letters: why the message was dead-lettered.
pub const HEADER_DEATH_REASON: &str = "x-death-reason";
/// Header on dead letters and delayed retries: comma-separated names of the handlers that
/// failed. A delivery that carries it runs only those handlers, so that replaying a dead
/// letter does not run again the handlers that had succeeded.
pub const HEADER_FAILED_HANDLERS: &str = "x-failed-handlers";
/// Header the framework owns: handler attempts already spent on this event, on messages
/// delivered again after a delay ([`Settlement::Retry`](crate::transport::Settlement::Retry)).
pub const HEADER_ATTEMPTS: &str = "x-attempts";

/// Header on requests: when the caller stops waiting, in milliseconds since the Unix
/// epoch. A responder does not start a request past it (compare clocks with care: they
/// should be synchronised).
pub const HEADER_DEADLINE: &str = "x-deadline";
/// Header on replies: `ok` (the body is the reply, JSON) or `error` (the body is the
/// responder's error message, UTF-8 text, and [`HEADER_ERROR_KIND`] says its kind). A
/// reply without it is `ok`, as a plain client's reply is.
pub const HEADER_REPLY_STATUS: &str = "x-reply-status";
/// Header on error replies: the kind of the responder's failure (`failed`, `permanent`,
/// `panicked`, `timed_out`, `decode`).
pub const HEADER_ERROR_KIND: &str = "x-error-kind";

/// Header on error-stream entries: the stream the failed event was read from.
pub const HEADER_STREAM: &str = "x-stream";
/// Header on error-stream entries: the failed event's offset in [`HEADER_STREAM`].
pub const HEADER_STREAM_OFFSET: &str = "x-stream-offset";

/// Where a reserved header's value comes from, for [`Error::ReservedHeader`](crate::Error::ReservedHeader).
pub(crate) fn reserved_header_hint(header: &str) -> &'static str {
    match header.to_ascii_lowercase().as_str() {
        HEADER_VERSION => "it carries the event's version, #[event(version = N)]",
        HEADER_CAUSATION_ID => {
            "set it with PublishOptions::causation_id(..), or use PublishOptions::caused_by(..)"
        }
        HEADER_DEATH_REASON | HEADER_FAILED_HANDLERS => {
            "the bus sets it when it dead-letters a message"
        }
        HEADER_EVENT_KEY => "it carries the event's routing key, made from its fields",
        HEADER_DEADLINE => "Bus::request sets it from the request's timeout, .timeout(..)",
        HEADER_REPLY_STATUS | HEADER_ERROR_KIND => "the bus sets it on the replies it sends",
        _ => "set it through its own field of PublishOptions",
    }
}
