//! The cases: each one a semantic every transport must share.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};

use super::Broker;
use super::support::{
    PATIENCE, Progress, Seen, bus, eventually, linger, message, namespace, publish_all, start,
    stop, until,
};
use crate::bus::Bus;
use crate::handler::{HandlerError, RawEvent};
use crate::metadata::{HEADER_DEATH_REASON, HEADER_FAILED_HANDLERS, Message};
use crate::registry::{Handler, HandlerSelection};
use crate::retry::RetryPolicy;

/// Every published message reaches the handler once, with its envelope intact.
pub async fn publish_subscribe(broker: &dyn Broker) {
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
    let bus = bus(broker, &ns, vec![handler], 10).await;
    let task = start(&bus).await;
    let mut sent = message(&key, 7);
    sent.metadata.correlation_id = Some("conversation-1".into());
    sent.metadata.causation_id = Some("cause-1".into());
    sent.metadata.reply_to = Some(format!("{ns}.replies"));
    sent.metadata.version = 3;
    sent.metadata.headers.insert("tenant".into(), "acme".into());
    if let Err(error) = bus.publish_message(sent.clone()).await {
        panic!("publish failed: {error}");
    }
    eventually("the message is handled", &[&bus], || {
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
    assert_eq!(r.reply_to, s.reply_to, "reply-to changed in transit");
    assert_eq!(
        r.app_id.as_deref(),
        Some(ns.as_str()),
        "app_id is the publishing service"
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
pub async fn fan_out(broker: &dyn Broker) {
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
    let bus = bus(broker, &ns, handlers, 50).await;
    let task = start(&bus).await;
    let ids = publish_all(&bus, &format!("{ns}.order.created"), 20).await;
    let user = publish_all(&bus, &format!("{ns}.user.created"), 5).await;
    eventually("every handler saw its messages", &[&bus], || {
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
/// once — with the reason and the failed handler's name — the others run once, and
/// nothing is redelivered in a loop.
pub async fn ack_all_or_nack(broker: &dyn Broker) {
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
    let bus = bus(broker, &ns, vec![ok.handler("succeeds", &key), failing], 10).await;
    let task = start(&bus).await;
    let ids = publish_all(&bus, &key, 3).await;
    eventually("three messages dead-lettered", &[&bus], || {
        bus.stats().dead_lettered == 3
    })
    .await;
    // a redelivery loop would show here
    linger(Duration::from_millis(300)).await;
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
    let dead = broker.dead_letters(&ns).await;
    assert_eq!(
        dead.len(),
        3,
        "every failed message is in the dead-letter queue"
    );
    let dead_ids: BTreeSet<String> = dead.iter().map(|m| m.metadata.id.to_string()).collect();
    assert_eq!(dead_ids, ids, "dead letters keep their event ids");
    for message in &dead {
        let headers = &message.metadata.headers;
        assert_eq!(
            headers.get(HEADER_FAILED_HANDLERS).map(String::as_str),
            Some("always_fails")
        );
        let reason = headers
            .get(HEADER_DEATH_REASON)
            .map(String::as_str)
            .unwrap_or_default();
        assert!(
            reason.contains("card declined"),
            "dead-letter reason {reason:?}"
        );
    }
}

/// Failed handlers are retried per policy; the one that recovers is acked, the one that
/// never does is dead-lettered after exactly 1 + retries attempts.
pub async fn retry_then_dead_letter(broker: &dyn Broker) {
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
    let bus = bus(broker, &ns, vec![flaky, broken], 10).await;
    let task = start(&bus).await;
    publish_all(&bus, &key, 1).await;
    publish_all(&bus, &format!("{ns}.stock.audit"), 1).await;
    eventually("both messages settled", &[&bus], || {
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
    let dead = broker.dead_letters(&ns).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].metadata.key, format!("{ns}.stock.audit"));
    assert_eq!(
        dead[0]
            .metadata
            .headers
            .get(HEADER_FAILED_HANDLERS)
            .map(String::as_str),
        Some("broken")
    );
}

/// Two buses of one service share its queue: each message is handled by exactly one.
///
/// Each bus takes one delivery at a time (prefetch 1) and holds its first one until the
/// other bus has one too: a transport that shares the queue gives the second bus the next
/// message meanwhile, whatever the scheduling; one that does not leaves both waiting.
pub async fn competing_consumers(broker: &dyn Broker) {
    let ns = namespace();
    let key = format!("{ns}.job.queued");
    let (a, b) = (Seen::default(), Seen::default());
    let both_busy = Arc::new(tokio::sync::Barrier::new(2));
    let slow = |seen: &Seen| {
        let (seen, both_busy) = (seen.clone(), Arc::clone(&both_busy));
        let first = Arc::new(AtomicBool::new(true));
        Handler::raw("work", key.clone(), move |event: RawEvent, _ctx| {
            let (seen, both_busy, first) =
                (seen.clone(), Arc::clone(&both_busy), Arc::clone(&first));
            async move {
                if first.swap(false, Ordering::SeqCst) {
                    // no rendezvous by then: the check that both got work fails below
                    let _ = tokio::time::timeout(PATIENCE, both_busy.wait()).await;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
                seen.push(event.metadata().id.to_string());
                Ok::<_, HandlerError>(())
            }
        })
    };
    let first = bus(broker, &ns, vec![slow(&a)], 1).await;
    let second = bus(broker, &ns, vec![slow(&b)], 1).await;
    let (t1, t2) = (start(&first).await, start(&second).await);
    let ids = publish_all(&first, &key, 200).await;
    eventually("200 jobs handled", &[&first, &second], || {
        a.len() + b.len() >= 200
    })
    .await;
    // a message handled twice would show here
    linger(Duration::from_millis(100)).await;
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

/// A consumer that stops with deliveries unfinished loses nothing: they are requeued,
/// flagged as redelivered, and a new consumer of the same service gets every message.
///
/// The first consumer handles five messages, then holds every further delivery until it
/// is stopped: it stops with deliveries unfinished, whatever the scheduling.
pub async fn no_loss_across_resubscribe(broker: &dyn Broker) {
    let ns = namespace();
    let key = format!("{ns}.mail.send");
    let first_seen = Seen::default();
    let held = Arc::new(AtomicUsize::new(0));
    let holding = Progress::default();
    let slow = {
        let (seen, calls) = (first_seen.clone(), Arc::new(AtomicUsize::new(0)));
        let (held, holding) = (Arc::clone(&held), holding.clone());
        Handler::raw("send", key.clone(), move |event: RawEvent, _ctx| {
            let (seen, held, holding) = (seen.clone(), Arc::clone(&held), holding.clone());
            let call = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if call >= 5 {
                    held.fetch_add(1, Ordering::SeqCst);
                    holding.tick();
                    // until the shutdown deadline aborts it
                    std::future::pending::<()>().await;
                }
                seen.push(event.metadata().id.to_string());
                Ok::<_, HandlerError>(())
            }
        })
    };
    let first = Bus::builder()
        .service(&ns)
        .shared_transport(broker.connect().await)
        .select_handlers(HandlerSelection::None)
        .prefetch(10)
        .retry(RetryPolicy::none())
        .shutdown_timeout(Duration::from_millis(5))
        .handler(slow)
        .build()
        .await
        .unwrap_or_else(|e| panic!("build failed: {e}"));
    let task = start(&first).await;
    let ids = publish_all(&first, &key, 100).await;
    eventually(
        "the first consumer handled five and holds more",
        &[&first_seen, &holding],
        || first_seen.len() >= 5 && held.load(Ordering::SeqCst) > 0,
    )
    .await;
    let requeued = {
        first.shutdown();
        let _ = task.await;
        first.stats().requeued
    };
    assert!(
        requeued > 0,
        "stopping mid-flight must requeue the unfinished deliveries"
    );
    let second_seen = Seen::default();
    let redelivered = Arc::new(AtomicUsize::new(0));
    let flagged = Arc::clone(&redelivered);
    let seen = second_seen.clone();
    let counting = Handler::raw(
        "send",
        key.clone(),
        move |event: RawEvent, ctx: crate::Context| {
            if ctx.redelivered() {
                flagged.fetch_add(1, Ordering::SeqCst);
            }
            seen.push(event.metadata().id.to_string());
            async { Ok::<_, HandlerError>(()) }
        },
    );
    let second = bus(broker, &ns, vec![counting], 50).await;
    let task = start(&second).await;
    eventually(
        "every message handled by one of the consumers",
        &[&second],
        || first_seen.distinct().union(&second_seen.distinct()).count() >= 100,
    )
    .await;
    stop(second, task).await;
    let all: BTreeSet<String> = first_seen
        .distinct()
        .union(&second_seen.distinct())
        .cloned()
        .collect();
    assert_eq!(all, ids, "messages lost across close and resubscribe");
    assert!(
        redelivered.load(Ordering::SeqCst) as u64 >= requeued,
        "requeued deliveries come back flagged as redelivered"
    );
}

/// 10 000 publishes in flight at once on one connection, which is then closed: every one
/// was confirmed, and every one reaches a consumer on another connection.
pub async fn concurrent_publishes(broker: &dyn Broker) {
    const COUNT: usize = 10_000;
    let ns = namespace();
    let key = format!("{ns}.tick");
    let seen = Seen::default();
    // declared (not yet consuming) before anything is published
    let consumer = bus(broker, &ns, vec![seen.handler("count", &key)], 500).await;
    let connection = broker.connect().await;
    let publisher = Bus::builder()
        .service(format!("{ns}-publisher"))
        .shared_transport(Arc::clone(&connection))
        .select_handlers(HandlerSelection::None)
        .build()
        .await
        .unwrap_or_else(|e| panic!("build failed: {e}"));
    let mut sent = BTreeSet::new();
    let mut publishes = FuturesUnordered::new();
    for n in 0..COUNT {
        let message = message(&key, n);
        sent.insert(message.metadata.id.to_string());
        let publisher = publisher.clone();
        publishes.push(async move { publisher.publish_message(message).await });
    }
    let mut confirmed = 0;
    while let Some(result) = publishes.next().await {
        if let Err(error) = result {
            panic!("a concurrent publish failed: {error}");
        }
        confirmed += 1;
    }
    assert_eq!(confirmed, COUNT);
    if let Err(error) = connection.close().await {
        panic!("closing the publishing connection failed: {error}");
    }
    drop((publisher, connection));
    let task = start(&consumer).await;
    eventually("all 10 000 handled", &[&consumer], || seen.len() >= COUNT).await;
    stop(consumer, task).await;
    assert_eq!(seen.len(), COUNT, "handled more often than published");
    assert_eq!(seen.distinct(), sent, "some publishes were lost");
}

/// Deliveries are handled concurrently, but never more at once than the prefetch.
///
/// Until the peak reaches the prefetch, each handler waits for it (bounded): a transport
/// that hands out the prefetch reaches it whatever the scheduling.
pub async fn in_flight_bounded_by_prefetch(broker: &dyn Broker) {
    const PREFETCH: u16 = 4;
    let ns = namespace();
    let key = format!("{ns}.load");
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let rising = Progress::default();
    let (r, p, d, up) = (
        Arc::clone(&running),
        Arc::clone(&peak),
        Arc::clone(&done),
        rising.clone(),
    );
    let handler = Handler::raw("slow", key.clone(), move |_e: RawEvent, _ctx| {
        let (r, p, d, up) = (Arc::clone(&r), Arc::clone(&p), Arc::clone(&d), up.clone());
        async move {
            p.fetch_max(r.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
            up.tick();
            // the check below fails if the peak never reaches the prefetch
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            until(&[&up], deadline, || {
                p.load(Ordering::SeqCst) >= usize::from(PREFETCH)
            })
            .await;
            tokio::time::sleep(Duration::from_millis(30)).await;
            r.fetch_sub(1, Ordering::SeqCst);
            d.fetch_add(1, Ordering::SeqCst);
            Ok::<_, HandlerError>(())
        }
    });
    let bus = bus(broker, &ns, vec![handler], PREFETCH).await;
    publish_all(&bus, &key, 40).await;
    let task = start(&bus).await;
    eventually("40 handled", &[&bus], || done.load(Ordering::SeqCst) >= 40).await;
    stop(bus, task).await;
    assert_eq!(
        peak.load(Ordering::SeqCst),
        usize::from(PREFETCH),
        "at the peak, exactly prefetch deliveries in flight"
    );
}

/// With one consumer and prefetch 1, messages from one producer arrive in publish order
/// (for transports that promise it: AMQP queues, streams, memory).
pub async fn ordering_per_producer(broker: &dyn Broker) {
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
    let bus = bus(broker, &ns, vec![handler], 1).await;
    let task = start(&bus).await;
    publish_all(&bus, &key, 100).await;
    eventually("100 handled", &[&bus], || {
        order.lock().map(|o| o.len() >= 100).unwrap_or(false)
    })
    .await;
    stop(bus, task).await;
    let got = order.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(got, (0..100).collect::<Vec<u64>>(), "out of order");
}
