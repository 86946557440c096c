//! The one error type of `pubsub-amqp`.

use std::sync::Arc;
use std::time::Duration;

use pubsub_core::transport::{ConnectFailure, TransportError};

/// What can go wrong in the AMQP transport. Broker addresses in messages never carry the
/// password. Each variant says its own part; lapin's error is its
/// [`source`](std::error::Error::source) (see [`pubsub_core::Report`]).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AmqpError {
    /// The configuration is not usable (a malformed URL, a bad number in the environment).
    #[error("AMQP configuration: {0}")]
    Config(String),
    /// Declaring or binding an exchange or queue failed (a queue declared before with other
    /// arguments, say).
    #[error("topology: {what}")]
    Topology {
        /// What was being declared.
        what: String,
        /// lapin's error.
        #[source]
        source: Arc<lapin::Error>,
    },
    /// Opening or setting up a channel failed.
    #[error("{what}")]
    Channel {
        /// What was being done.
        what: String,
        /// lapin's error.
        #[source]
        source: Arc<lapin::Error>,
    },
    /// The transport cannot do this.
    #[error("the AMQP transport does not support {0}")]
    Unsupported(&'static str),
    /// No connection could be made: refused for a reason retrying does not fix (reported
    /// after the first attempt), or unreachable within the configured attempts. The message
    /// says what to check.
    #[error("{message}")]
    Connect {
        /// Why, by what fixes it.
        failure: ConnectFailure,
        /// What failed and what to check, password hidden.
        message: String,
        /// Attempts made.
        attempts: u32,
        /// Time spent.
        elapsed: Duration,
        /// The last attempt's error.
        #[source]
        source: Arc<lapin::Error>,
    },
}

impl AmqpError {
    pub(crate) fn channel(what: &str, source: lapin::Error) -> Self {
        Self::Channel {
            what: what.to_owned(),
            source: Arc::new(source),
        }
    }

    pub(crate) fn topology(what: String, source: lapin::Error) -> Self {
        Self::Topology {
            what,
            source: Arc::new(source),
        }
    }
}

impl From<AmqpError> for TransportError {
    fn from(error: AmqpError) -> Self {
        match error {
            AmqpError::Config(message) => TransportError::other(message),
            AmqpError::Unsupported(what) => TransportError::Unsupported {
                what,
                transport: "amqp",
            },
            // each level says its own part: lapin's error becomes the source
            AmqpError::Topology { what, source } => TransportError::Topology {
                message: what,
                source: Some(source),
            },
            AmqpError::Channel { what, source } => TransportError::Unavailable {
                message: what,
                source: Some(source),
            },
            AmqpError::Connect {
                failure,
                message,
                source,
                ..
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
impl From<AmqpError> for pubsub_core::Error {
    fn from(error: AmqpError) -> Self {
        TransportError::from(error).into()
    }
}
