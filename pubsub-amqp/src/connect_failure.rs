//! Sorting lapin's connect errors into a [`ConnectFailure`], and saying what to check.

use std::io::ErrorKind as IoKind;

use lapin::ErrorKind;
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::uri::AMQPScheme;
use pubsub_core::transport::{ConnectFailure, Peer};

use crate::config::{AmqpConfig, ENV_PASSWORD, ENV_PORT, ENV_URL, ENV_USERNAME, ENV_VHOST};

/// Why `error`, from one connection attempt, happened. A handshake the peer broke off is
/// looked into with [`ConnectFailure::of_broken_handshake`]: a RabbitMQ Streams or HTTP port given as the AMQP
/// port is not transient, an AMQP broker that closed on us (shutting down) is.
pub(crate) async fn classify(config: &AmqpConfig, error: &lapin::Error) -> ConnectFailure {
    let tls = config.uri().scheme == AMQPScheme::AMQPS;
    match error.kind() {
        ErrorKind::ProtocolError(e) => match e.kind() {
            AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED) => ConnectFailure::LoginRefused,
            AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED)
                if e.get_message().as_str().contains("vhost") =>
            {
                ConnectFailure::VhostRefused
            }
            _ => ConnectFailure::Unreachable,
        },
        ErrorKind::AuthProviderError(_) => ConnectFailure::LoginRefused,
        ErrorKind::IOError(io) if tls && io.kind() == IoKind::InvalidData => ConnectFailure::Tls,
        ErrorKind::IOError(io)
            if matches!(
                io.kind(),
                IoKind::ConnectionAborted | IoKind::UnexpectedEof | IoKind::ConnectionReset
            ) =>
        {
            broken_handshake(config).await
        }
        ErrorKind::ParsingError(_) | ErrorKind::InvalidProtocolVersion(_) => {
            broken_handshake(config).await
        }
        _ => ConnectFailure::Unreachable,
    }
}

/// The peer broke the handshake off: what is it?
async fn broken_handshake(config: &AmqpConfig) -> ConnectFailure {
    let authority = &config.uri().authority;
    ConnectFailure::of_broken_handshake(&authority.host, authority.port, Peer::Amqp).await
}

/// What the user reads: what failed, and what to check.
pub(crate) fn describe(
    config: &AmqpConfig,
    failure: ConnectFailure,
    attempts: u32,
    elapsed: std::time::Duration,
) -> String {
    let url = config.url();
    let uri = config.uri();
    let (host, port) = (&uri.authority.host, uri.authority.port);
    let user = &uri.authority.userinfo.username;
    match failure {
        ConnectFailure::LoginRefused => format!(
            "RabbitMQ at {url} refused the login of user {user:?}: check the user name and \
             password ({ENV_URL}, or {ENV_USERNAME} and {ENV_PASSWORD})"
        ),
        ConnectFailure::VhostRefused => format!(
            "RabbitMQ at {url} refused virtual host {:?} to user {user:?} (it does not exist, or \
             the user has no permission on it): check the URL's path (%2f is \"/\") or {ENV_VHOST}",
            uri.vhost
        ),
        ConnectFailure::NotTheProtocol { found: Peer::Tls } => format!(
            "{host}:{port} expects TLS: use amqps:// for it in {ENV_URL}, or the broker's plain \
             AMQP port (5672 by default)"
        ),
        ConnectFailure::NotTheProtocol { found } => format!(
            "{host}:{port} is {found}, not an AMQP 0-9-1 port: check the port in {ENV_URL} (or \
             {ENV_PORT}); AMQP is 5672 by default, 5671 with TLS"
        ),
        ConnectFailure::Tls => format!(
            "the TLS handshake with {host}:{port} failed: if that port speaks plain AMQP, use \
             amqp:// (or the broker's TLS port, 5671 by default); otherwise check that the \
             system trusts the broker's certificate"
        ),
        _ => format!(
            "could not reach RabbitMQ at {url} ({attempts} attempt(s) over {elapsed:.1?}): is the \
             broker running there? check {ENV_URL} (or RABBITMQ_HOST and {ENV_PORT})"
        ),
    }
}
