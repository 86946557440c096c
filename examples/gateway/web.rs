//! The gateway's HTTP side: the page, the WebSocket, the event stream and `/health`, all
//! asking the processor through one bus.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::ws::{Message as Frame, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::{SinkExt, Stream, StreamExt};
use pubsub::Bus;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::TextReceived;

/// The longest text that is a request, in bytes; a longer one gets an error frame.
const MAX_TEXT: usize = 4096;
/// The longest WebSocket message at all: a longer one closes the socket (code 1009).
const MAX_MESSAGE: usize = 1 << 20;
/// Requests one socket may have in flight; more get an error frame.
const MAX_IN_FLIGHT: usize = 100;

/// What the routes share.
#[derive(Debug)]
pub(crate) struct Gateway {
    bus: Bus,             // sends the requests
    buses: Vec<Bus>,      // this process's, whose health `/health` reports
    timeout: Duration,    // how long a request waits for its answer
    sockets: AtomicUsize, // WebSockets open now
    pending: AtomicUsize, // requests waiting for their answer now
}

impl Gateway {
    /// A gateway sending requests through `bus`, healthy while `buses` all are.
    pub(crate) fn new(bus: Bus, buses: Vec<Bus>, timeout: Duration) -> Arc<Self> {
        let (sockets, pending) = (AtomicUsize::new(0), AtomicUsize::new(0));
        Arc::new(Self {
            bus,
            buses,
            timeout,
            sockets,
            pending,
        })
    }

    /// Asks the processor about `text`: `{"request", "reply"}`, or `{"request", "error"}`
    /// saying why no answer came (at the deadline, if none came at all).
    async fn ask(&self, text: &str) -> Value {
        if text.len() > MAX_TEXT {
            return json!({ "error": format!("a text of {} bytes: at most {MAX_TEXT}", text.len()) });
        }
        let _pending = Counted::new(&self.pending);
        let request = TextReceived {
            text: text.to_owned(),
        };
        match self.bus.request(&request).timeout(self.timeout).await {
            Ok(reply) => json!({ "request": text, "reply": reply }),
            Err(error) => {
                json!({ "request": text, "error": pubsub::Report::new(&error).to_string() })
            }
        }
    }
}

/// One more in a count while it lives (an open socket, a pending request).
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The routes.
pub(crate) fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/ws", get(websocket))
        .route("/stream/{text}", get(stream))
        .route("/health", get(health))
        .with_state(gateway)
}

async fn websocket(upgrade: WebSocketUpgrade, State(gateway): State<Arc<Gateway>>) -> Response {
    upgrade
        .max_message_size(MAX_MESSAGE)
        .on_upgrade(move |socket| serve_socket(socket, gateway))
}

/// Reads frames until the client goes. Each text is a request of its own, answered by a
/// task of its own; answers go out through one writer task, in the order they are ready.
async fn serve_socket(socket: WebSocket, gateway: Arc<Gateway>) {
    let _open = Counted::new(&gateway.sockets);
    let (mut sink, mut frames) = socket.split();
    let (answers, mut outbox) = mpsc::channel::<Value>(MAX_IN_FLIGHT);
    let writer = tokio::spawn(async move {
        while let Some(answer) = outbox.recv().await {
            if sink
                .send(Frame::Text(answer.to_string().into()))
                .await
                .is_err()
            {
                break; // the client is gone
            }
        }
    });
    let mut requests = JoinSet::new();
    // a frame that is no valid WebSocket frame (a text that is no UTF-8, say) fails the
    // connection, as RFC 6455 says; anything else gets an answer
    while let Some(Ok(frame)) = frames.next().await {
        while requests.try_join_next().is_some() {}
        let refusal = match frame {
            Frame::Text(text) if requests.len() < MAX_IN_FLIGHT => {
                let (gateway, answers) = (Arc::clone(&gateway), answers.clone());
                requests.spawn(async move {
                    let _ = answers.send(gateway.ask(text.as_str()).await).await;
                });
                continue;
            }
            Frame::Text(_) => format!("{MAX_IN_FLIGHT} requests in flight: wait for an answer"),
            Frame::Binary(_) => "a binary frame is no request: send text".to_owned(),
            Frame::Ping(_) | Frame::Pong(_) => continue, // axum answers pings itself
            Frame::Close(_) => break,
        };
        if answers.send(json!({ "error": refusal })).await.is_err() {
            break;
        }
    }
    requests.abort_all(); // nobody is left to answer
    drop(answers);
    let _ = writer.await;
}

/// `GET /stream/{text}`: one `reply` or `error` event with the same JSON as on the
/// WebSocket, then the end of the stream.
async fn stream(
    Path(text): Path<String>,
    State(gateway): State<Arc<Gateway>>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let answer = async move {
        let answer = gateway.ask(&text).await;
        let kind = if answer.get("reply").is_some() {
            "reply"
        } else {
            "error"
        };
        Ok(SseEvent::default().event(kind).data(answer.to_string()))
    };
    Sse::new(futures::stream::once(answer)).keep_alive(KeepAlive::default())
}

/// `GET /health`: 200 `healthy`, or 503 `unhealthy` while a bus is, with the counts.
async fn health(State(gateway): State<Arc<Gateway>>) -> (StatusCode, Json<Value>) {
    let healthy = gateway.buses.iter().all(|bus| bus.health().is_healthy());
    let (code, status) = if healthy {
        (StatusCode::OK, "healthy")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unhealthy")
    };
    let body = json!({
        "status": status,
        "active_websockets": gateway.sockets.load(Ordering::SeqCst),
        "pending_requests": gateway.pending.load(Ordering::SeqCst),
    });
    (code, Json(body))
}

/// The page: a text box on the WebSocket. Answers are inserted as text, never as HTML.
const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8"><title>pubsub gateway</title>
<form id="ask"><input id="text" autofocus placeholder="hello"> <button>send</button></form>
<ul id="log"></ul>
<script>
const say = (line) => {
  const item = document.createElement("li");
  item.textContent = line;
  document.getElementById("log").prepend(item);
};
const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
ws.onopen = () => say("connected");
ws.onclose = () => say("disconnected");
ws.onmessage = (frame) => {
  const { request = "", reply, error } = JSON.parse(frame.data);
  say(error ? `${request} → error: ${error}` : `${request} → ${reply}`);
};
document.getElementById("ask").onsubmit = (submit) => {
  submit.preventDefault();
  ws.send(document.getElementById("text").value);
  document.getElementById("text").value = "";
};
</script>
"#;
