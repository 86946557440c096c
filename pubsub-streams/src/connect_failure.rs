//! Sorting the stream client's connect errors into a [`ConnectFailure`], and saying what
//! to check.

use std::io::ErrorKind as IoKind;
use std::time::Duration;

use pubsub_core::transport::{ConnectFailure, Peer};
use rabbitmq_stream_client::error::ClientError;
use rabbitmq_stream_client::types::ResponseCode;

use crate::config::{
    ENV_PASSWORD, ENV_STREAM_HOST, ENV_STREAM_PORT, ENV_USERNAME, ENV_VHOST, StreamConfig,
};

/// Why `error`, from one connection attempt, happened. A handshake the peer broke off is
/// looked into with [`ConnectFailure::of_broken_handshake`]: an AMQP or HTTP port given as the stream port is
/// not transient, a stream server that closed on us (shutting down) is.
pub(crate) async fn classify(config: &StreamConfig, error: &ClientError) -> ConnectFailure {
    match error {
        ClientError::RequestError(
            ResponseCode::AuthenticationFailure
            | ResponseCode::AuthenticationFailureLoopback
            | ResponseCode::SaslError
            | ResponseCode::SaslMechanismNotSupported,
        ) => ConnectFailure::LoginRefused,
        ClientError::RequestError(ResponseCode::VirtualHostAccessFailure) => {
            ConnectFailure::VhostRefused
        }
        ClientError::Tls(_) => ConnectFailure::Tls,
        ClientError::ConnectionClosed | ClientError::AlreadyClosed | ClientError::Protocol(_) => {
            broken_handshake(config).await
        }
        ClientError::Io(io)
            if matches!(
                io.kind(),
                IoKind::ConnectionAborted | IoKind::UnexpectedEof | IoKind::ConnectionReset
            ) =>
        {
            broken_handshake(config).await
        }
        _ => ConnectFailure::Unreachable,
    }
}

/// The peer broke the handshake off: what is it?
async fn broken_handshake(config: &StreamConfig) -> ConnectFailure {
    ConnectFailure::of_broken_handshake(&config.host, config.port, Peer::RabbitStreams).await
}

/// What the user reads: what failed, and what to check.
pub(crate) fn describe(
    config: &StreamConfig,
    failure: ConnectFailure,
    attempts: u32,
    elapsed: Duration,
) -> String {
    let address = config.address();
    let (host, port, user) = (&config.host, config.port, &config.username);
    match failure {
        ConnectFailure::LoginRefused => format!(
            "RabbitMQ at {address} refused the login of user {user:?}: check the user name and \
             password ({ENV_USERNAME} and {ENV_PASSWORD})"
        ),
        ConnectFailure::VhostRefused => format!(
            "RabbitMQ at {address} refused virtual host {:?} to user {user:?} (it does not \
             exist, or the user has no permission on it): check {ENV_VHOST}",
            config.vhost
        ),
        ConnectFailure::NotTheProtocol { found } => format!(
            "{host}:{port} is {found}, not a RabbitMQ Streams port: check {ENV_STREAM_PORT}; \
             the stream port is 5552 by default (the rabbitmq_stream plugin must be enabled)"
        ),
        ConnectFailure::Tls => {
            format!("the TLS handshake with {host}:{port} failed: check the broker's certificate")
        }
        _ => format!(
            "could not reach RabbitMQ Streams at {address} ({attempts} attempt(s) over \
             {elapsed:.1?}): is the broker running there, with the rabbitmq_stream plugin? check \
             {ENV_STREAM_HOST} and {ENV_STREAM_PORT}"
        ),
    }
}
