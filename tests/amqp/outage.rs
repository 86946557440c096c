//! The AMQP transport when the broker goes away under it, as a TCP proxy between the two
//! makes it look (`support::proxy`): connections reset at once (a broker SIGKILLed), the
//! port refusing (a broker down), connections that take bytes and answer nothing (a
//! network partition). The shared broker itself is never touched.
//!
//! - Acks in flight when the connection is cut fail at once, as settle errors, and
//!   nothing is lost once the broker is back.
//! - A settlement that the broker does not answer shows in `bus.health()`.
//! - A publish that fails reports the wait since it started.
//! - Once the port accepts again, every connection is back within about 2 s.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pubsub::amqp::{AmqpConfig, AmqpTransport};
use pubsub::prelude::*;
use pubsub::{Handler, HandlerSelection, RetryPolicy, transport::Transport};

use crate::support::counted::{Counts, Tick, lock, publish, time_to_recover, wait_until};
use crate::support::proxy::Proxy;
use crate::support::{self, broker};

/// A namespace (`conf-…`), a proxy to the broker, and the broker's configuration through
/// the proxy with the namespace's exchange; `None`: skipped.
async fn proxied(test: &str) -> Option<(String, Proxy, AmqpConfig, AmqpConfig)> {
    let direct = support::amqp_config()?;
    let address = broker::amqp_address()?;
    let url = broker::amqp_url()?;
    let ns = support::namespace(&format!("conf-{test}"));
    let proxy = Proxy::start(&address).await;
    let through = url.replacen(&address, &format!("127.0.0.1:{}", proxy.port()), 1);
    assert_ne!(through, url, "the proxy's address in the URL");
    let exchange = format!("{ns}.events");
    let config = AmqpConfig::from_url(&through)
        .expect("the proxied URL")
        .exchange(exchange.clone());
    Some((ns, proxy, config, direct.exchange(exchange)))
}

/// A bus of `service` on `transport` with `handler`, prefetch 100.
async fn consuming(transport: &AmqpTransport, service: &str, handler: Handler) -> Bus {
    Bus::builder()
        .service(service)
        .transport(transport.clone())
        .select_handlers(HandlerSelection::None)
        .prefetch(100)
        .retry(RetryPolicy::exponential(3, Duration::from_millis(20)))
        .shutdown_timeout(Duration::from_secs(5))
        .handler(handler)
        .build()
        .await
        .expect("building the bus")
}

/// Counts each tick, after `pause`.
fn slow_counting(counts: &Arc<Counts>, pause: Duration) -> Handler {
    let counts = Arc::clone(counts);
    Handler::typed("count", move |tick: Tick, _: Context| {
        let counts = Arc::clone(&counts);
        async move {
            tokio::time::sleep(pause).await;
            *lock(&counts.handled).entry(tick.n).or_default() += 1;
            Ok::<_, HandlerError>(())
        }
    })
}

/// Removes the queues of `ns` (and their dead-letter queues) with a plain AMQP channel.
async fn delete_queues(config: &AmqpConfig, ns: &str) {
    let Ok(connection) = pubsub::amqp::connect(config, "cleanup").await else {
        return;
    };
    if let Ok(channel) = connection.create_channel().await {
        for queue in [format!("{ns}-svc"), format!("{ns}-svc.dead-letters")] {
            let _ = channel
                .queue_delete(queue.as_str().into(), Default::default())
                .await;
        }
        let _ = channel
            .exchange_delete(format!("{ns}.events").as_str().into(), Default::default())
            .await;
        let _ = channel
            .exchange_delete(format!("{ns}-svc.dlx").as_str().into(), Default::default())
            .await;
    }
    let _ = connection.close(200, "cleaned".into()).await;
}

