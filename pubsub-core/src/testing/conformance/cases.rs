//! The cases: each one a semantic every transport must share.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::Barrier;
use tokio::time::Instant;

use super::support::{
    Changes, PATIENCE, Progress, Seen, at_once, build, builder, bus, bus_on, competing, eventually,
    linger, message, namespace, probe, publish_all, publisher, raw_subscription, skip_part, start,
    stop, stopped, straight_to, until, within,
};
use super::{Broker, Need};
use crate::bus::Bus;
use crate::codec::Json;
use crate::context::Context;
use crate::event::Event;
use crate::handler::Handler;
use crate::handler_error::HandlerError;
use crate::handler_input::RawEvent;
use crate::headers::{HEADER_DEATH_REASON, HEADER_FAILED_HANDLERS};
use crate::metadata::Message;
use crate::retry::RetryPolicy;
use crate::selection::HandlerSelection;
use crate::stats::BusStats;
use crate::transport::TransportError;
use crate::transport::{Destination, Outgoing, Settlement, Subscription, Transport};

/// The typed event of [`dead_letter_keeps_the_envelope`]. Its key is not namespaced (an
/// event type's key is a constant), so the case sends it straight to its service's queue,
/// never through the topic, where other runs' queues bound to it would get it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Probe {
    n: u64,
}

impl Event for Probe {
    const DOMAIN: &'static str = "conformance";
    const ACTION: &'static str = "probe";
    const KEY: &'static str = "conformance.probe";
    const VERSION: u32 = 2;
    type Codec = Json;
}

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

/// Two services bound to one key each handle every event (consumer groups), while the two
/// buses within each service compete for it: each event once per service.
pub async fn every_service_gets_every_event(broker: &dyn Broker) {
    const COUNT: usize = 100;
    let ns = namespace();
    let key = format!("{ns}.order.placed");
    let (transport, capabilities) = probe(broker).await;
    let competing_half = capabilities.competing_consumers;
    if !competing_half {
        skip_part(
            "every_service_gets_every_event",
            "two competing buses per service",
            Need::CompetingConsumers,
            transport,
        );
    }
    let buses_per_service = if competing_half { 2 } else { 1 };
    let mut services = Vec::new();
    for name in ["billing", "shipping"] {
        let service = format!("{ns}-{name}");
        let rendezvous = Arc::new(Barrier::new(buses_per_service));
        let mut buses = Vec::new();
        for _ in 0..buses_per_service {
            let seen = Seen::default();
            let handler = competing(&seen, "record", &key, &rendezvous);
            buses.push((bus(broker, &service, vec![handler], 1).await, seen));
        }
        services.push((service, buses));
    }
    let mut tasks = Vec::new();
    for (_, buses) in &services {
        for (bus, _) in buses {
            tasks.push((bus.clone(), start(bus).await));
        }
    }
    let publisher = publisher(broker.connect().await, &format!("{ns}-publisher")).await;
    let ids = publish_all(&publisher, &key, COUNT).await;
    let all_buses: Vec<&dyn Changes> = tasks.iter().map(|(bus, _)| bus as &dyn Changes).collect();
    eventually("every service handled every event", &all_buses, || {
        services
            .iter()
            .all(|(_, buses)| buses.iter().map(|(_, seen)| seen.len()).sum::<usize>() >= COUNT)
    })
    .await;
    // an event handled twice within a service would show here
    linger(Duration::from_millis(100)).await;
    for (bus, task) in tasks {
        stop(bus, task).await;
    }
    for (service, buses) in &services {
        let handled: Vec<String> = buses.iter().flat_map(|(_, seen)| seen.ids()).collect();
        assert_eq!(
            handled.len(),
            COUNT,
            "service {service}: each of the {COUNT} events must be handled exactly once by one of its buses"
        );
        assert_eq!(
            handled.into_iter().collect::<BTreeSet<_>>(),
            ids,
            "service {service} did not get every event"
        );
        if competing_half {
            let per_bus: Vec<usize> = buses.iter().map(|(_, seen)| seen.len()).collect();
            assert!(
                per_bus.iter().all(|&n| n > 0),
                "service {service}: both of its buses must get work, got {per_bus:?}"
            );
        }
    }
}

