//! The one error type of `pubsub-amqp`.

use std::sync::Arc;
use std::time::Duration;

use pubsub_core::transport::TransportError;

/// What can go wrong in the AMQP transport. Broker addresses in messages never carry the
/// password.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AmqpError {
    /// The configuration is not usable (a malformed URL, a bad number in the environment).
    #[error("AMQP configuration: {0}")]
    Config(String),
    /// Declaring or binding an exchange or queue failed (a queue declared before with other
    /// arguments, say).
    #[error("topology: {what}: {source}")]
    Topology {
        /// What was being declared.
        what: String,
        /// lapin's error.
        #[source]
        source: Arc<lapin::Error>,
    },
    /// Opening or setting up a channel failed.
    #[error("{what}: {source}")]
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
    /// No connection could be made within the configured attempts.
    #[error("could not connect to {url} after {attempts} attempt(s) over {elapsed:?}: {source}")]
    Connect {
        /// The broker, password hidden.
        url: String,
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
            topology @ AmqpError::Topology { .. } => TransportError::Topology {
                message: topology.to_string(),
                source: Some(Arc::new(topology)),
            },
            connect @ (AmqpError::Connect { .. } | AmqpError::Channel { .. }) => {
                TransportError::Unavailable {
                    message: connect.to_string(),
                    source: Some(Arc::new(connect)),
                }
            }
        }
    }
}
