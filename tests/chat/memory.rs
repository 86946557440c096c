//! The chat example on the in-memory broker's streams (no broker).

use crate::support::example::Example;
use crate::{edge, pages};

#[tokio::test]
async fn two_rooms_and_a_late_joiner_in_the_browser() {
    let (_chat, address) = Example::listening("chat", "memory", &[], &[]).await;
    pages::two_rooms_and_a_late_joiner(&address, "memory").await;
}

#[tokio::test]
async fn bad_frames_get_an_error_frame_and_reach_no_stream() {
    let (_chat, address) = Example::listening("chat", "memory", &[], &[]).await;
    edge::bad_frames(&address, "edge").await;
    edge::bad_names(&address).await;
}

#[tokio::test]
async fn amqp_is_refused_saying_why() {
    let (status, output) = Example::spawn("chat", "amqp", &[], &[]).finish();
    assert!(!status.success(), "the chat ran on amqp: {output}");
    assert!(
        output.contains("expected `memory` or `streams`"),
        "{output}"
    );
}
