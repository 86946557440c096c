//! How a request and its reply travel: the deadline a request carries, and the status,
//! error kind and body of a reply (see [`headers`](crate::headers)).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::RequestError;
use crate::codec::JSON;
use crate::handler_error::{HandlerError, HandlerErrorKind};
use crate::headers::{HEADER_DEADLINE, HEADER_ERROR_KIND, HEADER_REPLY_STATUS};
use crate::metadata::{Message, Metadata};

/// [`HEADER_REPLY_STATUS`] of a reply.
const OK: &str = "ok";
/// [`HEADER_REPLY_STATUS`] of an error reply.
const ERROR: &str = "error";
/// The content type of an error reply's body.
const TEXT: &str = "text/plain; charset=utf-8";

/// Marks `metadata` as a request whose caller waits until `deadline`.
pub(crate) fn set_deadline(metadata: &mut Metadata, deadline: SystemTime) {
    let millis = deadline
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis());
    metadata
        .headers
        .insert(HEADER_DEADLINE.to_owned(), millis.to_string());
}

/// When the caller of a request stops waiting, if it said (an unreadable value is
/// ignored: the request is handled).
pub(crate) fn deadline(metadata: &Metadata) -> Option<SystemTime> {
    let millis = metadata.headers.get(HEADER_DEADLINE)?.trim().parse().ok()?;
    Some(Metadata::timestamp_from_millis(millis))
}

/// How long ago the deadline of a request passed; `None` if it has not (or it has none).
pub(crate) fn overdue(metadata: &Metadata) -> Option<Duration> {
    SystemTime::now().duration_since(deadline(metadata)?).ok()
}

/// The reply to `request` (whose `reply_to` is set): correlated, from `service`.
fn reply_to(request: &Message, service: &str, content_type: &str, body: Bytes) -> Message {
    let mut metadata = Metadata::new(request.metadata.key.clone());
    metadata.version = request.metadata.version;
    metadata.content_type = content_type.to_owned();
    metadata.correlation_id = Some(request.metadata.correlation_or_id());
    metadata.causation_id = Some(request.metadata.id.to_string());
    metadata.app_id = Some(service.to_owned());
    Message { metadata, body }
}

/// A reply carrying a handler's answer (JSON).
pub(crate) fn ok_reply(request: &Message, service: &str, body: Bytes) -> Message {
    let mut reply = reply_to(request, service, JSON, body);
    reply
        .metadata
        .headers
        .insert(HEADER_REPLY_STATUS.to_owned(), OK.to_owned());
    reply
}

/// A reply saying the handler failed: its message as the body, its kind in a header.
pub(crate) fn error_reply(request: &Message, service: &str, error: &HandlerError) -> Message {
    let body = Bytes::from(error.message().to_owned());
    let mut reply = reply_to(request, service, TEXT, body);
    let headers = &mut reply.metadata.headers;
    headers.insert(HEADER_REPLY_STATUS.to_owned(), ERROR.to_owned());
    headers.insert(
        HEADER_ERROR_KIND.to_owned(),
        kind_name(error.kind()).to_owned(),
    );
    reply
}

/// Reads a reply to the request `key`: the reply value, or the responder's failure.
pub(crate) fn read_reply<T: DeserializeOwned>(
    key: &str,
    reply: &Message,
) -> Result<T, RequestError> {
    let headers = &reply.metadata.headers;
    if headers.get(HEADER_REPLY_STATUS).map(String::as_str) == Some(ERROR) {
        return Err(RequestError::HandlerFailed {
            key: key.to_owned(),
            kind: headers
                .get(HEADER_ERROR_KIND)
                .map_or(HandlerErrorKind::Failed, |name| kind_of(name)),
            message: String::from_utf8_lossy(&reply.body).into_owned(),
            responder: reply.metadata.app_id.clone(),
        });
    }
    serde_json::from_slice(&reply.body).map_err(|source| RequestError::UndecodableReply {
        key: key.to_owned(),
        reply_type: std::any::type_name::<T>(),
        source,
    })
}

/// The wire name of a failure's kind.
fn kind_name(kind: HandlerErrorKind) -> &'static str {
    match kind {
        HandlerErrorKind::Permanent => "permanent",
        HandlerErrorKind::Panicked => "panicked",
        HandlerErrorKind::TimedOut => "timed_out",
        HandlerErrorKind::Decode => "decode",
        _ => "failed",
    }
}

/// The kind a wire name stands for; an unknown one (from another client) is `Failed`.
fn kind_of(name: &str) -> HandlerErrorKind {
    match name {
        "permanent" => HandlerErrorKind::Permanent,
        "panicked" => HandlerErrorKind::Panicked,
        "timed_out" => HandlerErrorKind::TimedOut,
        "decode" => HandlerErrorKind::Decode,
        _ => HandlerErrorKind::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_travels_by_its_name() {
        for kind in [
            HandlerErrorKind::Failed,
            HandlerErrorKind::Permanent,
            HandlerErrorKind::Panicked,
            HandlerErrorKind::TimedOut,
            HandlerErrorKind::Decode,
        ] {
            assert_eq!(kind_of(kind_name(kind)), kind);
        }
        assert_eq!(kind_of("something-else"), HandlerErrorKind::Failed);
    }

    #[test]
    fn a_deadline_travels_in_milliseconds() {
        let mut metadata = Metadata::new("user.asked");
        let deadline = Metadata::timestamp_from_millis(1_700_000_000_123);
        set_deadline(&mut metadata, deadline);
        assert_eq!(metadata.headers[HEADER_DEADLINE], "1700000000123");
        assert_eq!(super::deadline(&metadata), Some(deadline));
        assert!(overdue(&metadata).is_some());
    }

    #[test]
    fn a_plain_reply_without_status_is_a_reply() {
        let reply = Message::new("user.asked", Bytes::from_static(b"42"));
        assert_eq!(read_reply::<u32>("user.asked", &reply).ok(), Some(42));
        let failed = error_reply(&reply, "users", &HandlerError::permanent("no user u-9"));
        match read_reply::<u32>("user.asked", &failed) {
            Err(RequestError::HandlerFailed {
                kind,
                message,
                responder,
                ..
            }) => {
                assert_eq!(kind, HandlerErrorKind::Permanent);
                assert_eq!(message, "no user u-9");
                assert_eq!(responder.as_deref(), Some("users"));
            }
            other => panic!("{other:?}"),
        }
    }
}
