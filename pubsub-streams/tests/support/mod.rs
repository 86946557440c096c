//! Shared by the broker tests: the broker's configuration (skipping without one, unless
//! `PUBSUB_REQUIRE_BROKER` is set), unique stream names, and clean-up.
#![allow(dead_code, unreachable_pub)]

use pubsub_streams::{StreamConfig, StreamTransport};

/// The broker from the environment, or `None` (the test is skipped) when no stream port
/// is configured.
pub fn broker() -> Option<StreamConfig> {
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

/// A name no other test (or run) uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

/// Deletes `streams`.
pub async fn delete(transport: &StreamTransport, streams: &[&str]) {
    for stream in streams {
        transport
            .delete_stream(stream)
            .await
            .unwrap_or_else(|e| panic!("deleting {stream}: {e}"));
    }
}