/// About 20 services are built, run and shut down concurrently on one connection: each
/// gets its own messages and no other's. Then, on the same connection, a service started
/// after the churn and the churned services started again lose nothing: each gets
/// exactly what was published to it meanwhile.
pub async fn many_services_at_once(broker: &dyn Broker) {
    const EACH: usize = 10;
    let ns = namespace();
    let connection = broker.connect().await;
    let publisher = publisher(Arc::clone(&connection), &format!("{ns}-publisher")).await;
    let publish_each = || {
        join_all((0..SERVICES).map(|i| {
            let (publisher, key) = (&publisher, format!("{ns}-s{i:02}.ping"));
            async move { publish_all(publisher, &key, EACH).await }
        }))
    };

    // round 1: the messages published while the services run
    let round = Services::start(&connection, &ns).await;
    let sent = publish_each().await;
    round.finish(1, EACH, &sent).await;

    // while every service is down, more for each; and a service that comes late, fed
    // before and after it starts
    let backlog = publish_each().await;
    let late_key = format!("{ns}-late.ping");
    let late_seen = Seen::default();
    let late = bus_on(
        Arc::clone(&connection),
        &format!("{ns}-late"),
        vec![late_seen.handler("ping", &late_key)],
        10,
    )
    .await;
    let mut late_sent = publish_all(&publisher, &late_key, EACH).await;
    let late_task = start(&late).await;
    late_sent.extend(publish_all(&publisher, &late_key, EACH).await);

    // round 2: the same services again, on the same connection, get their backlog
    let round = Services::start(&connection, &ns).await;
    round.finish(2, EACH, &backlog).await;
    eventually("the late service handled its messages", &[&late], || {
        late_seen.len() >= 2 * EACH
    })
    .await;
    linger(Duration::from_millis(100)).await;
    let late_stats = stopped(late, late_task).await;
    assert_eq!(
        (late_seen.len(), late_stats.deliveries),
        (2 * EACH, 2 * EACH as u64),
        "the service started after the churn: each of its messages once, {late_stats:?}"
    );
    assert_eq!(
        late_seen.distinct(),
        late_sent,
        "the late service lost messages"
    );
}

/// How many services [`many_services_at_once`] runs at once.
const SERVICES: usize = 20;

/// The services of [`many_services_at_once`], `{ns}-s00` … bound to `{ns}-s00.*` … (a
/// domain each, so that on streams each reads a stream of its own).
struct Services {
    names: Vec<String>,
    seen: Vec<Seen>,
    buses: Vec<Bus>,
    tasks: Vec<tokio::task::JoinHandle<crate::Result<()>>>,
}

impl Services {
    /// Builds every service at once on `connection`, then starts every one at once.
    async fn start(connection: &Arc<dyn Transport>, ns: &str) -> Self {
        let names: Vec<String> = (0..SERVICES).map(|i| format!("{ns}-s{i:02}")).collect();
        let seen: Vec<Seen> = (0..SERVICES).map(|_| Seen::default()).collect();
        let buses = join_all((0..SERVICES).map(|i| {
            let handler = seen[i].handler("ping", &format!("{ns}-s{i:02}.*"));
            bus_on(Arc::clone(connection), &names[i], vec![handler], 10)
        }))
        .await;
        let tasks = join_all(buses.iter().map(start)).await;
        Self {
            names,
            seen,
            buses,
            tasks,
        }
    }

    /// Waits until each service handled `each` messages, stops every one at once, and
    /// checks that each got exactly `sent[i]`, once each, and nothing else.
    async fn finish(self, round: usize, each: usize, sent: &[BTreeSet<String>]) {
        let sources: Vec<&dyn Changes> = self.buses.iter().map(|b| b as &dyn Changes).collect();
        eventually(
            &format!("round {round}: every service handled its messages"),
            &sources,
            || self.seen.iter().all(|s| s.len() >= each),
        )
        .await;
        // a misrouted or duplicated message would show here
        linger(Duration::from_millis(100)).await;
        let stats: Vec<BusStats> = join_all(
            self.buses
                .into_iter()
                .zip(self.tasks)
                .map(|(bus, task)| stopped(bus, task)),
        )
        .await;
        for (i, name) in self.names.iter().enumerate() {
            let stats = stats[i];
            assert_eq!(
                (self.seen[i].len(), stats.deliveries, stats.unhandled),
                (each, each as u64, 0),
                "round {round}, service {name}: its {each} messages once each and nothing else (handled, deliveries, deliveries no handler matched): {stats:?}"
            );
            assert_eq!(
                self.seen[i].distinct(),
                sent[i],
                "round {round}, service {name}: not its own messages"
            );
        }
    }
}