/// Prefetch 100, a handler of 100 ms: the consuming connection is reset while acks are in
/// flight, and the port then refuses. Every delivery in flight ends within 5 s (the bus's
/// own bound is 60 s), those whose ack could not be taken as settle errors; once the port
/// accepts again every event published is handled (duplicates allowed, none lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_in_flight_when_the_connection_is_cut_end_at_once() {
    let Some((ns, proxy, config, direct)) = proxied("cutacks").await else {
        return;
    };
    let transport =
        AmqpTransport::new(config.backoff(Duration::from_millis(50), Duration::from_secs(1)));
    let counts = Arc::new(Counts::default());
    let service = format!("{ns}-svc");
    let bus = consuming(
        &transport,
        &service,
        slow_counting(&counts, Duration::from_millis(100)),
    )
    .await;
    // declared before publishing: nothing published is unroutable
    let running = bus.spawn().await.expect("running the bus");
    let publishing = AmqpTransport::new(direct.clone());
    let publisher = Bus::publisher(format!("{ns}-shop"), publishing.clone());
    const N: u64 = 3_000;
    let (confirmed, failed) = publish(&publisher, 0..N, 8).await;
    assert!(failed.is_empty(), "{failed:?}");

    let mut rounds = Vec::new();
    for round in 1..=3_u64 {
        wait_until("handling goes on", Duration::from_secs(60), || {
            counts.distinct() as u64 >= round * N / 5
        })
        .await;
        let before = bus.stats();
        let errors_before = before.settle_errors;
        eprintln!("round {round}: before the cut {before:?}");
        proxy.refuse();
        proxy.cut();
        let cut = Instant::now();
        wait_until(
            "every delivery in flight ended (the settle bound is 60 s)",
            Duration::from_secs(5),
            || bus.stats().in_flight == 0,
        )
        .await;
        let drained = cut.elapsed();
        let settle_errors = bus.stats().settle_errors - errors_before;
        rounds.push((drained, settle_errors));
        proxy.restore();
        proxy.listening().await;
    }
    wait_until("every event handled", Duration::from_secs(90), || {
        counts.missing(&confirmed).is_empty()
    })
    .await;
    let (dup_events, _) = counts.duplicates();
    eprintln!(
        "acks cut x3: published {N} / confirmed {} / handled {} / duplicates {dup_events} / per cut (in flight drained in, settle errors): {rounds:?}",
        confirmed.len(),
        counts.distinct(),
    );
    assert!(
        rounds.iter().map(|(_, errors)| errors).sum::<u64>() > 0,
        "the acks the broker could not take are settle errors: {rounds:?}"
    );
    assert_eq!(confirmed, (0..N).collect::<BTreeSet<_>>());
    bus.shutdown();
    running.await.expect("the bus task").expect("the bus run");
    transport.close().await.expect("closing");
    publishing.close().await.expect("closing");
    delete_queues(&direct, &ns).await;
}

/// Through a proxy that takes bytes and answers nothing, a dead letter's copy is never
/// confirmed: the settlement stays under way, and `bus.health()` says so (unhealthy,
/// with the stuck settlement counted) while the connection itself still looks up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_settlement_shows_in_health() {
    let Some((ns, proxy, config, direct)) = proxied("stuck").await else {
        return;
    };
    let transport = AmqpTransport::new(config.publish_timeout(Duration::from_secs(30)));
    let service = format!("{ns}-svc");
    // fails once told to: after the proxy went silent
    let (go, told) = tokio::sync::watch::channel(false);
    let failing = Handler::typed("fail", move |_: Tick, _: Context| {
        let mut told = told.clone();
        async move {
            let _ = told.wait_for(|go| *go).await;
            Err::<(), _>(HandlerError::permanent("refused"))
        }
    });
    let bus = consuming(&transport, &service, failing).await;
    let running = bus.spawn().await.expect("running the bus");
    wait_until("healthy", Duration::from_secs(10), || {
        bus.health().is_healthy()
    })
    .await;
    let publishing = AmqpTransport::new(direct.clone());
    let publisher = Bus::publisher(format!("{ns}-shop"), publishing.clone());
    publisher
        .publish(&Tick { n: 1, note: None })
        .await
        .expect("published");
    wait_until("the delivery arrives", Duration::from_secs(10), || {
        bus.stats().in_flight > 0
    })
    .await;
    // its dead-letter copy goes into the silence
    proxy.black_hole();
    go.send_replace(true);
    let reported = crate::support::counted::wait_for(Duration::from_secs(15), || {
        let health = bus.health();
        !health.is_healthy()
            && health
                .transport
                .consumers
                .iter()
                .any(|c| c.stuck_settlements > 0)
    })
    .await;
    let health = bus.health();
    eprintln!(
        "health with a settlement stuck: {:?} {health:#?}",
        bus.stats()
    );
    assert!(reported, "health reports the stuck settlement");
    assert!(
        health
            .transport
            .consumers
            .iter()
            .all(|c| c.oldest_settlement.is_some()),
        "{health:#?}"
    );
    proxy.restore();
    proxy.cut();
    bus.shutdown();
    running.await.expect("the bus task").expect("the bus run");
    transport.close().await.expect("closing");
    publishing.close().await.expect("closing");
    delete_queues(&direct, &ns).await;
}

/// The first duration written in `text` (`2.0s`, `150ms`, `11.057µs`).
fn first_duration(text: &str) -> Option<Duration> {
    let units = [("µs", 1e-6), ("ms", 1e-3), ("ns", 1e-9), ("s", 1.0)];
    let bytes = text.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at].is_ascii_digit() && (at == 0 || !bytes[at - 1].is_ascii_alphanumeric()) {
            let end = text[at..]
                .find(|c: char| !c.is_ascii_digit() && c != '.')
                .map_or(text.len(), |n| at + n);
            let rest = &text[end..];
            for (unit, scale) in units {
                if rest.starts_with(unit)
                    && !rest[unit.len()..].starts_with(|c: char| c.is_alphanumeric())
                    && let Ok(number) = text[at..end].parse::<f64>()
                {
                    return Some(Duration::from_secs_f64(number * scale));
                }
            }
            at = end;
        } else {
            at += 1;
        }
    }
    None
}

