//! The transport conformance suite: the semantics every [`Transport`] must share, written
//! once. The memory transport runs it in this workspace's tests; the AMQP and Streams
//! transports run the same functions against a real broker.
//!
//! Each case takes a [`Connect`] — something that returns a new transport connected to
//! the same broker on every call — uses its own random namespace for keys and service
//! names, counts every event it publishes and every one handled, and panics with a clear
//! message when the transport falls short.
//!
//! ```no_run
//! use std::sync::Arc;
//! use pubsub::{MemoryTransport, Transport, conformance};
//!
//! # async fn run() {
//! let broker = MemoryTransport::new();
//! let connect = || {
//!     let t = broker.clone();
//!     async move { Arc::new(t) as Arc<dyn Transport> }
//! };
//! conformance::fan_out(&connect).await;
//! # }
//! ```

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};

use crate::bus::Bus;
use crate::handler::{HandlerError, RawEvent};
use crate::metadata::Message;
use crate::registry::{Handler, HandlerSelection};
use crate::retry::RetryPolicy;
use crate::transport::Transport;

/// Opens a transport to the broker under test; every call must reach the same broker.
pub trait Connect: Send + Sync {
    /// A new connection.
    fn connect(&self) -> BoxFuture<'_, Arc<dyn Transport>>;
}

impl<F, Fut> Connect for F
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Arc<dyn Transport>> + Send + 'static,
{
    fn connect(&self) -> BoxFuture<'_, Arc<dyn Transport>> {
        Box::pin(self())
    }
}

/// How long a case waits for handling before it fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// A random namespace so that cases never see each other's messages on a shared broker.
fn namespace() -> String {
    format!("conf{}", &uuid::Uuid::now_v7().simple().to_string()[20..])
}

/// Records which message ids a handler saw, in order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn push(&self, id: String) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(id);
    }
    fn ids(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    fn distinct(&self) -> BTreeSet<String> {
        self.ids().into_iter().collect()
    }
    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
    fn handler(&self, name: &str, pattern: &str) -> Handler {
        let seen = self.clone();
        Handler::raw(name, pattern, move |event: RawEvent, _ctx| {
            let seen = seen.clone();
            async move {
                seen.push(event.metadata().id.to_string());
                Ok::<_, HandlerError>(())
            }
        })
    }
}

async fn bus(connect: &dyn Connect, service: &str, handlers: Vec<Handler>, prefetch: u16) -> Bus {
    let mut builder = Bus::builder()
        .service(service)
        .shared_transport(connect.connect().await)
        .select_handlers(HandlerSelection::None)
        .prefetch(prefetch)
        .retry(RetryPolicy::exponential(3, Duration::from_millis(10)))
        .shutdown_timeout(Duration::from_secs(5));
    for handler in handlers {
        builder = builder.handler(handler);
    }
    match builder.build().await {
        Ok(bus) => bus,
        Err(error) => panic!("building a bus for {service} failed: {error}"),
    }
}

/// A JSON message under `key` carrying `n`.
fn message(key: &str, n: usize) -> Message {
    Message::new(key, Bytes::from(format!("{{\"n\":{n}}}")))
}

async fn publish_all(bus: &Bus, key: &str, count: usize) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for n in 0..count {
        let message = message(key, n);
        ids.insert(message.metadata.id.to_string());
        if let Err(error) = bus.publish_message(message).await {
            panic!("publish {n} of {count} to {key} failed: {error}");
        }
    }
    ids
}

async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {PATIENCE:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn stop(bus: Bus, task: tokio::task::JoinHandle<crate::Result<()>>) {
    bus.shutdown();
    match task.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => panic!("bus {} ended with an error: {error}", bus.service()),
        Err(error) => panic!("bus {} task failed: {error}", bus.service()),
    }
}

