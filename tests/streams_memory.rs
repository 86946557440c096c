//! Services reading streams on the in-memory broker: handlers unit-tested with the
//! harness, offsets stored after handling, the error stream, and what the broker shows.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use pubsub::prelude::*;
use pubsub::{
    Bus, Handler, HandlerSelection, MemoryTransport, RetryPolicy, StartAt, StreamConsumption,
    TestHarness,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(domain = "ledger", action = "posted")]
struct Posted {
    n: u32,
}

/// Counts calls; fails permanently on the given `n`.
fn ledger(calls: Arc<AtomicU32>, poison: Option<u32>) -> Handler {
    Handler::typed("ledger", move |event: Posted, _c: Context| {
        let calls = Arc::clone(&calls);
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            if Some(event.n) == poison {
                return Err(HandlerError::permanent(format!("cannot post {}", event.n)));
            }
            Ok::<_, HandlerError>(())
        }
    })
}

fn builder(calls: &Arc<AtomicU32>, poison: Option<u32>) -> pubsub::BusBuilder {
    Bus::builder()
        .service("books")
        .select_handlers(HandlerSelection::None)
        .handler(ledger(Arc::clone(calls), poison))
        .retry(RetryPolicy::exponential(2, Duration::from_millis(1)))
        .streams(StreamConsumption::new().store_every(1000, Duration::from_secs(60)))
}

#[tokio::test]
async fn the_harness_runs_a_stream_service_and_a_failure_lands_in_its_error_stream() {
    let broker = MemoryTransport::streams();
    let calls = Arc::new(AtomicU32::new(0));
    let h = TestHarness::start_on(builder(&calls, Some(2)), broker.clone())
        .await
        .unwrap();
    for n in 0..5 {
        h.publish(&Posted { n }).await.unwrap();
    }
    h.settled().await.unwrap();
    assert_eq!(
        h.consumed::<Posted>("ledger").len(),
        5,
        "each event once per delivery"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        5,
        "a permanent failure is not retried"
    );
    let stats = h.bus().stats();
    assert_eq!((stats.acked, stats.dead_lettered), (4, 1));
    let dead = h.single_dead_letter();
    assert_eq!(dead.failed_handlers, ["ledger"]);
    assert!(dead.reason.contains("cannot post 2"), "{}", dead.reason);
    let [entry] = <[_; 1]>::try_from(broker.error_stream("books").unwrap()).unwrap();
    assert_eq!(entry.stream.as_deref(), Some("events.ledger"));
    assert_eq!(entry.offset, Some(2));
    assert_eq!(broker.stream_length("events.ledger").unwrap(), 5);
    // stored every 1000 events or minute: nothing yet; at shutdown, everything settled
    assert_eq!(
        broker.stored_offset("events.ledger", "books").unwrap(),
        None
    );
    h.shutdown().await.unwrap();
    assert_eq!(
        broker.stored_offset("events.ledger", "books").unwrap(),
        Some(4)
    );
}

#[tokio::test]
async fn a_restarted_service_resumes_after_its_stored_offset() {
    let broker = MemoryTransport::streams();
    let calls = Arc::new(AtomicU32::new(0));
    let h = TestHarness::start_on(builder(&calls, None), broker.clone())
        .await
        .unwrap();
    for n in 0..3 {
        h.publish(&Posted { n }).await.unwrap();
    }
    h.settled().await.unwrap();
    h.shutdown().await.unwrap();
    let publisher = Bus::publisher("clerk", broker.clone());
    for n in 3..7 {
        publisher.publish(&Posted { n }).await.unwrap();
    }
    let again = Arc::new(AtomicU32::new(0));
    let h = TestHarness::start_on(builder(&again, None), broker.clone())
        .await
        .unwrap();
    h.settled().await.unwrap();
    let seen: Vec<u32> = h
        .consumed::<Posted>("ledger")
        .into_iter()
        .map(|p| p.n)
        .collect();
    assert_eq!(seen, [3, 4, 5, 6], "resumed after offset 2, skipped none");
    h.shutdown().await.unwrap();
    assert_eq!(
        broker.stored_offset("events.ledger", "books").unwrap(),
        Some(6)
    );
}

#[tokio::test]
async fn streams_on_a_queue_transport_fail_to_build() {
    let calls = Arc::new(AtomicU32::new(0));
    let error = builder(&calls, None)
        .transport(MemoryTransport::new())
        .build()
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("stream-backed transport"),
        "{error}"
    );
}

#[tokio::test]
async fn a_wildcard_domain_needs_known_domains() {
    let wildcard = Handler::raw("all", "*.posted", |_: RawEvent, _: Context| async {
        Ok::<_, HandlerError>(())
    });
    let build = |consumption: StreamConsumption| {
        Bus::builder()
            .service("watch")
            .transport(MemoryTransport::streams())
            .select_handlers(HandlerSelection::None)
            .handler(wildcard.clone())
            .streams(consumption)
            .build()
    };
    // the registry of this test binary knows no handler: no domain to stand for `*`
    let error = build(StreamConsumption::new()).await.unwrap_err();
    assert!(error.to_string().contains("domains"), "{error}");
    let bus = build(
        StreamConsumption::new()
            .domains(["ledger", "shop"])
            .start_at(StartAt::First),
    )
    .await
    .unwrap();
    let _ = bus;
}
