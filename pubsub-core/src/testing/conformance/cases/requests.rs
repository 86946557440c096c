//! Request/reply: each request gets its own answer, matched by correlation id, a thousand
//! at a time; no responder is said at once, no answer at the bound; the first of two
//! answers wins; closing the connection fails the requests waiting on it at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::handler::Handler;
use crate::handler_error::HandlerError;
use crate::handler_input::RawEvent;
use crate::metadata::Message;
use crate::testing::conformance::Broker;
use crate::testing::conformance::support::{
    PATIENCE, at_once, bus_on, message, namespace, start, stop, stopped, within,
};
use crate::transport::{Destination, Outgoing, Subscription, Transport, TransportError};

/// A handler of `key` answering each request `{"n": n}` with `{"n": n, "cents": n * 100,
/// "from": from}`, on `replies`, to the request's `reply_to`; counts in `answered` the
/// replies the broker took.
fn quoting(
    from: &str,
    key: &str,
    replies: Arc<dyn Transport>,
    answered: &Arc<AtomicUsize>,
) -> Handler {
    let name = format!("quote-{from}");
    let from = from.to_owned();
    let answered = Arc::clone(answered);
    let answer = move |event: RawEvent, _ctx| {
        let (replies, from) = (Arc::clone(&replies), from.clone());
        let answered = Arc::clone(&answered);
        async move {
            let request: serde_json::Value = event.json()?;
            let n = request["n"]
                .as_u64()
                .ok_or_else(|| HandlerError::permanent("no n"))?;
            let reply_to = event
                .metadata()
                .reply_to
                .clone()
                .ok_or_else(|| HandlerError::permanent("the request has no reply_to"))?;
            let body = format!("{{\"n\":{n},\"cents\":{},\"from\":\"{from}\"}}", n * 100);
            let mut reply = Message::new("quote.answered", Bytes::from(body));
            reply.metadata.correlation_id = event.metadata().correlation_id.clone();
            replies
                .publish(Outgoing::new(reply, Destination::Reply(reply_to)))
                .await?;
            answered.fetch_add(1, Ordering::SeqCst);
            Ok::<_, HandlerError>(())
        }
    };
    Handler::raw(name, key.to_owned(), answer)
}

/// [`Transport::request`] gets the reply a responder sends to the request's `reply_to`
/// (`Destination::Reply`), matched by correlation id: a thousand concurrent requests on
/// one connection, each its own answer.
pub(crate) async fn request_reply(broker: &dyn Broker) {
    const REQUESTS: usize = 1000;
    let ns = namespace();
    let key = format!("{ns}.price.quote");
    let replies = broker.connect().await;
    let quote = quoting("one", &key, Arc::clone(&replies), &Arc::default());
    let responder = bus_on(replies, &ns, vec![quote], 100).await;
    let task = start(&responder).await;
    let requester = broker.connect().await;
    let asks = (0..REQUESTS).map(|n| {
        let mut request = message(&key, n);
        request.metadata.correlation_id = Some(format!("quote-{n}"));
        let requester = Arc::clone(&requester);
        async move { (n, requester.request(request.into(), PATIENCE).await) }
    });
    for (n, answer) in join_all(asks).await {
        let reply = match answer {
            Ok(reply) => reply,
            Err(error) => panic!("request {n} failed: {error}"),
        };
        let body: serde_json::Value = serde_json::from_slice(&reply.body)
            .unwrap_or_else(|e| panic!("reply {n} is not JSON: {e}"));
        assert_eq!(
            (body["n"].as_u64(), body["cents"].as_u64()),
            (Some(n as u64), Some(n as u64 * 100)),
            "request {n} got another request's reply: {body}"
        );
        assert_eq!(
            reply.metadata.correlation_id.as_deref(),
            Some(format!("quote-{n}").as_str()),
            "the reply keeps the request's correlation id"
        );
    }
    let stats = stopped(responder, task).await;
    assert_eq!(
        requester.dropped_replies().unwrap_or(0),
        0,
        "no reply dropped"
    );
    let _ = requester.close().await;
    assert_eq!(stats.acked, REQUESTS as u64, "{stats:?}");
}

/// A request nobody answers (routed to a queue without consumers) fails with
/// [`TransportError::TimedOut`] at its bound: not before, and not much after.
pub(crate) async fn request_times_out(broker: &dyn Broker) {
    let ns = namespace();
    let key = format!("{ns}.price.quote");
    let connection = broker.connect().await;
    if let Err(error) = connection
        .declare(&Subscription::queue(ns.clone(), [key.clone()]))
        .await
    {
        panic!("declaring {ns} failed: {error}");
    }
    let bound = Duration::from_millis(300);
    let started = Instant::now();
    let answer = connection.request(message(&key, 0).into(), bound).await;
    let took = started.elapsed();
    match answer {
        Err(TransportError::TimedOut { .. }) => {}
        Err(error) => panic!("an unanswered request failed with {error:?}, not TimedOut"),
        Ok(reply) => panic!("a request nobody answers got a reply: {reply:?}"),
    }
    assert!(
        took >= bound,
        "gave up after {took:?}, before its bound {bound:?}"
    );
    assert!(
        took <= bound + Duration::from_secs(2),
        "timed out only after {took:?}, with a bound of {bound:?}"
    );
    let _ = connection.close().await;
}

