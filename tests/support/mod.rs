//! What the test binaries share, included by each with
//! `#[path = "../support/mod.rs"] mod support;`:
//!
//! - [`broker`]: whether a broker is configured — the one place that reads `RABBITMQ_URL`,
//!   `RABBITMQ_STREAM_HOST`/`RABBITMQ_STREAM_PORT` and `PUBSUB_RABBITMQCTL`; a test without
//!   them is skipped with a message, or fails when `PUBSUB_REQUIRE_BROKER` is set — and
//!   `rabbitmqctl` with the broker's state restored when a test ends;
//! - [`amqp_config`] and [`stream_config`]: the transports' configuration from there;
//! - [`namespace`]: names no other test or run uses;
//! - [`logs`]: what a piece of code logs;
//! - [`example`]: an example of this package run as a child process; [`web`]: its
//!   WebSocket and HTTP clients;
//! - [`proxy`]: a TCP proxy to the broker that a test cuts, closes or black-holes;
//! - [`counted`]: a counted run (every event published, confirmed, handled, duplicated);
//! - [`one_at_a_time`]: turns for the tests that change the broker's state or load it
//!   heavily;
//! - [`assert_skipped`]: which conformance cases a run on a broker skipped.
// each binary uses a part
#![allow(dead_code)]

pub(crate) mod broker;
pub(crate) mod counted;
pub(crate) mod example;
pub(crate) mod logs;
pub(crate) mod proxy;
pub(crate) mod web;

/// `{prefix}-` and 12 random hex digits: a name (of a service, exchange, stream) no other
/// test or run uses. `scripts/test.sh` removes what runs left behind by prefix (`conf`,
/// `interop`, `faults-`, `bench`).
pub(crate) fn namespace(prefix: &str) -> String {
    let id = pubsub::Uuid::now_v7().simple().to_string();
    format!("{prefix}-{}", &id[20..])
}

/// Tests that change the broker's global state, or load it heavily, run one at a time
/// within a binary: each holds the guard for as long as it runs.
pub(crate) async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static ONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    ONE.lock().await
}

/// Prints how a [`run_all`](pubsub::testing::conformance::run_all) on `transport` went and
/// asserts that it skipped exactly `expected`, in the order of the cases.
pub(crate) fn assert_skipped(
    transport: &str,
    ran: &[(&str, pubsub::testing::conformance::Ran)],
    expected: &[&str],
) {
    use pubsub::testing::conformance::Ran;
    let skipped: Vec<&str> = ran
        .iter()
        .filter(|(_, r)| !matches!(r, Ran::Passed))
        .map(|(name, _)| *name)
        .collect();
    eprintln!(
        "conformance on {transport}: {} of {} cases passed; skipped {skipped:?}",
        ran.len() - skipped.len(),
        ran.len()
    );
    assert_eq!(skipped, expected, "{ran:?}");
}

/// The AMQP broker's configuration (`RABBITMQ_URL`), or `None`: skipped (see [`broker`]).
#[cfg(feature = "amqp")]
pub(crate) fn amqp_config() -> Option<pubsub::amqp::AmqpConfig> {
    broker::amqp_url()?;
    Some(pubsub::amqp::AmqpConfig::from_env().expect("the broker's configuration"))
}

/// The stream broker's configuration (`RABBITMQ_STREAM_HOST`/`RABBITMQ_STREAM_PORT`), or
/// `None`: skipped (see [`broker`]).
#[cfg(feature = "streams")]
pub(crate) fn stream_config() -> Option<pubsub::streams::StreamConfig> {
    broker::stream_address()?;
    Some(pubsub::streams::StreamConfig::from_env().expect("the broker's configuration"))
}

/// A plain rabbitmq-stream-client environment on the broker of `config`: another client,
/// as a program not using this framework would be.
#[cfg(feature = "streams")]
pub(crate) async fn raw_stream_environment(
    config: &pubsub::streams::StreamConfig,
) -> rabbitmq_stream_client::Environment {
    rabbitmq_stream_client::Environment::builder()
        .host(&config.host)
        .port(config.port)
        .build()
        .await
        .expect("a raw environment")
}
