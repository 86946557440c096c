//! What a transport reports when it cannot do what was asked.

use std::time::Duration;

use super::connect::ConnectFailure;

/// The source error a transport keeps (lapin's, the stream client's), shared so that the
/// error stays `Clone`.
pub type BoxedSource = std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>;

/// A transport could not do what was asked. Transports wrap their client's errors into
/// this type (keeping them as [`source`](std::error::Error::source)) so that no broker
/// type leaks into the core.
///
/// ```
/// use pubsub::transport::TransportError;
/// let error = TransportError::unavailable("connection reset");
/// assert!(error.is_transient());
/// assert!(!TransportError::Closed.is_transient());
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// No connection to the broker could be made: `failure` says why, and the message what
    /// to check (the variable, the port). Only an unreachable broker is retried (with the
    /// transport's backoff); the other failures are reported at once.
    #[error("{message}")]
    Connect {
        /// Why, by what fixes it.
        failure: ConnectFailure,
        /// What happened and what to check; never the password.
        message: String,
        /// The client's error.
        #[source]
        source: Option<BoxedSource>,
    },
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
        match self {
            Self::Connect { failure, .. } => failure.is_transient(),
            Self::Unavailable { .. } | Self::Blocked { .. } | Self::TimedOut { .. } => true,
            _ => false,
        }
    }
}
