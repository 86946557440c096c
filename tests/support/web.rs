//! Clients of the examples' HTTP sides: a WebSocket (tokio-tungstenite) and `GET`s such as
//! `/health` (plain HTTP/1.0 over a `TcpStream`: the server then ends the body by closing,
//! so there is no chunked encoding to undo).

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a client waits for anything before the test fails.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// A WebSocket client.
pub(crate) struct Socket(WebSocketStream<MaybeTlsStream<TcpStream>>);

impl Socket {
    /// Connects to `url` (`ws://host:port/path`).
    pub(crate) async fn connect(url: &str) -> Self {
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
        Self(socket)
    }

    /// Sends `text` as a text frame.
    pub(crate) async fn send(&mut self, text: &str) {
        self.send_frame(Frame::text(text)).await;
    }

    /// Sends `frame`.
    pub(crate) async fn send_frame(&mut self, frame: Frame) {
        self.0
            .send(frame)
            .await
            .expect("the socket takes the frame");
    }

    /// The next text frame, as JSON; panics on anything else (a close, the end, a binary
    /// frame) and after [`PATIENCE`].
    pub(crate) async fn next(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(PATIENCE, self.0.next())
                .await
                .unwrap_or_else(|_| panic!("no frame in {PATIENCE:?}"));
            match frame {
                Some(Ok(Frame::Text(text))) => {
                    return serde_json::from_str(text.as_str())
                        .unwrap_or_else(|e| panic!("the frame {text:?} is no JSON: {e}"));
                }
                Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => {}
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// Closes the socket and waits for the server's close.
    pub(crate) async fn close(mut self) {
        self.0.close(None).await.expect("the close frame goes out");
        while let Some(Ok(_)) = self.0.next().await {}
    }
}

/// `GET /health`: the status code and the body.
pub(crate) async fn health(address: &str) -> (u16, Value) {
    let (status, _, body) = get(address, "/health").await;
    let body = serde_json::from_str(&body).unwrap_or_else(|e| panic!("/health: {body:?}: {e}"));
    (status, body)
}

/// Polls `/health` until `done` holds for it (every 20 ms, for [`PATIENCE`] at most).
pub(crate) async fn health_until(
    address: &str,
    what: &str,
    done: impl Fn(u16, &Value) -> bool,
) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, body) = health(address).await;
        if done(status, &body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/health is not {what} after {PATIENCE:?}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An HTTP/1.0 GET of `path`: status, headers (lower case) and body, read to the end.
pub(crate) async fn get(address: &str, path: &str) -> (u16, String, String) {
    let exchange = async {
        let mut stream = TcpStream::connect(address)
            .await
            .expect("the example answers");
        let request = format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("the request goes out");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .await
            .expect("a UTF-8 response");
        response
    };
    let response = tokio::time::timeout(PATIENCE, exchange)
        .await
        .unwrap_or_else(|_| panic!("GET {path}: no complete answer in {PATIENCE:?}"));
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("GET {path}: no header end in {response:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("GET {path}: no status in {head:?}"));
    (status, head.to_lowercase(), body.to_owned())
}
