//! A long retry leaves the prefetch window: the delivery is settled and the transport
//! delivers the message again after the backoff, carrying the attempts spent.

use std::time::Duration;

use pubsub::prelude::*;
use pubsub::{Bus, Handler, HandlerSelection, RetryPolicy, testing::TestHarness};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(domain = "dr", action = "task")]
struct Task {
    id: u32,
    bad: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_failing_messages_does_not_stop_the_service() {
    const PREFETCH: u16 = 2;
    let worker = Handler::typed("worker", |task: Task, _c: Context| async move {
        if task.bad {
            return Err(HandlerError::new("upstream is down"));
        }
        Ok::<_, HandlerError>(())
    })
    .use_retry_policy("patient");
    let h = TestHarness::start(
        Bus::builder()
            .select_handlers(HandlerSelection::None)
            .prefetch(PREFETCH)
            // one retry after 1 s, without jitter: longer than the in-process limit
            .define_retry_policy(
                "patient",
                RetryPolicy::exponential(1, Duration::from_secs(1)).jitter(0.0),
            )
            .in_process_retry_limit(Duration::from_millis(200))
            .handler(worker),
    )
    .await
    .unwrap()
    .with_timeout(Duration::from_secs(10));
    // as many bad messages as the prefetch, then a good one
    for id in 0..u32::from(PREFETCH) {
        h.publish(&Task { id, bad: true }).await.unwrap();
    }
    h.publish(&Task { id: 99, bad: false }).await.unwrap();
    h.wait_until("the good task is handled", |h| {
        h.calls("worker").iter().any(|c| c.error.is_none())
    })
    .await
    .unwrap();
    // Retried in process, the bad ones would hold both prefetch slots until their second
    // attempts: the good one could only run after those. Here it ran before them.
    let log: Vec<(u32, bool)> = h
        .calls("worker")
        .iter()
        .map(|c| (c.attempt, c.error.is_none()))
        .collect();
    let good = log.iter().position(|(_, ok)| *ok).unwrap();
    assert!(
        log[..good].iter().all(|(attempt, _)| *attempt == 1),
        "the good task waited for the retries: {log:?}"
    );
    // they come back with their attempts counted, fail again, and are dead-lettered
    h.settled().await.unwrap();
    let dead = h.dead_letters();
    assert_eq!(dead.len(), usize::from(PREFETCH));
    for d in &dead {
        assert!(d.reason.contains("after 2 attempt(s)"), "{}", d.reason);
    }
    let attempts: Vec<u32> = h.failures("worker").iter().map(|c| c.attempt).collect();
    assert_eq!(
        attempts.iter().filter(|a| **a == 1).count(),
        2,
        "{attempts:?}"
    );
    assert_eq!(
        attempts.iter().filter(|a| **a == 2).count(),
        2,
        "{attempts:?}"
    );
    let stats = h.bus().stats();
    assert_eq!(
        (stats.retried, stats.dead_lettered, stats.acked),
        (2, 2, 1),
        "{stats:?}"
    );
    h.shutdown().await.unwrap();
}
