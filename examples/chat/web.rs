//! The chat's HTTP side: the page, the WebSocket of a room and `/health`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::ws::{CloseFrame, Message as Frame, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::{SinkExt, StreamExt};
use pubsub::stream::EventStream;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::rooms::{self, Chat, ChatMessage, Counted};

/// The longest WebSocket message at all: a longer one closes the socket (code 1009).
const MAX_MESSAGE: usize = 1 << 20;
/// Frames waiting for a slow client; past them its room's reader waits.
const OUTBOX: usize = 256;

/// The page: plain HTML and JavaScript, no build step.
const PAGE: &str = include_str!("page.html");

/// The routes.
pub(crate) fn router(chat: Arc<Chat>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/ws/{room}/{name}", get(websocket))
        .route("/health", get(health))
        .with_state(chat)
}

async fn websocket(
    upgrade: WebSocketUpgrade,
    Path((room, name)): Path<(String, String)>,
    State(chat): State<Arc<Chat>>,
) -> Response {
    upgrade
        .max_message_size(MAX_MESSAGE)
        .on_upgrade(move |socket| serve_socket(socket, chat, room, name))
}

/// Joins `room` as `name`, or says why not and closes. Then reads the client's frames
/// until it goes, appending each message to the room's stream, while a task of its own
/// replays the room to the client.
async fn serve_socket(socket: WebSocket, chat: Arc<Chat>, room: String, name: String) {
    let _open = Counted::new(&chat.sockets);
    let (mut sink, mut frames) = socket.split();
    let joined = match (rooms::room(&room), rooms::user(&name)) {
        (Ok(room), Ok(name)) => match chat.replay(room).await {
            Ok(reader) => Ok((reader, room.to_owned(), name.to_owned())),
            Err(error) => Err(format!(
                "cannot read the room {room}: {}",
                pubsub::Report::new(&error)
            )),
        },
        (Err(why), _) | (_, Err(why)) => Err(why),
    };
    let (reader, room, name) = match joined {
        Ok(joined) => joined,
        Err(why) => {
            let _ = sink.send(text(&json!({ "error": why }))).await;
            let close = CloseFrame {
                code: close_code::POLICY,
                reason: "cannot join".into(),
            };
            let _ = sink.send(Frame::Close(Some(close))).await;
            return;
        }
    };
    let (outbox, mut frames_out) = mpsc::channel::<Value>(OUTBOX);
    let _ = outbox
        .send(json!({ "joined": room, "user_id": name }))
        .await;
    let writer = tokio::spawn(async move {
        while let Some(frame) = frames_out.recv().await {
            if sink.send(text(&frame)).await.is_err() {
                break; // the client is gone
            }
        }
    });
    let replay = tokio::spawn(read_room(
        Arc::clone(&chat),
        reader,
        rooms::now_millis(),
        outbox.clone(),
    ));
    // a frame that is no valid WebSocket frame (a text that is no UTF-8, say) fails the
    // connection, as RFC 6455 says; anything else gets an answer
    while let Some(Ok(frame)) = frames.next().await {
        let refusal = match frame {
            Frame::Text(frame) => match rooms::content(frame.as_str()) {
                Ok(content) => {
                    let message = ChatMessage {
                        user_id: name.clone(),
                        content,
                        timestamp: rooms::now_millis(),
                    };
                    match chat.say(&room, &message).await {
                        Ok(()) => continue, // it comes back through the room's stream
                        Err(error) => {
                            format!("the message was not sent: {}", pubsub::Report::new(&error))
                        }
                    }
                }
                Err(why) => why,
            },
            Frame::Binary(_) => "a binary frame: send text, {\"content\": \"hello\"}".to_owned(),
            Frame::Ping(_) | Frame::Pong(_) => continue, // axum answers pings itself
            Frame::Close(_) => break,
        };
        if outbox.send(json!({ "error": refusal })).await.is_err() {
            break;
        }
    }
    replay.abort(); // drops the room's reader: its consumer ends
    let _ = replay.await;
    drop(outbox);
    let _ = writer.await;
}

/// Sends every message of the room to the client, those written before `joined` marked as
/// history, until the client or the stream is gone. Counted in `room_readers` while it
/// reads.
async fn read_room(
    chat: Arc<Chat>,
    mut reader: EventStream<ChatMessage>,
    joined: i64,
    outbox: mpsc::Sender<Value>,
) {
    let _reading = Counted::new(&chat.readers);
    while let Some(item) = reader.next().await {
        let frame = match item {
            Ok(said) => said.event.frame(said.event.timestamp < joined),
            Err(error) => json!({
                "error": format!("a message of the room could not be read: {}", pubsub::Report::new(&error)),
            }),
        };
        if outbox.send(frame).await.is_err() {
            return; // the client is gone
        }
    }
    let _ = outbox
        .send(json!({ "error": "the room's stream ended: the server is stopping" }))
        .await;
}

/// A text frame of `value`.
fn text(value: &Value) -> Frame {
    Frame::Text(value.to_string().into())
}

/// `GET /health`: 200 `healthy`, or 503 `unhealthy` while the bus is, with the counts of
/// open sockets and of rooms' readers.
async fn health(State(chat): State<Arc<Chat>>) -> (StatusCode, Json<Value>) {
    let (code, status) = if chat.bus.health().is_healthy() {
        (StatusCode::OK, "healthy")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unhealthy")
    };
    let body = json!({
        "status": status,
        "open_sockets": chat.sockets.load(Ordering::SeqCst),
        "room_readers": chat.readers.load(Ordering::SeqCst),
    });
    (code, Json(body))
}