/// Every published message reaches the handler once, with its envelope intact.
pub async fn publish_subscribe(connect: &dyn Connect) {
    let ns = namespace();
    let key = format!("{ns}.order.created");
    let got: Arc<Mutex<Vec<Message>>> = Arc::default();
    let sink = Arc::clone(&got);
    let handler = Handler::raw("record", key.clone(), move |event: RawEvent, _ctx| {
        let sink = Arc::clone(&sink);
        async move {
            sink.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(event.message().clone());
            Ok::<_, HandlerError>(())
        }
    });
    let bus = bus(connect, &ns, vec![handler], 10).await;
    let task = bus.spawn();
    let mut sent = message(&key, 7);
    sent.metadata.correlation_id = Some("conversation-1".into());
    sent.metadata.causation_id = Some("cause-1".into());
    sent.metadata.version = 3;
    sent.metadata.headers.insert("tenant".into(), "acme".into());
    if let Err(error) = bus.publish_message(sent.clone()).await {
        panic!("publish failed: {error}");
    }
    eventually("the message is handled", || {
        got.lock().map(|g| !g.is_empty()).unwrap_or(false)
    })
    .await;
    let received = got.lock().unwrap_or_else(|p| p.into_inner())[0].clone();
    let (s, r) = (&sent.metadata, &received.metadata);
    assert_eq!(received.body, sent.body, "body changed in transit");
    assert_eq!(r.id, s.id, "event id changed in transit");
    assert_eq!(r.key, s.key, "key changed in transit");
    assert_eq!(r.version, s.version, "version changed in transit");
    assert_eq!(
        r.content_type, s.content_type,
        "content type changed in transit"
    );
    assert_eq!(
        r.correlation_id, s.correlation_id,
        "correlation id changed in transit"
    );
    assert_eq!(
        r.causation_id, s.causation_id,
        "causation id changed in transit"
    );
    assert_eq!(
        r.headers.get("tenant"),
        Some(&"acme".to_owned()),
        "header lost in transit"
    );
    assert_eq!(
        r.timestamp_millis() / 1000,
        s.timestamp_millis() / 1000,
        "timestamp changed in transit"
    );
    stop(bus, task).await;
    assert_eq!(
        got.lock().map(|g| g.len()).unwrap_or(0),
        1,
        "handled more than once"
    );
}

/// A message reaches every handler whose pattern matches it, and no other.
pub async fn fan_out(connect: &dyn Connect) {
    let ns = namespace();
    let (exact, star, hash, other) = (
        Seen::default(),
        Seen::default(),
        Seen::default(),
        Seen::default(),
    );
    let handlers = vec![
        exact.handler("exact", &format!("{ns}.order.created")),
        star.handler("star", &format!("{ns}.order.*")),
        hash.handler("hash", &format!("{ns}.#")),
        other.handler("other", &format!("{ns}.user.*")),
    ];
    let bus = bus(connect, &ns, handlers, 50).await;
    let task = bus.spawn();
    let ids = publish_all(&bus, &format!("{ns}.order.created"), 20).await;
    let user = publish_all(&bus, &format!("{ns}.user.created"), 5).await;
    eventually("every handler saw its messages", || {
        exact.len() == 20 && star.len() == 20 && hash.len() == 25 && other.len() == 5
    })
    .await;
    stop(bus, task).await;
    assert_eq!(exact.distinct(), ids);
    assert_eq!(star.distinct(), ids);
    assert_eq!(other.distinct(), user);
    assert_eq!(hash.distinct(), ids.union(&user).cloned().collect());
}

