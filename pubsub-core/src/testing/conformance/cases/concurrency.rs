//! Consumers and concurrency: competing consumers share a service's queue, a consumer
//! that stops loses nothing, publishes in flight at once are all confirmed and delivered,
//! in-flight deliveries stay within the prefetch, and one producer's messages keep their
//! order.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::Barrier;

use crate::bus::Bus;
use crate::handler::Handler;
use crate::handler_error::HandlerError;
use crate::handler_input::RawEvent;
use crate::retry::RetryPolicy;
use crate::selection::HandlerSelection;
use crate::testing::conformance::Broker;
use crate::testing::conformance::support::{
    Progress, Seen, bus, competing, eventually, linger, message, namespace, publish_all, start,
    stop, until,
};

/// Two buses of one service share its queue: each message is handled by exactly one.
///
/// Each bus takes one delivery at a time (prefetch 1) and holds its first one until the
/// other bus has one too: a transport that shares the queue gives the second bus the next
/// message meanwhile, whatever the scheduling; one that does not leaves both waiting.
pub(crate) async fn competing_consumers(broker: &dyn Broker) {
    let ns = namespace();
    let key = format!("{ns}.job.queued");
    let (a, b) = (Seen::default(), Seen::default());
    let both_busy = Arc::new(Barrier::new(2));
    let first = bus(
        broker,
        &ns,
        vec![competing(&a, "work", &key, &both_busy)],
        1,
    )
    .await;
    let second = bus(
        broker,
        &ns,
        vec![competing(&b, "work", &key, &both_busy)],
        1,
    )
    .await;
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
pub(crate) async fn no_loss_across_resubscribe(broker: &dyn Broker) {
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
pub(crate) async fn concurrent_publishes(broker: &dyn Broker) {
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
pub(crate) async fn in_flight_bounded_by_prefetch(broker: &dyn Broker) {
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
pub(crate) async fn ordering_per_producer(broker: &dyn Broker) {
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
