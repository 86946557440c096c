//! Shared by the RabbitMQ Streams tests of the facade: the broker's configuration, or a
//! skip when there is none (a failure if `PUBSUB_REQUIRE_BROKER` is set).

use pubsub::streams::StreamConfig;

/// The broker from the environment (`scripts/broker.sh env`), or `None`: skipped.
pub(crate) fn broker() -> Option<StreamConfig> {
    if std::env::var_os("RABBITMQ_STREAM_PORT").is_none() {
        assert!(
            std::env::var_os("PUBSUB_REQUIRE_BROKER").is_none(),
            "PUBSUB_REQUIRE_BROKER is set but RABBITMQ_STREAM_PORT is not"
        );
        eprintln!("skipped: no RABBITMQ_STREAM_PORT");
        return None;
    }
    Some(StreamConfig::from_env().expect("the broker's configuration"))
}
