//! The rooms: the protobuf message, which names are rooms and users, what a client may
//! send, and the bus that appends to a room's stream and replays it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use pubsub::stream::{EventStream, StartAt};
use pubsub::{Bus, PublishOptions};
use serde_json::{Value, json};

/// One chat message, the seed's `chat.proto`:
///
/// ```protobuf
/// message ChatMessage { string user_id = 1; string content = 2; int64 timestamp = 3; }
/// ```
#[derive(Clone, PartialEq, prost::Message, pubsub::Event)]
#[event(domain = "chat", action = "message", codec = "protobuf")]
pub(crate) struct ChatMessage {
    /// Who sent it: the name the sender joined with.
    #[prost(string, tag = "1")]
    pub user_id: String,
    /// What they wrote, as they wrote it (the page shows it as text, never as HTML).
    #[prost(string, tag = "2")]
    pub content: String,
    /// When the server received it, in milliseconds since 1970 (UTC).
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

impl ChatMessage {
    /// The frame a client gets for it; `history`: it was written before the client joined.
    pub(crate) fn frame(&self, history: bool) -> Value {
        json!({
            "user_id": self.user_id,
            "content": self.content,
            "timestamp": self.timestamp,
            "history": history,
        })
    }
}

/// The longest room name, in characters.
const MAX_ROOM: usize = 40;
/// The longest user name, in characters.
const MAX_NAME: usize = 32;
/// The longest message, in characters.
pub(crate) const MAX_CONTENT: usize = 2000;
/// The longest text frame a client may send, in bytes.
pub(crate) const MAX_FRAME: usize = 8 * 1024;

/// A room name: 1 to [`MAX_ROOM`] of `a-z 0-9 - _` (it names a stream), or why not.
pub(crate) fn room(name: &str) -> Result<&str, String> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
    if name.is_empty() || name.chars().count() > MAX_ROOM || !name.chars().all(allowed) {
        return Err(format!(
            "a room is 1 to {MAX_ROOM} of a-z, 0-9, - and _ (not {name:?})"
        ));
    }
    Ok(name)
}

/// A user name, trimmed: 1 to [`MAX_NAME`] characters, no control characters, or why not.
pub(crate) fn user(name: &str) -> Result<&str, String> {
    let name = name.trim();
    let count = name.chars().count();
    if count == 0 || count > MAX_NAME || name.chars().any(char::is_control) {
        return Err(format!(
            "a name is 1 to {MAX_NAME} characters, without control characters"
        ));
    }
    Ok(name)
}

/// What a client's text frame asks to say: the `content` of `{"content": "..."}`, or the
/// error to answer with. Nothing refused here reaches a stream.
pub(crate) fn content(frame: &str) -> Result<String, String> {
    if frame.len() > MAX_FRAME {
        return Err(format!(
            "a frame of {} bytes: at most {MAX_FRAME}",
            frame.len()
        ));
    }
    let value: Value = serde_json::from_str(frame)
        .map_err(|e| format!("a frame is JSON like {{\"content\": \"hello\"}}: {e}"))?;
    let Some(content) = value.get("content").and_then(Value::as_str) else {
        return Err("a frame is JSON like {\"content\": \"hello\"}: no \"content\" text".into());
    };
    let count = content.chars().count();
    if content.trim().is_empty() {
        return Err("an empty message: write something".into());
    }
    if count > MAX_CONTENT {
        return Err(format!(
            "a message of {count} characters: at most {MAX_CONTENT}"
        ));
    }
    Ok(content.to_owned())
}

/// Now, in milliseconds since 1970.
pub(crate) fn now_millis() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// What the routes share: the bus, the rooms' stream prefix and the counts `/health` shows.
#[derive(Debug)]
pub(crate) struct Chat {
    /// Appends to and replays the rooms' streams.
    pub(crate) bus: Bus,
    prefix: String,
    /// WebSockets open now.
    pub(crate) sockets: AtomicUsize,
    /// Rooms' streams being read now (one per socket that joined).
    pub(crate) readers: AtomicUsize,
}

impl Chat {
    /// Rooms on `bus`, their streams named `{prefix}.room.{room}`.
    pub(crate) fn new(bus: Bus, prefix: &str) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            bus,
            prefix: prefix.trim_end_matches('.').to_owned(),
            sockets: AtomicUsize::new(0),
            readers: AtomicUsize::new(0),
        })
    }

    /// The stream of `room`.
    pub(crate) fn stream(&self, room: &str) -> String {
        format!("{}.room.{room}", self.prefix)
    }

    /// Appends `message` to the stream of `room`.
    pub(crate) async fn say(&self, room: &str, message: &ChatMessage) -> pubsub::Result<()> {
        let to_room = PublishOptions::new().to_stream(self.stream(room));
        self.bus.publish_with(message, to_room).await.map(drop)
    }

    /// Reads the stream of `room` from the oldest message it keeps, then live.
    pub(crate) async fn replay(&self, room: &str) -> pubsub::Result<EventStream<ChatMessage>> {
        self.bus
            .subscribe::<ChatMessage>()
            .stream(self.stream(room))
            .start_at(StartAt::First)
            .await
    }
}

/// One more in a count while it lives (an open socket, a room's reader).
#[derive(Debug)]
pub(crate) struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    /// Adds one to `count`, until dropped.
    pub(crate) fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
