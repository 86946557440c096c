//! The chat example over RabbitMQ Streams, its rooms' streams under a prefix of the test's
//! own (`interop-chat-…`: `scripts/test.sh` removes what a failed run leaves), deleted at
//! the end.

use crate::support::example::Example;
use crate::support::{self, namespace};
use crate::{edge, pages};

/// The rooms the tests use.
const ROOMS: [&str; 4] = ["r1", "r2", "edge", "kept"];

/// A prefix of this test's, or `None`: no broker, skipped.
fn prefix() -> Option<String> {
    support::stream_config()?;
    Some(namespace("interop-chat"))
}

/// Deletes the rooms' streams under `prefix`.
async fn delete_rooms(prefix: &str) {
    let config = support::stream_config().expect("the broker's configuration");
    let transport = pubsub::streams::StreamTransport::new(config);
    for room in ROOMS {
        let stream = format!("{prefix}.room.{room}");
        transport
            .delete_stream(&stream)
            .await
            .unwrap_or_else(|e| panic!("deleting {stream}: {e}"));
    }
    let _ = pubsub::transport::Transport::close(&transport).await;
}

/// Starts the chat on RabbitMQ Streams with `prefix`.
async fn chat(prefix: &str) -> (Example, String) {
    Example::listening("chat", "streams", &["--prefix", prefix], &[]).await
}

#[tokio::test]
async fn two_rooms_and_a_late_joiner_in_the_browser_over_rabbitmq_streams() {
    let Some(prefix) = prefix() else { return };
    let (chat, address) = chat(&prefix).await;
    pages::two_rooms_and_a_late_joiner(&address, "streams").await;
    drop(chat);
    delete_rooms(&prefix).await;
}

#[tokio::test]
async fn bad_frames_get_an_error_frame_and_reach_no_stream_over_rabbitmq_streams() {
    let Some(prefix) = prefix() else { return };
    let (chat, address) = chat(&prefix).await;
    edge::bad_frames(&address, "edge").await;
    edge::bad_names(&address).await;
    drop(chat);
    delete_rooms(&prefix).await;
}

#[tokio::test]
async fn a_restart_of_the_server_loses_no_history() {
    let Some(prefix) = prefix() else { return };
    let (chat_before, address) = chat(&prefix).await;
    let mut ada = edge::join(&address, "kept", "ada").await;
    for text in ["before the restart", "and this too"] {
        edge::say(&mut ada, text).await;
        edge::expect_message(&mut ada, "ada", text, false).await;
    }
    chat_before.kill(); // SIGKILL: nothing is flushed on the way out
    let (_chat_after, address) = chat(&prefix).await;
    let mut bob = edge::join(&address, "kept", "bob").await;
    for text in ["before the restart", "and this too"] {
        edge::expect_message(&mut bob, "ada", text, true).await;
    }
    edge::say(&mut bob, "after it").await;
    edge::expect_message(&mut bob, "bob", "after it", false).await;
    bob.close().await;
    delete_rooms(&prefix).await;
}
