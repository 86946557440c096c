//! The gateway's clients: its WebSocket (`/ws`), its server-sent-events stream and
//! `/health` (see `support::web`).

use serde_json::{Value, json};

use crate::support::web::get;
pub(crate) use crate::support::web::{Socket, health, health_until};

impl Socket {
    /// Connects to `ws://{address}/ws`.
    pub(crate) async fn open(address: &str) -> Self {
        Self::connect(&format!("ws://{address}/ws")).await
    }

    /// Sends `text` and returns the next frame, which must be its answer.
    pub(crate) async fn ask(&mut self, text: &str) -> Value {
        self.send(text).await;
        self.next().await
    }
}

/// The answer the processor gives to `text`.
pub(crate) fn reply_to(text: &str) -> Value {
    json!({ "request": text, "reply": format!("{text} world") })
}

/// `GET /stream/{text}`: the events of the stream, `(event, data as JSON)`, once it ended.
pub(crate) async fn events(address: &str, text: &str) -> Vec<(String, Value)> {
    let (status, headers, body) = get(address, &format!("/stream/{text}")).await;
    assert_eq!(status, 200, "GET /stream/{text}: {body}");
    assert!(
        headers.contains("content-type: text/event-stream"),
        "GET /stream/{text}: {headers}"
    );
    let mut events = Vec::new();
    // events are separated by a blank line; keep-alive comments start with ':'
    for block in body.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let field = |name: &str| {
            block
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .map(str::to_owned)
        };
        if block.lines().all(|line| line.starts_with(':')) {
            continue;
        }
        let event =
            field("event: ").unwrap_or_else(|| panic!("an event without a name: {block:?}"));
        let data = field("data: ").unwrap_or_else(|| panic!("an event without data: {block:?}"));
        let data = serde_json::from_str(&data).unwrap_or_else(|e| panic!("{data:?}: {e}"));
        events.push((event, data));
    }
    events
}

/// The counts of a `/health` body: `(active_websockets, pending_requests)`.
pub(crate) fn counts(health: &Value) -> (u64, u64) {
    let count = |name: &str| {
        health[name]
            .as_u64()
            .unwrap_or_else(|| panic!("/health without {name}: {health}"))
    };
    (count("active_websockets"), count("pending_requests"))
}
