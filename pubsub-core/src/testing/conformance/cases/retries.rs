//! Retries: failed handlers are retried per policy and dead-lettered after the last
//! attempt; a retry waits its delay, in process or through the transport's delayed
//! redelivery.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::context::Context;
use crate::handler::Handler;
use crate::handler_error::HandlerError;
use crate::handler_input::RawEvent;
use crate::headers::HEADER_FAILED_HANDLERS;
use crate::retry::RetryPolicy;
use crate::testing::conformance::Broker;
use crate::testing::conformance::support::{
    Seen, build, builder, bus, eventually, linger, namespace, publish_all, start, stop,
};

/// Failed handlers are retried per policy; the one that recovers is acked, the one that
/// never does is dead-lettered after exactly 1 + retries attempts.
pub(crate) async fn retry_then_dead_letter(broker: &dyn Broker) {
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

/// With a retry delay below the bus's in-process limit, the handler is retried in process:
/// its next attempt starts no sooner than the delay after the failure, and not much later.
pub(crate) async fn retry_waits_its_delay(broker: &dyn Broker) {
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
pub(crate) async fn delayed_retry_waits_its_delay(broker: &dyn Broker) {
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
