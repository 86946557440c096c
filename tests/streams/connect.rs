//! Connecting to RabbitMQ Streams: each kind of failure is told apart, reported with what
//! to check, and only an unreachable broker is retried, as on AMQP.

use std::time::Duration;

use pubsub::streams::{StreamConfig, StreamTransport, StreamsError};
use pubsub::transport::{ConnectFailure, Peer};

use crate::support::logs::CapturedLogs;
use crate::support::{broker, stream_config};

/// The first connection of a transport made from `config` (reading a stored offset
/// needs one), with ten attempts a second apart, so that a retried failure would take
/// ten seconds: the failure, the error, and what was logged.
async fn connect_failure(config: StreamConfig, attempts: u32) -> (StreamsError, String) {
    let config = config
        .connection_attempts(attempts)
        .backoff(Duration::from_millis(10), Duration::from_millis(10));
    let transport = StreamTransport::new(config);
    let (logs, capturing) = CapturedLogs::capture();
    let error = transport
        .stored_offset("conf-connect", "conf-connect")
        .await
        .unwrap_err();
    drop(capturing);
    (error, logs.text())
}

fn failure_of(error: &StreamsError) -> ConnectFailure {
    match error {
        StreamsError::Connect { failure, .. } => *failure,
        other => panic!("expected a connect error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_wrong_password_fails_at_the_first_attempt_saying_what_to_check() {
    let Some(config) = stream_config() else {
        return;
    };
    const PASSWORD: &str = "Wr0ng-pa55word-5e1b";
    let (error, logged) = connect_failure(config.password(PASSWORD), 10).await;
    assert_eq!(failure_of(&error), ConnectFailure::LoginRefused);
    let text = error.to_string();
    assert!(
        text.contains("refused the login") && text.contains("RABBITMQ_PASSWORD"),
        "{text}"
    );
    assert!(!logged.contains("retrying"), "not retried: {logged}");
    let shown = format!("{error} {error:?} {} {logged}", pubsub::Report::new(&error));
    assert!(!shown.contains(PASSWORD), "the password is shown: {shown}");
}

#[tokio::test]
async fn an_unknown_virtual_host_fails_at_the_first_attempt() {
    let Some(mut config) = stream_config() else {
        return;
    };
    config.vhost = "no-such-vhost".into();
    let (error, logged) = connect_failure(config, 10).await;
    assert_eq!(failure_of(&error), ConnectFailure::VhostRefused);
    assert!(error.to_string().contains("RABBITMQ_VHOST"), "{error}");
    assert!(!logged.contains("retrying"), "not retried: {logged}");
}

#[tokio::test]
async fn the_amqp_port_given_as_the_stream_port_is_named_at_once() {
    let (Some(mut config), Some(amqp)) = (stream_config(), broker::amqp_address()) else {
        return;
    };
    config.port = amqp.rsplit_once(':').unwrap().1.parse().unwrap();
    let (error, logged) = connect_failure(config, 10).await;
    assert_eq!(
        failure_of(&error),
        ConnectFailure::NotTheProtocol { found: Peer::Amqp }
    );
    let text = error.to_string();
    assert!(
        text.contains("an AMQP 0-9-1 port") && text.contains("RABBITMQ_STREAM_PORT"),
        "{text}"
    );
    assert!(!logged.contains("retrying"), "not retried: {logged}");
}

#[tokio::test]
async fn a_closed_port_is_retried_one_warning_per_attempt_as_on_amqp() {
    let Some(mut config) = stream_config() else {
        return;
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    config.host = "127.0.0.1".into();
    config.port = listener.local_addr().unwrap().port();
    drop(listener);
    let (error, logged) = connect_failure(config, 3).await;
    assert_eq!(failure_of(&error), ConnectFailure::Unreachable);
    let text = error.to_string();
    assert!(
        text.contains("3 attempt(s)") && text.contains("RABBITMQ_STREAM_PORT"),
        "{text}"
    );
    let warnings = logged
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("cannot reach RabbitMQ Streams yet"))
        .count();
    assert_eq!(warnings, 2, "one per failed attempt but the last: {logged}");
    let transport: pubsub::transport::TransportError = error.into();
    assert!(transport.is_transient(), "{transport}");
}