/// Acked only if every handler succeeded: one failing handler dead-letters the message
/// once, the others run once, and nothing is redelivered in a loop.
pub async fn ack_all_or_nack(connect: &dyn Connect) {
    let ns = namespace();
    let key = format!("{ns}.payment.failed");
    let ok = Seen::default();
    let failing_calls = Arc::new(AtomicU64::new(0));
    let calls = Arc::clone(&failing_calls);
    let failing = Handler::raw("always_fails", key.clone(), move |_e: RawEvent, _ctx| {
        calls.fetch_add(1, Ordering::SeqCst);
        async { Err::<(), _>(HandlerError::new("card declined")) }
    })
    .retries(0);
    let bus = bus(
        connect,
        &ns,
        vec![ok.handler("succeeds", &key), failing],
        10,
    )
    .await;
    let task = bus.spawn();
    publish_all(&bus, &key, 3).await;
    eventually("three messages dead-lettered", || {
        bus.stats().dead_lettered == 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = bus.stats();
    stop(bus, task).await;
    assert_eq!(
        ok.len(),
        3,
        "the healthy handler must run exactly once per message"
    );
    assert_eq!(
        failing_calls.load(Ordering::SeqCst),
        3,
        "retries(0) means one attempt per message"
    );
    assert_eq!(
        (stats.deliveries, stats.acked, stats.dead_lettered),
        (3, 0, 3),
        "{stats:?}"
    );
}

/// Failed handlers are retried per policy; the one that recovers is acked, the one that
/// never does is dead-lettered after exactly 1 + retries attempts.
pub async fn retry_then_dead_letter(connect: &dyn Connect) {
    let ns = namespace();
    let key = format!("{ns}.stock.reserve");
    let flaky_calls = Arc::new(AtomicU64::new(0));
    let broken_calls = Arc::new(AtomicU64::new(0));
    let calls = Arc::clone(&flaky_calls);
    let flaky = Handler::raw(
        "flaky",
        key.clone(),
        move |_e: RawEvent, ctx: crate::Context| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if ctx.attempt() < 3 {
                    Err(HandlerError::new("not yet"))
                } else {
                    Ok(())
                }
            }
        },
    );
    let calls = Arc::clone(&broken_calls);
    let broken = Handler::raw(
        "broken",
        format!("{ns}.stock.audit"),
        move |_e: RawEvent, _ctx| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(HandlerError::new("still broken")) }
        },
    )
    .retries(2);
    let bus = bus(connect, &ns, vec![flaky, broken], 10).await;
    let task = bus.spawn();
    publish_all(&bus, &key, 1).await;
    publish_all(&bus, &format!("{ns}.stock.audit"), 1).await;
    eventually("both messages settled", || {
        let s = bus.stats();
        s.acked + s.dead_lettered == 2
    })
    .await;
    let stats = bus.stats();
    stop(bus, task).await;
    assert_eq!(
        flaky_calls.load(Ordering::SeqCst),
        3,
        "flaky: 2 failures then success"
    );
    assert_eq!(
        broken_calls.load(Ordering::SeqCst),
        3,
        "broken: 1 attempt + 2 retries"
    );
    assert_eq!((stats.acked, stats.dead_lettered), (1, 1), "{stats:?}");
}

/// Two buses of one service share its queue: each message is handled by exactly one.
pub async fn competing_consumers(connect: &dyn Connect) {
    let ns = namespace();
    let key = format!("{ns}.job.queued");
    let (a, b) = (Seen::default(), Seen::default());
    let slow = |seen: &Seen| {
        let seen = seen.clone();
        Handler::raw("work", key.clone(), move |event: RawEvent, _ctx| {
            let seen = seen.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                seen.push(event.metadata().id.to_string());
                Ok::<_, HandlerError>(())
            }
        })
    };
    let first = bus(connect, &ns, vec![slow(&a)], 1).await;
    let second = bus(connect, &ns, vec![slow(&b)], 1).await;
    let (t1, t2) = (first.spawn(), second.spawn());
    let ids = publish_all(&first, &key, 200).await;
    eventually("200 jobs handled", || a.len() + b.len() >= 200).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop(first, t1).await;
    stop(second, t2).await;
    let both: Vec<String> = a.ids().into_iter().chain(b.ids()).collect();
    assert_eq!(both.len(), 200, "each message handled exactly once");
    assert_eq!(both.into_iter().collect::<BTreeSet<_>>(), ids);
    assert!(
        !a.ids().is_empty() && !b.ids().is_empty(),
        "both consumers got work: {} / {}",
        a.len(),
        b.len()
    );
}

