//! Bad input at the edge, over a WebSocket of the test's own: each bad frame gets an error
//! frame, the socket stays usable, and nothing bad reaches the room's stream.

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::support::web::Socket;

/// Joins `room` as `name`: the socket, past its `joined` frame.
pub(crate) async fn join(address: &str, room: &str, name: &str) -> Socket {
    let mut socket = Socket::connect(&format!("ws://{address}/ws/{room}/{name}")).await;
    assert_eq!(
        socket.next().await,
        json!({ "joined": room, "user_id": name })
    );
    socket
}

/// Sends `content` as a person's message would be.
pub(crate) async fn say(socket: &mut Socket, content: &str) {
    socket
        .send(&json!({ "content": content }).to_string())
        .await;
}

/// The next frame, which must be a message of `who` saying `content`, `history` or not.
pub(crate) async fn expect_message(socket: &mut Socket, who: &str, content: &str, history: bool) {
    let frame = socket.next().await;
    let got = (&frame["user_id"], &frame["content"], &frame["history"]);
    assert_eq!(
        got,
        (&json!(who), &json!(content), &json!(history)),
        "{frame}"
    );
    assert!(
        frame["timestamp"].as_i64().is_some_and(|t| t > 0),
        "{frame}"
    );
}

/// Each bad frame on a socket in `room` gets an error frame saying what was wrong; then
/// the socket sends a message that comes back, and a late joiner finds only that one in
/// the room's history.
pub(crate) async fn bad_frames(address: &str, room: &str) {
    let mut eve = join(address, room, "eve").await;
    let text = |value: Value| Frame::text(value.to_string());
    let bad = [
        (
            Frame::text("hello"),
            "a frame is JSON like {\"content\": \"hello\"}",
        ),
        (text(json!({ "content": 5 })), "no \"content\" text"),
        (text(json!([1, 2])), "no \"content\" text"),
        (Frame::binary(vec![0xff, 0, 1]), "a binary frame"),
        (
            text(json!({ "content": "x".repeat(100_000) })),
            "bytes: at most 8192",
        ),
        (
            text(json!({ "content": "é".repeat(2001) })),
            "a message of 2001 characters: at most 2000",
        ),
        (text(json!({ "content": " \n " })), "an empty message"),
    ];
    for (frame, says) in bad {
        let what = format!("{frame:?}").chars().take(60).collect::<String>();
        eve.send_frame(frame).await;
        let answer = eve.next().await;
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(says),
            "{what}: expected an error saying {says:?}, got {answer}"
        );
    }
    // still usable
    say(&mut eve, "<b>still</b> here").await;
    expect_message(&mut eve, "eve", "<b>still</b> here", false).await;
    // the stream holds that one message: a late joiner gets it, then its own
    let mut lou = join(address, room, "lou").await;
    expect_message(&mut lou, "eve", "<b>still</b> here", true).await;
    say(&mut lou, "only this after").await;
    expect_message(&mut lou, "lou", "only this after", false).await;
    expect_message(&mut eve, "lou", "only this after", false).await;
    eve.close().await;
    lou.close().await;
}

/// A room or a name that is no such thing gets an error frame and a close.
pub(crate) async fn bad_names(address: &str) {
    let long = format!("{}/eve", "r".repeat(41));
    for (path, says) in [
        ("Room%20One/eve", "a room is 1 to 40 of a-z, 0-9, - and _"),
        (long.as_str(), "a room is 1 to 40"),
        ("r1/%20%20", "a name is 1 to 32 characters"),
        ("r1/a%07b", "without control characters"),
    ] {
        let mut socket = Socket::connect(&format!("ws://{address}/ws/{path}")).await;
        let answer = socket.next().await;
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(says),
            "/ws/{path}: expected {says:?}, got {answer}"
        );
    }
}
