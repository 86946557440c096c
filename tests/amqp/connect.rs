//! `pubsub-amqp`'s configuration and connection against the broker under test
//! (`RABBITMQ_URL`; see `support::broker`).

use std::time::Duration;

use pubsub::Report;
use pubsub::amqp::{AmqpConfig, AmqpError, ENV_PASSWORD, ENV_URL, connect};
use pubsub::transport::{ConnectFailure, Peer, identify_peer};

use crate::support::logs::CapturedLogs;
use crate::support::{amqp_config, broker};

#[tokio::test]
async fn connects_to_the_broker_and_opens_a_channel() {
    let Some(config) = amqp_config() else {
        return;
    };
    let connection = connect(&config.connection_attempts(3), "test")
        .await
        .expect("connects");
    assert!(connection.status().connected());
    let channel = connection.create_channel().await.expect("a channel");
    assert!(channel.status().connected());
    connection.close(200, "done".into()).await.expect("closes");
}

#[tokio::test]
async fn a_wrong_password_fails_at_once_says_what_to_check_and_is_never_shown() {
    let Some(url) = broker::amqp_url() else {
        return;
    };
    const PASSWORD: &str = "Wr0ng-pa55word-7f3a";
    let wrong = AmqpConfig::from_lookup(|name| match name {
        ENV_URL => Some(url.clone()),
        ENV_PASSWORD => Some(PASSWORD.to_owned()),
        _ => None,
    })
    .unwrap()
    // were the refusal retried, ten attempts a second apart would take ten seconds
    .connection_attempts(10)
    .backoff(Duration::from_secs(1), Duration::from_secs(1));

    let (logs, capturing) = CapturedLogs::capture();
    let error = connect(&wrong, "test").await.unwrap_err();
    drop(capturing);
    match &error {
        AmqpError::Connect {
            attempts, failure, ..
        } => {
            assert_eq!(*attempts, 1, "a refused login is not retried: {error}");
            assert_eq!(*failure, ConnectFailure::LoginRefused, "{error}");
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
    let text = error.to_string();
    for part in [
        "refused the login of user \"guest\"",
        "RABBITMQ_URL",
        "RABBITMQ_PASSWORD",
    ] {
        assert!(text.contains(part), "{part:?} missing from: {text}");
    }
    let shown = format!("{error} {error:?} {wrong:?} {}", Report::new(&error));
    let logged = logs.text();
    assert!(
        !logged.contains("retrying"),
        "a refused login is not retried: {logged}"
    );
    for (what, text) in [("the error", &shown), ("the logs", &logged)] {
        assert!(!text.contains(PASSWORD), "{what} show the password: {text}");
    }
    let transport: pubsub::transport::TransportError = error.into();
    assert!(!transport.is_transient(), "{transport}");
    assert!(!format!("{transport} {transport:?}").contains(PASSWORD));
}

/// Connects to `url` with ten attempts a second apart, so that a retried failure would
/// take ten seconds: the failure, the error, and what was logged.
async fn connect_failure(url: &str) -> (ConnectFailure, AmqpError, String) {
    let (failure, attempts, error, logged) = failed_connect(url, 10, Duration::from_secs(1)).await;
    assert_eq!(attempts, 1, "{failure:?} is not retried: {error}");
    (failure, error, logged)
}

/// Connects to `url` with `attempts` attempts `backoff` apart, which fails: the failure,
/// the attempts made, the error, and what was logged.
async fn failed_connect(
    url: &str,
    attempts: u32,
    backoff: Duration,
) -> (ConnectFailure, u32, AmqpError, String) {
    let config = AmqpConfig::from_url(url)
        .unwrap()
        .connection_attempts(attempts)
        .backoff(backoff, backoff);
    let (logs, capturing) = CapturedLogs::capture();
    let error = connect(&config, "test").await.unwrap_err();
    drop(capturing);
    let AmqpError::Connect {
        failure, attempts, ..
    } = &error
    else {
        panic!("expected a connect error, got {error:?}");
    };
    (*failure, *attempts, error.clone(), logs.text())
}

#[tokio::test]
async fn an_unknown_virtual_host_fails_at_once_naming_it() {
    let Some(url) = broker::amqp_url() else {
        return;
    };
    let base = url.rsplit_once('/').map_or(url.as_str(), |(base, _)| base);
    let (failure, error, _) = connect_failure(&format!("{base}/no-such-vhost")).await;
    assert_eq!(failure, ConnectFailure::VhostRefused);
    let text = error.to_string();
    assert!(
        text.contains("\"no-such-vhost\"") && text.contains("RABBITMQ_VHOST"),
        "{text}"
    );
}

#[tokio::test]
async fn the_streams_port_given_as_the_amqp_port_is_named_at_once() {
    let (Some(url), Some(streams)) = (broker::amqp_url(), broker::stream_address()) else {
        return;
    };
    let amqp = broker::amqp_address().unwrap();
    let (failure, error, _) = connect_failure(&url.replace(&amqp, &streams)).await;
    assert_eq!(
        failure,
        ConnectFailure::NotTheProtocol {
            found: Peer::RabbitStreams
        }
    );
    let text = error.to_string();
    assert!(
        text.contains("RabbitMQ Streams port") && text.contains("5672"),
        "{text}"
    );
}

#[tokio::test]
async fn amqps_to_the_plain_port_is_a_tls_failure_at_once() {
    let Some(url) = broker::amqp_url() else {
        return;
    };
    let Some(rest) = url.strip_prefix("amqp://") else {
        return; // the broker under test is reached over TLS already
    };
    let (failure, error, _) = connect_failure(&format!("amqps://{rest}")).await;
    assert_eq!(failure, ConnectFailure::Tls);
    assert!(error.to_string().contains("use amqp://"), "{error}");
}

#[tokio::test]
async fn a_closed_port_is_retried_one_warning_per_attempt_then_says_what_to_check() {
    let Some(url) = broker::amqp_url() else {
        return;
    };
    let amqp = broker::amqp_address().unwrap();
    let closed = closed_port();
    let closed_url = url.replace(&amqp, &format!("127.0.0.1:{closed}"));
    let (failure, attempts, error, logged) =
        failed_connect(&closed_url, 3, Duration::from_millis(10)).await;
    assert_eq!((failure, attempts), (ConnectFailure::Unreachable, 3));
    let text = error.to_string();
    assert!(
        text.contains("is the broker running there?") && text.contains("RABBITMQ_URL"),
        "{text}"
    );
    let warnings = logged
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("cannot reach RabbitMQ yet; retrying"))
        .count();
    assert_eq!(
        warnings, 2,
        "one warning per failed attempt but the last: {logged}"
    );
    assert!(
        !logged.lines().any(|l| l.contains("ERROR")),
        "no client error lines: {logged}"
    );
    let transport: pubsub::transport::TransportError = error.into();
    assert!(transport.is_transient(), "{transport}");
}

#[tokio::test]
async fn the_probe_tells_the_brokers_ports_apart() {
    let (Some(amqp), Some(streams)) = (broker::amqp_address(), broker::stream_address()) else {
        return;
    };
    let split = |address: &str| {
        let (host, port) = address.rsplit_once(':').unwrap();
        (host.to_owned(), port.parse::<u16>().unwrap())
    };
    let (host, port) = split(&amqp);
    assert_eq!(identify_peer(&host, port).await, Peer::Amqp);
    let (host, port) = split(&streams);
    assert_eq!(identify_peer(&host, port).await, Peer::RabbitStreams);
    if let Ok(management) = std::env::var("RABBITMQ_MANAGEMENT_URL") {
        let authority = management
            .split("://")
            .nth(1)
            .unwrap_or("")
            .trim_end_matches('/');
        let (host, port) = split(authority);
        assert_eq!(identify_peer(&host, port).await, Peer::Http);
    }
    assert_eq!(
        identify_peer("127.0.0.1", closed_port()).await,
        Peer::Unreachable
    );
}

/// A local port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
