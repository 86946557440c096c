//! The one error type of `pubsub-streams`.

use std::sync::Arc;
use std::time::Duration;

use pubsub_core::transport::{BoxedSource, ConnectFailure, TransportError};

/// What can go wrong in the streams transport. Broker addresses in messages never carry
/// the password. Each variant says its own part; the client's error is its
/// [`source`](std::error::Error::source) (see [`pubsub_core::Report`]).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StreamsError {
    /// The configuration is not usable.
    #[error("streams configuration: {0}")]
    Config(String),
    /// No connection could be made: refused for a reason retrying does not fix (reported
    /// after the first attempt), or unreachable within the configured attempts. The message
    /// says what to check.
    #[error("{message}")]
    Connect {
        /// Why, by what fixes it.
        failure: ConnectFailure,
        /// What failed and what to check, password hidden.
        message: String,
        /// The client's error of the last attempt.
        #[source]
        source: BoxedSource,
    },
    /// The client reported an error while doing `what`.
    #[error("{what}")]
    Client {
        /// What was being done (`consume events.order as billing`).
        what: String,
        /// The client's error.
        #[source]
        source: BoxedSource,
    },
    /// The broker answered with a response code other than OK.
    #[error("{what}: the broker answered {code}")]
    Refused {
        /// What was being done.
        what: String,
        /// The broker's response code.
        code: String,
    },
    /// No answer came in time.
    #[error("{what}: no answer within {after:?}")]
    TimedOut {
        /// What timed out.
        what: &'static str,
        /// The bound.
        after: Duration,
    },
    /// The transport was closed.
    #[error("the streams transport is closed")]
    Closed,
}

impl StreamsError {
    pub(crate) fn client(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Client {
            what: what.into(),
            source: Arc::new(source),
        }
    }
}

impl From<StreamsError> for TransportError {
    fn from(error: StreamsError) -> Self {
        match error {
            StreamsError::Closed => TransportError::Closed,
            StreamsError::TimedOut { what, after } => TransportError::TimedOut {
                operation: what,
                after,
            },
            StreamsError::Config(message) => TransportError::other(message),
            refused @ StreamsError::Refused { .. } => TransportError::Nacked {
                reason: refused.to_string(),
            },
            // each level says its own part: the client's error becomes the source
            StreamsError::Client { what, source } => TransportError::Unavailable {
                message: what,
                source: Some(source),
            },
            StreamsError::Connect {
                failure,
                message,
                source,
            } => TransportError::Connect {
                failure,
                message,
                source: Some(source),
            },
        }
    }
}

/// So that `?` on the transport's own calls (`from_env()`, `connect`) works in a function
/// returning `pubsub::Error`, as a `main` does: through [`TransportError`], which keeps the
/// message and the source.
impl From<StreamsError> for pubsub_core::Error {
    fn from(error: StreamsError) -> Self {
        TransportError::from(error).into()
    }
}