/// What was acked or dead-lettered never comes back: a new bus of the same service, on a
/// new connection, gets none of it (checked with a marker published after them, which it
/// gets, and a window after).
pub async fn settled_stays_settled(broker: &dyn Broker) {
    const GOOD: usize = 20;
    const BAD: usize = 5;
    let ns = namespace();
    let (good_key, bad_key) = (format!("{ns}.invoice.sent"), format!("{ns}.invoice.broken"));
    let pattern = format!("{ns}.invoice.*");
    let first_seen = Seen::default();
    let judge = {
        let seen = first_seen.clone();
        Handler::raw("send", pattern.clone(), move |event: RawEvent, _ctx| {
            seen.push(event.metadata().id.to_string());
            let broken = event.key().ends_with(".broken");
            async move {
                if broken {
                    Err(HandlerError::permanent("broken invoice"))
                } else {
                    Ok(())
                }
            }
        })
    };
    let first_connection = broker.connect().await;
    let first = bus_on(Arc::clone(&first_connection), &ns, vec![judge], 10).await;
    let task = start(&first).await;
    let mut settled = publish_all(&first, &good_key, GOOD).await;
    settled.extend(publish_all(&first, &bad_key, BAD).await);
    eventually("every message acked or dead-lettered", &[&first], || {
        let stats = first.stats();
        stats.acked + stats.dead_lettered >= (GOOD + BAD) as u64
    })
    .await;
    let stats = first.stats();
    stop(first, task).await;
    assert_eq!(
        (stats.acked, stats.dead_lettered, stats.in_flight),
        (GOOD as u64, BAD as u64, 0),
        "{stats:?}"
    );
    if let Err(error) = first_connection.close().await {
        panic!("closing the first connection failed: {error}");
    }
    drop(first_connection);

    let second_seen = Seen::default();
    let second = bus(broker, &ns, vec![second_seen.handler("send", &pattern)], 1).await;
    let task = start(&second).await;
    let marker = message(&good_key, GOOD + BAD);
    let marker_id = marker.metadata.id.to_string();
    if let Err(error) = second.publish_message(marker).await {
        panic!("publishing the marker failed: {error}");
    }
    eventually("the marker is handled", &[&second], || {
        second_seen.distinct().contains(&marker_id)
    })
    .await;
    // a settled message coming back late would show here
    linger(Duration::from_millis(200)).await;
    let stats = stopped(second, task).await;
    let came_back: Vec<String> = second_seen
        .ids()
        .into_iter()
        .filter(|id| settled.contains(id))
        .collect();
    assert!(
        came_back.is_empty(),
        "{} settled message(s) delivered again to a new bus of the service: {came_back:?}",
        came_back.len()
    );
    assert_eq!(
        (second_seen.ids(), stats.deliveries),
        (vec![marker_id], 1),
        "the new bus gets the marker and nothing else, {stats:?}"
    );
    let dead = broker.dead_letters(&ns).await;
    assert_eq!(dead.len(), BAD, "each broken invoice dead-lettered once");
}