/// A request to a key nothing is bound to fails with [`TransportError::Unroutable`] at
/// once, not at its bound (no responder), and the connection goes on serving requests.
pub(crate) async fn request_without_responder(broker: &dyn Broker) {
    let ns = namespace();
    let connection = broker.connect().await;
    for attempt in 0..3 {
        let request = message(&format!("{ns}.nobody.listens"), attempt);
        let asked = connection.request(request.into(), PATIENCE);
        match at_once("a request without a responder", asked).await {
            Err(TransportError::Unroutable { .. }) => {}
            Err(error) => {
                panic!("a request without a responder failed with {error:?}, not Unroutable")
            }
            Ok(reply) => panic!("a request without a responder got a reply: {reply:?}"),
        }
    }
    let _ = connection.close().await;
}

/// Two services answer one request: the caller gets exactly one reply, and the other is
/// dropped and counted in [`Transport::dropped_replies`].
pub(crate) async fn first_reply_wins(broker: &dyn Broker) {
    let ns = namespace();
    let key = format!("{ns}.price.quote");
    let replies = broker.connect().await;
    let mut buses = Vec::new();
    let answered = Arc::new(AtomicUsize::new(0));
    for from in ["first", "second"] {
        let quote = quoting(from, &key, Arc::clone(&replies), &answered);
        let bus = bus_on(
            Arc::clone(&replies),
            &format!("{ns}-{from}"),
            vec![quote],
            10,
        )
        .await;
        let task = start(&bus).await;
        buses.push((bus, task));
    }
    let requester = broker.connect().await;
    let before = requester.dropped_replies();
    let reply = match requester.request(message(&key, 7).into(), PATIENCE).await {
        Ok(reply) => reply,
        Err(error) => panic!("the request answered twice failed: {error}"),
    };
    let body: serde_json::Value = serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("the reply is not JSON: {e}"));
    assert_eq!(body["n"].as_u64(), Some(7), "{body}");
    wait_for("both services answered", || {
        answered.load(Ordering::SeqCst) == 2
    })
    .await;
    for (bus, task) in buses {
        let stats = stopped(bus, task).await;
        assert_eq!(stats.acked, 1, "{stats:?}");
    }
    // the second reply reaches the requester's reply address in a moment
    if let Some(before) = before {
        wait_for("the second reply is counted as dropped", || {
            requester.dropped_replies() == Some(before + 1)
        })
        .await;
    }
    let _ = requester.close().await;
    let _ = replies.close().await;
}

/// A request waiting for its reply when its connection is closed fails at once with
/// [`TransportError::Closed`] (or `Unavailable`), not at its bound.
pub(crate) async fn closing_fails_waiting_requests(broker: &dyn Broker) {
    let ns = namespace();
    let key = format!("{ns}.price.quote");
    let taken = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let started = Arc::new(AtomicUsize::new(0));
    let (on_taken, on_release, count) = (
        Arc::clone(&taken),
        Arc::clone(&release),
        Arc::clone(&started),
    );
    // takes the request and holds it without answering, until released
    let hold = Handler::raw("hold", key.clone(), move |_event: RawEvent, _ctx| {
        let (taken, release, count) = (
            Arc::clone(&on_taken),
            Arc::clone(&on_release),
            Arc::clone(&count),
        );
        async move {
            count.fetch_add(1, Ordering::SeqCst);
            let released = release.notified();
            taken.notify_one();
            released.await;
            Ok::<_, HandlerError>(())
        }
    });
    let responder = bus_on(broker.connect().await, &ns, vec![hold], 10).await;
    let task = start(&responder).await;
    let requester = broker.connect().await;
    let asking = Arc::clone(&requester);
    let waiting =
        tokio::spawn(async move { asking.request(message(&key, 1).into(), PATIENCE).await });
    within(
        PATIENCE,
        "the responder taking the request",
        taken.notified(),
    )
    .await;
    let closed = Instant::now();
    let _ = requester.close().await;
    let answer = match at_once("the waiting request after the close", waiting).await {
        Ok(answer) => answer,
        Err(error) => panic!("the request task failed: {error}"),
    };
    match answer {
        Err(TransportError::Closed | TransportError::Unavailable { .. }) => {}
        Err(error) => panic!("a request waiting at the close failed with {error:?}, not Closed"),
        Ok(reply) => panic!("a request waiting at the close got a reply: {reply:?}"),
    }
    assert!(closed.elapsed() < PATIENCE / 2);
    release.notify_waiters();
    stop(responder, task).await;
    assert_eq!(
        started.load(Ordering::SeqCst),
        1,
        "the request was handled once"
    );
}

/// Waits until `condition` holds, checking every few milliseconds (what it reads has no
/// change notification); fails the case after [`PATIENCE`].
async fn wait_for(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "waited {PATIENCE:?} until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
