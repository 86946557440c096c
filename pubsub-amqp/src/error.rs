//! The one error type of `pubsub-amqp`.

use std::sync::Arc;
use std::time::Duration;

use pubsub_core::TransportError;

/// What can go wrong in the AMQP transport. Broker addresses in messages never carry the
/// password.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AmqpError {
    /// The configuration is not usable (a malformed URL, a bad number in the environment).
    #[error("AMQP configuration: {0}")]
    Config(String),
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

impl From<AmqpError> for TransportError {
    fn from(error: AmqpError) -> Self {
        match error {
            AmqpError::Config(message) => TransportError::other(message),
            connect @ AmqpError::Connect { .. } => TransportError::Unavailable {
                message: connect.to_string(),
                source: Some(Arc::new(connect)),
            },
        }
    }
}
