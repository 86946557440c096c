//! What every transport's gateway must do, run against a gateway at an address.

use std::time::{Duration, Instant};

use futures::future::join_all;
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::client::{Socket, counts, events, health_until, reply_to};

/// WebSocket clients at once.
const SOCKETS: usize = 200;
/// Event streams at once, beside them.
const STREAMS: usize = 50;

/// 200 WebSocket clients and 50 event streams, all at once, each asking with a text of its
/// own, each getting exactly its own answer; `/health` counts the sockets up and back to 0.
pub(crate) async fn crowd(address: &str) {
    let run = pubsub::Uuid::now_v7().simple().to_string();
    let run = &run[20..];
    let sockets = join_all((0..SOCKETS).map(|_| Socket::open(address))).await;
    health_until(address, "counting the sockets", |status, health| {
        status == 200 && counts(health) == (SOCKETS as u64, 0)
    })
    .await;
    let started = Instant::now();
    let prefix = format!("ws-{run}");
    let asked = ask_each(sockets, &prefix);
    let streamed = (0..STREAMS).map(|i| async move {
        let text = format!("sse-{i}-{run}");
        let expected = vec![("reply".to_owned(), reply_to(&text))];
        assert_eq!(
            events(address, &text).await,
            expected,
            "the stream of {text}"
        );
    });
    let (sockets, _) = futures::join!(asked, join_all(streamed));
    eprintln!(
        "{SOCKETS} sockets and {STREAMS} streams answered in {:?}",
        started.elapsed()
    );
    // no answer went astray: the next frame on each socket answers its next text
    let sockets = ask_each(sockets, &format!("again-{run}")).await;
    join_all(sockets.into_iter().map(Socket::close)).await;
    health_until(address, "back to 0", |status, health| {
        status == 200 && counts(health) == (0, 0)
    })
    .await;
}

/// Each socket asks with a text of its own (`{prefix}-{i}`), all at once, and gets its
/// answer as the next frame; returns the sockets.
pub(crate) async fn ask_each(sockets: Vec<Socket>, prefix: &str) -> Vec<Socket> {
    let asked = sockets
        .into_iter()
        .enumerate()
        .map(|(i, mut socket)| async move {
            let text = format!("{prefix}-{i}");
            assert_eq!(socket.ask(&text).await, reply_to(&text));
            socket
        });
    join_all(asked).await
}

/// On a gateway whose requests time out after `timeout` (a processor slower than that):
/// `/health` counts them pending, each socket gets an error frame naming its request at the
/// deadline, not before, and stays open: a binary frame and a text too long get error
/// frames too. Returns the sockets, still open.
pub(crate) async fn too_slow(address: &str, sockets: usize, timeout: Duration) -> Vec<Socket> {
    let mut open = join_all((0..sockets).map(|_| Socket::open(address))).await;
    let sent = Instant::now();
    for (i, socket) in open.iter_mut().enumerate() {
        socket.send(&format!("slow-{i}")).await;
    }
    let n = sockets as u64;
    health_until(
        address,
        "counting the pending requests",
        |status, health| status == 200 && counts(health) == (n, n),
    )
    .await;
    for (i, socket) in open.iter_mut().enumerate() {
        let answer = socket.next().await;
        assert_eq!(answer["request"], format!("slow-{i}"), "{answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        let expected = format!("no reply to gateway.text_received within {timeout:?}");
        assert!(error.contains(&expected), "{answer}");
    }
    let waited = sent.elapsed();
    assert!(
        waited >= timeout,
        "the errors came after {waited:?}, before the deadline"
    );
    health_until(address, "without pending requests", |_, health| {
        counts(health) == (n, 0)
    })
    .await;
    for socket in &mut open {
        socket.send_frame(Frame::binary(vec![1, 2, 3])).await;
        let answer = socket.next().await;
        assert!(
            answer["error"]
                .as_str()
                .unwrap_or_default()
                .contains("binary"),
            "{answer}"
        );
        socket.send(&"x".repeat(5000)).await;
        let answer = socket.next().await;
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains("5000 bytes: at most 4096"), "{answer}");
    }
    open
}