/// A dead letter keeps the envelope — id, body, key, version, content type, correlation
/// and causation ids, free headers — and adds the reason and the failed handlers. Raw bad
/// input published through [`Transport::publish`](crate::transport::Transport::publish) straight to
/// the service's queue (`Destination::Queue(service)`; on streams, to the stream of the
/// typed event's domain) — a malformed body for a typed handler, an unknown version, no
/// key — is dead-lettered too, and the consumer goes on.
pub async fn dead_letter_keeps_the_envelope(broker: &dyn Broker) {
    let ns = namespace();
    let refused_key = format!("{ns}.order.refused");
    let refuse = Handler::raw("refuse", refused_key.clone(), |_e: RawEvent, _ctx| async {
        Err::<(), _>(HandlerError::permanent("refused: out of stock"))
    });
    let probes: Arc<Mutex<Vec<u64>>> = Arc::default();
    let sink = Arc::clone(&probes);
    let probe_handler = Handler::typed("probe", move |probe: Probe, _ctx| {
        sink.lock().unwrap_or_else(|p| p.into_inner()).push(probe.n);
        async { Ok::<_, HandlerError>(()) }
    });
    let bus = bus(broker, &ns, vec![refuse, probe_handler], 10).await;
    let task = start(&bus).await;

    // a full envelope, refused by its handler
    let mut refused = Message::new(
        refused_key.clone(),
        Bytes::from_static(br#"{"sku":"KB-01","qty":2}"#),
    );
    let m = &mut refused.metadata;
    m.version = 3;
    m.content_type = "application/vnd.conformance+json".into();
    m.correlation_id = Some("conversation-7".into());
    m.causation_id = Some("cause-7".into());
    m.headers.insert("tenant".into(), "acme".into());
    m.headers.insert("trace".into(), "00-4bf92f35-01".into());
    if let Err(error) = bus.publish_message(refused.clone()).await {
        panic!("publish failed: {error}");
    }

    // raw bad input, then a good probe, straight to the service's queue (or the stream)
    let raw = broker.connect().await;
    let destination = straight_to(&*raw, &ns, Probe::KEY);
    let probe_message = |body: &'static [u8], version: u32| {
        let mut message = Message::new(Probe::KEY, Bytes::from_static(body));
        message.metadata.version = version;
        message
    };
    let malformed = probe_message(br#"{"n": "#, Probe::VERSION);
    let unknown_version = probe_message(br#"{"n": 1}"#, Probe::VERSION + 97);
    let mut no_key = probe_message(br#"{"n": 2}"#, Probe::VERSION);
    no_key.metadata.key = String::new();
    let good = probe_message(br#"{"n": 7}"#, Probe::VERSION);
    for message in [&malformed, &unknown_version, &no_key, &good] {
        let outgoing = Outgoing::new(message.clone(), destination.clone());
        if let Err(error) = raw.publish(outgoing).await {
            panic!(
                "publishing raw input {:?} to {destination:?} failed: {error}",
                message.metadata.key
            );
        }
    }
    eventually("four dead letters and the good probe", &[&bus], || {
        let stats = bus.stats();
        stats.dead_lettered + stats.acked >= 5
    })
    .await;
    let stats = bus.stats();
    stop(bus, task).await;
    let _ = raw.close().await;
    assert_eq!(
        (stats.deliveries, stats.dead_lettered, stats.acked),
        (5, 4, 1),
        "{stats:?}"
    );
    assert_eq!(
        *probes.lock().unwrap_or_else(|p| p.into_inner()),
        vec![7],
        "after the bad input, the consumer goes on and the typed handler gets the good probe only"
    );

    let dead = broker.dead_letters(&ns).await;
    assert_eq!(dead.len(), 4, "dead letters: {dead:#?}");
    let find = |sent: &Message| -> Message {
        match dead.iter().find(|d| d.metadata.id == sent.metadata.id) {
            Some(found) => found.clone(),
            None => panic!(
                "message {} ({:?}) is not in the dead-letter queue",
                sent.metadata.id, sent.metadata.key
            ),
        }
    };
    let reason = |m: &Message| m.metadata.headers.get(HEADER_DEATH_REASON).cloned();
    let failed = |m: &Message| m.metadata.headers.get(HEADER_FAILED_HANDLERS).cloned();

    let d = find(&refused);
    let (s, r) = (&refused.metadata, &d.metadata);
    assert_eq!(d.body, refused.body, "dead letter lost its body");
    assert_eq!(r.key, s.key, "dead letter lost its key");
    assert_eq!(r.version, s.version, "dead letter lost its version");
    assert_eq!(
        r.content_type, s.content_type,
        "dead letter lost its content type"
    );
    assert_eq!(
        r.correlation_id, s.correlation_id,
        "dead letter lost its correlation id"
    );
    assert_eq!(
        r.causation_id, s.causation_id,
        "dead letter lost its causation id"
    );
    for (name, value) in &s.headers {
        assert_eq!(
            r.headers.get(name),
            Some(value),
            "dead letter lost its header {name}"
        );
    }
    assert_eq!(failed(&d).as_deref(), Some("refuse"), "failed handlers");
    let why = reason(&d).unwrap_or_default();
    assert!(why.contains("out of stock"), "dead-letter reason {why:?}");

    for (sent, what, mentions, handlers) in [
        (&malformed, "a malformed body", "malformed", "probe"),
        (&unknown_version, "an unknown version", "99", "probe"),
        (&no_key, "no key", "key", ""),
    ] {
        let d = find(sent);
        assert_eq!(d.body, sent.body, "{what}: dead letter lost its body");
        // no handler failed on input that reached none: the header may be empty or absent
        assert_eq!(
            failed(&d).unwrap_or_default(),
            handlers,
            "{what}: failed handlers"
        );
        let why = reason(&d).unwrap_or_default();
        assert!(
            why.contains(mentions),
            "{what}: dead-letter reason {why:?} should mention {mentions:?}"
        );
    }
}

/// After [`Transport::close`](crate::transport::Transport::close): publish, declare and consume fail
/// with [`TransportError::Closed`] at once, a consumer of that connection ends, and a
/// second close is fine. What was confirmed before the close reaches a consumer on another
/// connection. After [`Consumer::cancel`](crate::transport::Consumer::cancel), `next()` returns
/// `None`, even with a message waiting.
pub async fn closed_transport_refuses(broker: &dyn Broker) {
    const COUNT: usize = 50;
    let ns = namespace();
    let key = format!("{ns}.audit.logged");
    let closing = broker.connect().await;
    let other = broker.connect().await;
    let subscription = raw_subscription(&*other, &ns, &key).prefetch(COUNT as u16);
    if let Err(error) = other.declare(&subscription).await {
        panic!("declaring {ns} failed: {error}");
    }
    let side = raw_subscription(&*closing, &format!("{ns}-side"), &format!("{ns}-side.#"));
    let mut side_consumer = match closing.consume(&side).await {
        Ok(consumer) => consumer,
        Err(error) => panic!("consuming {ns}-side failed: {error}"),
    };
    let mut sent = BTreeSet::new();
    for n in 0..COUNT {
        let message = message(&key, n);
        sent.insert(message.metadata.id.to_string());
        if let Err(error) = closing.publish(message.into()).await {
            panic!("publish {n} before the close failed: {error}");
        }
    }
    // a delivery taken on the closing connection and not settled before the close
    let held_message = message(&format!("{ns}-side.held"), 0);
    if let Err(error) = closing.publish(held_message.clone().into()).await {
        panic!("publishing to {ns}-side failed: {error}");
    }
    let held = match within(PATIENCE, "the side delivery", side_consumer.next()).await {
        Some(Ok(delivery)) => delivery,
        other => panic!("the side consumer got {other:?}, not the held message"),
    };

    // closing flushes outstanding work: bounded, not instant
    if let Err(error) = within(PATIENCE, "close", closing.close()).await {
        panic!("close failed: {error}");
    }
    if let Err(error) = at_once("a second close", closing.close()).await {
        panic!("close is idempotent, but a second close failed: {error}");
    }
    let refused = |what: &str, result: Result<(), TransportError>| match result {
        Err(TransportError::Closed) => {}
        Err(error) => panic!("{what} after close failed with {error:?}, not Closed"),
        Ok(()) => panic!("{what} after close succeeded"),
    };
    let late = message(&key, COUNT);
    refused(
        "publish",
        at_once("publish after close", closing.publish(late.clone().into())).await,
    );
    // send may refuse, or hand back a confirmation that does, at once
    let sent_late = match at_once("send after close", closing.send(late.into())).await {
        Ok(confirmation) => at_once("the confirmation of a send after close", confirmation).await,
        Err(error) => Err(error),
    };
    refused("send", sent_late);
    refused(
        "declare",
        at_once("declare after close", closing.declare(&subscription)).await,
    );
    refused(
        "consume",
        at_once("consume after close", closing.consume(&subscription))
            .await
            .map(drop),
    );
    match at_once(
        "next() of a consumer of the closed connection",
        side_consumer.next(),
    )
    .await
    {
        None | Some(Err(TransportError::Closed)) => {}
        Some(Ok(delivery)) => panic!("a consumer of a closed connection delivered {delivery:?}"),
        Some(Err(error)) => {
            panic!("a consumer of a closed connection failed with {error:?}, not Closed or None")
        }
    }
    // settling on a closed connection is an error, never reported as done (even while its
    // consumer is still around); the broker delivers the message again, as redelivered
    if let Ok(()) = held.acker.settle(Settlement::Ack).await {
        panic!("an ack on a closed connection was reported as done");
    }
    drop(side_consumer);
    let mut side_again = match other.consume(&side).await {
        Ok(consumer) => consumer,
        Err(error) => panic!("consuming {ns}-side on another connection failed: {error}"),
    };
    match within(PATIENCE, "the held message again", side_again.next()).await {
        Some(Ok(again)) => {
            assert_eq!(
                again.message.metadata.id, held_message.metadata.id,
                "the held message comes back"
            );
            // a stream reads it again from the stored offset, without a flag
            let requeues = other.capabilities().requeue;
            assert!(again.redelivered || !requeues, "flagged as redelivered");
            if let Err(error) = again.acker.settle(Settlement::Ack).await {
                panic!("acking the redelivered message failed: {error}");
            }
        }
        other => panic!("the held message did not come back: {other:?}"),
    }
    drop(side_again);

    let mut consumer = match other.consume(&subscription).await {
        Ok(consumer) => consumer,
        Err(error) => panic!("consuming {ns} on another connection failed: {error}"),
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let (mut got, mut deliveries) = (BTreeSet::new(), 0);
    while got.len() < COUNT {
        let delivery = match tokio::time::timeout_at(deadline, consumer.next()).await {
            Ok(Some(Ok(delivery))) => delivery,
            Ok(Some(Err(error))) => panic!("consuming on another connection failed: {error}"),
            Ok(None) => panic!("the consumer ended after {} of {COUNT} messages", got.len()),
            Err(_) => panic!(
                "only {} of the {COUNT} messages confirmed before the close arrived within {PATIENCE:?}",
                got.len()
            ),
        };
        deliveries += 1;
        got.insert(delivery.message.metadata.id.to_string());
        if let Err(error) = delivery.acker.settle(Settlement::Ack).await {
            panic!("acking failed: {error}");
        }
    }
    assert_eq!(got, sent, "messages confirmed before the close were lost");
    assert_eq!(
        deliveries, COUNT,
        "a message confirmed once was delivered twice"
    );

    if let Err(error) = consumer.cancel().await {
        panic!("cancelling the consumer failed: {error}");
    }
    if let Err(error) = other.publish(message(&key, COUNT + 1).into()).await {
        panic!("publishing on the open connection failed: {error}");
    }
    match at_once("next() after cancel", consumer.next()).await {
        None => {}
        Some(Ok(delivery)) => panic!("a cancelled consumer delivered {delivery:?}"),
        Some(Err(error)) => panic!("a cancelled consumer failed with {error:?} instead of ending"),
    }
    let _ = consumer.close().await;
    let _ = other.close().await;
}

/// With a retry delay below the bus's in-process limit, the handler is retried in process:
/// its next attempt starts no sooner than the delay after the failure, and not much later.
pub async fn retry_waits_its_delay(broker: &dyn Broker) {
    retry_waits(
        broker,
        Duration::from_millis(300),
        Duration::from_secs(1),
        Duration::from_secs(2),
    )
    .await;
}

/// With a retry delay above the bus's in-process limit, the delivery is settled with
/// [`Settlement::Retry`] and the transport delivers it again: the next attempt (attempt 2,
/// only the failed handler) starts no sooner than the delay after the failure, and within
/// a generous margin (a broker's delay queue).
pub async fn delayed_retry_waits_its_delay(broker: &dyn Broker) {
    retry_waits(
        broker,
        Duration::from_millis(400),
        Duration::from_millis(50),
        Duration::from_secs(5),
    )
    .await;
}

/// One attempt of [`retry_waits`]: its number, when it started, when it failed.
type AttemptTimes = (u32, Instant, Option<Instant>);

/// One handler that fails its first attempt, retried after `delay` (exponential, one
/// retry, no jitter) with the bus's in-process limit at `limit`.
async fn retry_waits(broker: &dyn Broker, delay: Duration, limit: Duration, margin: Duration) {
    let ns = namespace();
    let key = format!("{ns}.payment.capture");
    let delayed = delay > limit;
    let attempts: Arc<Mutex<Vec<AttemptTimes>>> = Arc::default();
    let log = Arc::clone(&attempts);
    let capture = Handler::raw("capture", key.clone(), move |_e: RawEvent, ctx: Context| {
        let log = Arc::clone(&log);
        async move {
            let started = Instant::now();
            let attempt = ctx.attempt();
            let fails = attempt == 1;
            let failed = fails.then(Instant::now);
            log.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((attempt, started, failed));
            if fails {
                Err(HandlerError::new("gateway busy"))
            } else {
                Ok(())
            }
        }
    });
    let audit = Seen::default();
    let builder = builder(broker.connect().await, &ns, 10)
        .retry(RetryPolicy::exponential(1, delay).jitter(0.0))
        .in_process_retry_limit(limit);
    let bus = build(
        builder,
        vec![capture, audit.handler("audit", &format!("{ns}.payment.*"))],
    )
    .await;
    let task = start(&bus).await;
    publish_all(&bus, &key, 1).await;
    eventually("the retried delivery is acked", &[&bus], || {
        bus.stats().acked >= 1
    })
    .await;
    // a further attempt would show here
    linger(Duration::from_millis(100)).await;
    let stats = bus.stats();
    stop(bus, task).await;
    let attempts = attempts.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let numbers: Vec<u32> = attempts.iter().map(|(n, _, _)| *n).collect();
    assert_eq!(numbers, [1, 2], "one failure, then one retry that succeeds");
    let (Some(failed), retried) = (attempts[0].2, attempts[1].1) else {
        unreachable!("the first attempt fails")
    };
    let waited = retried.duration_since(failed);
    let how = if delayed {
        "the retry delivered again by the transport"
    } else {
        "the retry in process"
    };
    assert!(
        waited >= delay,
        "{how} started {waited:?} after the failure, sooner than its delay {delay:?}"
    );
    assert!(
        waited <= delay + margin,
        "{how} started {waited:?} after the failure, later than its delay {delay:?} + {margin:?}"
    );
    assert_eq!(audit.len(), 1, "the handler that succeeded ran once");
    let expected = if delayed { (2, 1, 1) } else { (1, 0, 1) };
    assert_eq!(
        (stats.deliveries, stats.retried, stats.acked),
        expected,
        "(deliveries, retried, acked) {how}: {stats:?}"
    );
}

/// [`Transport::request`](crate::transport::Transport::request) gets the reply a responder sends to
/// the request's `reply_to` (`Destination::Reply`), matched by correlation id: ten
/// concurrent requests on one connection, each its own answer.
pub async fn request_reply(broker: &dyn Broker) {
    const REQUESTS: usize = 10;
    let ns = namespace();
    let key = format!("{ns}.price.quote");
    let answer_key = format!("{ns}.price.quoted");
    let replies = broker.connect().await;
    let answering = Arc::clone(&replies);
    let quote = Handler::raw("quote", key.clone(), move |event: RawEvent, _ctx| {
        let (replies, answer_key) = (Arc::clone(&answering), answer_key.clone());
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
            let mut reply = Message::new(
                answer_key,
                Bytes::from(format!("{{\"n\":{n},\"cents\":{}}}", n * 100)),
            );
            reply.metadata.correlation_id = event.metadata().correlation_id.clone();
            replies
                .publish(Outgoing::new(reply, Destination::Reply(reply_to)))
                .await?;
            Ok::<_, HandlerError>(())
        }
    });
    let responder = bus_on(replies, &ns, vec![quote], 10).await;
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
    let _ = requester.close().await;
    assert_eq!(stats.acked, REQUESTS as u64, "{stats:?}");
}

/// A request nobody answers (routed to a queue without consumers) fails with
/// [`TransportError::TimedOut`] at its bound: not before, and not much after.
pub async fn request_times_out(broker: &dyn Broker) {
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