/// A consumer that goes away with unsettled deliveries loses nothing: a new consumer of
/// the same service gets every message.
pub async fn no_loss_across_resubscribe(connect: &dyn Connect) {
    let ns = namespace();
    let key = format!("{ns}.mail.send");
    let first_seen = Seen::default();
    let slow = {
        let seen = first_seen.clone();
        Handler::raw("send", key.clone(), move |event: RawEvent, _ctx| {
            let seen = seen.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                seen.push(event.metadata().id.to_string());
                Ok::<_, HandlerError>(())
            }
        })
    };
    let mut first = Bus::builder()
        .service(&ns)
        .shared_transport(connect.connect().await)
        .select_handlers(HandlerSelection::None)
        .prefetch(10)
        .shutdown_timeout(Duration::from_millis(5))
        .handler(slow);
    first = first.retry(RetryPolicy::none());
    let first = first
        .build()
        .await
        .unwrap_or_else(|e| panic!("build failed: {e}"));
    let task = first.spawn();
    let ids = publish_all(&first, &key, 100).await;
    eventually("the first consumer handled some", || first_seen.len() >= 5).await;
    stop(first, task).await;
    let second_seen = Seen::default();
    let second = bus(connect, &ns, vec![second_seen.handler("send", &key)], 50).await;
    let task = second.spawn();
    eventually("every message handled by one of the consumers", || {
        first_seen.distinct().union(&second_seen.distinct()).count() >= 100
    })
    .await;
    stop(second, task).await;
    let all: BTreeSet<String> = first_seen
        .distinct()
        .union(&second_seen.distinct())
        .cloned()
        .collect();
    assert_eq!(all, ids, "messages lost across close and resubscribe");
}

/// 10 000 publishes in flight at once, then close: every one is handled.
pub async fn concurrent_publishes(connect: &dyn Connect) {
    const COUNT: usize = 10_000;
    let ns = namespace();
    let key = format!("{ns}.tick");
    let seen = Seen::default();
    let bus = bus(connect, &ns, vec![seen.handler("count", &key)], 500).await;
    let task = bus.spawn();
    let mut sent = BTreeSet::new();
    let mut publishes = FuturesUnordered::new();
    for n in 0..COUNT {
        let message = message(&key, n);
        sent.insert(message.metadata.id.to_string());
        let bus = bus.clone();
        publishes.push(async move { bus.publish_message(message).await });
    }
    let mut confirmed = 0;
    while let Some(result) = publishes.next().await {
        if let Err(error) = result {
            panic!("a concurrent publish failed: {error}");
        }
        confirmed += 1;
    }
    assert_eq!(confirmed, COUNT);
    eventually("all 10 000 handled", || seen.len() >= COUNT).await;
    stop(bus, task).await;
    assert_eq!(seen.len(), COUNT, "handled more often than published");
    assert_eq!(seen.distinct(), sent, "some publishes were lost");
}

/// With one consumer and prefetch 1, messages from one producer arrive in publish order
/// (for transports that promise it: AMQP queues, streams, memory).
pub async fn ordering_per_producer(connect: &dyn Connect) {
    let ns = namespace();
    let key = format!("{ns}.seq");
    let order: Arc<Mutex<Vec<u64>>> = Arc::default();
    let sink = Arc::clone(&order);
    let handler = Handler::raw("ordered", key.clone(), move |event: RawEvent, _ctx| {
        let sink = Arc::clone(&sink);
        async move {
            let value: serde_json::Value = event.json()?;
            let n = value["n"]
                .as_u64()
                .ok_or_else(|| HandlerError::permanent("no n"))?;
            sink.lock().unwrap_or_else(|p| p.into_inner()).push(n);
            Ok::<_, HandlerError>(())
        }
    });
    let bus = bus(connect, &ns, vec![handler], 1).await;
    let task = bus.spawn();
    publish_all(&bus, &key, 100).await;
    eventually("100 handled", || {
        order.lock().map(|o| o.len() >= 100).unwrap_or(false)
    })
    .await;
    stop(bus, task).await;
    let got = order.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(got, (0..100).collect::<Vec<u64>>(), "out of order");
}

/// Runs every case in sequence.
pub async fn run_all(connect: &dyn Connect) {
    publish_subscribe(connect).await;
    fan_out(connect).await;
    ack_all_or_nack(connect).await;
    retry_then_dead_letter(connect).await;
    competing_consumers(connect).await;
    no_loss_across_resubscribe(connect).await;
    concurrent_publishes(connect).await;
    ordering_per_producer(connect).await;
}