#[test]
fn durations_are_read_from_error_text() {
    assert_eq!(
        first_duration("no connection at amqp://h:5673/%2f after waiting 3.0s (x 1s)"),
        Some(Duration::from_secs(3))
    );
    assert_eq!(
        first_duration("for 11.057µs"),
        Some(Duration::from_nanos(11_057))
    );
    assert_eq!(
        first_duration("took 150ms"),
        Some(Duration::from_millis(150))
    );
}

/// A publish written while the connection takes bytes and answers nothing, whose
/// connection is then reset and refused: it fails at its publish timeout (3 s), and its
/// error reports the wait since the publish started, not since its last step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_publish_reports_the_wait_since_it_started() {
    let Some((ns, proxy, config, direct)) = proxied("wait").await else {
        return;
    };
    const TIMEOUT: Duration = Duration::from_secs(3);
    let transport = AmqpTransport::new(
        config
            .publish_timeout(TIMEOUT)
            .backoff(Duration::from_millis(50), Duration::from_millis(200)),
    );
    let publisher = Bus::publisher(format!("{ns}-shop"), transport.clone());
    // connected (nothing is bound to the exchange: unroutable is fine)
    let _ = publisher.publish(&Tick { n: 0, note: None }).await;
    wait_until("connected", Duration::from_secs(10), || {
        transport.health().is_healthy() && !transport.health().connections.is_empty()
    })
    .await;
    proxy.black_hole();
    let started = Instant::now();
    let publishing = {
        let publisher = publisher.clone();
        tokio::spawn(async move { publisher.publish(&Tick { n: 1, note: None }).await })
    };
    // a third of the timeout spent waiting for a confirm that cannot come, then the
    // connection is lost, and the publish waits for another until its timeout
    tokio::time::sleep(TIMEOUT / 3).await;
    proxy.refuse();
    proxy.cut();
    let error = publishing
        .await
        .expect("the publishing task")
        .expect_err("no broker, no confirm");
    let took = started.elapsed();
    let text = error.to_string();
    let reported = first_duration(&text).unwrap_or_else(|| panic!("no wait in {text:?}"));
    eprintln!("publish failed after {took:?}, reporting {reported:?}: {text}");
    assert!(
        took.abs_diff(reported) < Duration::from_millis(500),
        "the error reports {reported:?}, the publish waited {took:?}: {text}"
    );
    assert!(reported >= TIMEOUT - Duration::from_millis(100), "{text}");
    transport.close().await.expect("closing");
    delete_queues(&direct, &ns).await;
}

/// The publisher's and the consumer's connections lost (reset) and refused for a while
/// with their backoff at its cap (8 s from the first wait): once the port accepts again,
/// the first publish is confirmed and the bus is healthy within 2.5 s (the port is probed
/// between attempts, and a connection back ends the other's wait).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_is_back_soon_after_the_broker() {
    let Some((ns, proxy, config, direct)) = proxied("back").await else {
        return;
    };
    const CAP: Duration = Duration::from_secs(8);
    let transport = AmqpTransport::new(config.backoff(CAP, CAP));
    let counts = Arc::new(Counts::default());
    let bus = consuming(
        &transport,
        &format!("{ns}-svc"),
        slow_counting(&counts, Duration::ZERO),
    )
    .await;
    let running = bus.spawn().await.expect("running the bus");
    bus.publish(&Tick { n: 0, note: None })
        .await
        .expect("published before the outage");
    wait_until("healthy", Duration::from_secs(10), || {
        bus.health().is_healthy()
    })
    .await;

    proxy.refuse();
    proxy.cut();
    wait_until("both connections down", Duration::from_secs(10), || {
        let health = transport.health();
        health.connections.len() == 2
            && !health.is_healthy()
            && health
                .connections
                .iter()
                .all(|c| c.state == pubsub::health::ConnectionState::Down)
    })
    .await;
    // past the first attempts: every connection waits its capped backoff now
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.restore();
    proxy.listening().await;
    let (confirmed, healthy) = time_to_recover(&bus).await;
    eprintln!(
        "amqp, port reopened after its backoff reached {CAP:?}: first confirm in {confirmed:?}, healthy in {healthy:?}"
    );
    assert!(
        confirmed <= Duration::from_millis(2500) && healthy <= Duration::from_millis(2500),
        "first confirm {confirmed:?}, healthy {healthy:?}"
    );
    bus.shutdown();
    running.await.expect("the bus task").expect("the bus run");
    transport.close().await.expect("closing");
    delete_queues(&direct, &ns).await;
}
