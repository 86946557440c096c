//! [`RequestError`]: why a request got no reply the caller can use.

use std::time::Duration;

use crate::handler_error::HandlerErrorKind;
use crate::transport::TransportError;

/// Why [`Bus::request`](crate::Bus::request) returned no reply. Each variant says its own
/// part; the cause, where there is one, is its [`source`](std::error::Error::source)
/// ([`Report`](crate::Report) prints the chain).
///
/// ```
/// use std::time::Duration;
/// use pubsub::RequestError;
///
/// let error = RequestError::TimedOut { key: "user.profile_requested".into(), waited: Duration::from_secs(2) };
/// assert!(error.to_string().starts_with("no reply to user.profile_requested within 2s"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// Nothing is bound to the request's key, so no service can answer it: reported as
    /// soon as the broker says so, not at the timeout.
    #[error(
        "no responder for {key}: nothing is bound to that key (is the service that answers it running?)"
    )]
    NoResponder {
        /// The request's key.
        key: String,
    },
    /// No reply came before the deadline (the responder is slow, stopped while handling
    /// it, or its reply was lost).
    #[error(
        "no reply to {key} within {waited:?}: the request was taken, but no handler answered in time"
    )]
    TimedOut {
        /// The request's key.
        key: String,
        /// How long the caller waited.
        waited: Duration,
    },
    /// The responder's handler failed: its message and kind came back instead of a reply.
    #[error("{} could not answer {key} ({kind:?}): {message}", responder.as_deref().unwrap_or("the responder"))]
    HandlerFailed {
        /// The request's key.
        key: String,
        /// How it failed (retryable, permanent, timed out, panicked, undecodable request).
        kind: HandlerErrorKind,
        /// The handler's error message.
        message: String,
        /// The service that answered, if it said.
        responder: Option<String>,
    },
    /// A reply came but does not decode as the request's reply type.
    #[error("the reply to {key} does not decode as {reply_type}")]
    UndecodableReply {
        /// The request's key.
        key: String,
        /// The reply type the caller expects.
        reply_type: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The connection to the broker was lost (or the transport closed) while the request
    /// waited for its reply: every pending request fails at once with this.
    #[error("the connection was lost while waiting for the reply to {key}")]
    ConnectionLost {
        /// The request's key.
        key: String,
        /// What the transport reported.
        #[source]
        source: TransportError,
    },
    /// The request could not be sent: it does not encode, the bus is closed, or the
    /// transport cannot make requests.
    #[error("the request {key} could not be sent")]
    NotSent {
        /// The request's key.
        key: String,
        /// Why: the encoding, the bus's or the transport's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl RequestError {
    /// The key of the request this error is about.
    pub fn key(&self) -> &str {
        match self {
            Self::NoResponder { key }
            | Self::TimedOut { key, .. }
            | Self::HandlerFailed { key, .. }
            | Self::UndecodableReply { key, .. }
            | Self::ConnectionLost { key, .. }
            | Self::NotSent { key, .. } => key,
        }
    }
}
