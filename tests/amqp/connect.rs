//! `pubsub-amqp`'s configuration and connection against the broker under test
//! (`RABBITMQ_URL`; see `support::broker`).

use std::time::Duration;

use pubsub::amqp::{AmqpConfig, AmqpError, ENV_PASSWORD, ENV_URL, connect};

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
async fn a_wrong_password_fails_after_the_attempts_and_is_never_shown() {
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
    .connection_attempts(2)
    .backoff(Duration::from_millis(10), Duration::from_millis(20));

    let (logs, capturing) = CapturedLogs::capture();
    let error = connect(&wrong, "test").await.unwrap_err();
    drop(capturing);
    match &error {
        AmqpError::Connect { attempts, .. } => assert_eq!(*attempts, 2, "{error}"),
        other => panic!("expected a connect error, got {other:?}"),
    }
    let mut shown = format!("{error} {error:?} {wrong:?}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        shown.push_str(&format!(" {cause} {cause:?}"));
        source = cause.source();
    }
    let logged = logs.text();
    assert!(
        logged.contains("connecting to RabbitMQ failed; retrying"),
        "the failed attempt is logged: {logged}"
    );
    for (what, text) in [("the error", &shown), ("the logs", &logged)] {
        assert!(!text.contains(PASSWORD), "{what} show the password: {text}");
    }
    let transport: pubsub::transport::TransportError = error.into();
    assert!(transport.is_transient(), "{transport}");
    assert!(!format!("{transport} {transport:?}").contains(PASSWORD));
}
