//! Shutdown settles explicitly: unfinished deliveries are requeued by the bus, counted as
//! what happened, the consumer and then the transport are closed.

use std::time::Duration;

use pubsub::prelude::*;
use pubsub::{
    Bus, Error, Handler, HandlerSelection, Isolation, MemoryTransport, testing::TestHarness,
    transport::TransportError,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(domain = "sd", action = "job")]
struct Job {
    id: u32,
    hang: bool,
}

/// Finishes at once, or hangs for a minute.
fn worker() -> Handler {
    Handler::typed("worker", |job: Job, _c: Context| async move {
        if job.hang {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        Ok::<_, HandlerError>(())
    })
}

async fn requeue_at_the_deadline(isolation: Isolation) {
    const QUICK: u32 = 200;
    const HANGING: u32 = 3;
    let broker = MemoryTransport::new();
    let h = TestHarness::start_on(
        Bus::builder()
            .select_handlers(HandlerSelection::None)
            .isolation(isolation)
            .prefetch(50)
            .shutdown_timeout(Duration::from_millis(100))
            .handler(worker()),
        broker.clone(),
    )
    .await
    .unwrap();
    for id in 0..HANGING {
        h.publish(&Job { id, hang: true }).await.unwrap();
    }
    for id in 0..QUICK {
        h.publish(&Job { id, hang: false }).await.unwrap();
    }
    h.wait_until("the quick jobs are acked", |h| {
        h.bus().stats().acked == u64::from(QUICK)
    })
    .await
    .unwrap();
    let bus = h.bus().clone();
    h.shutdown().await.unwrap();
    let stats = bus.stats();
    assert_eq!(stats.acked, u64::from(QUICK), "{stats:?}");
    assert_eq!(stats.requeued, u64::from(HANGING), "{stats:?}");
    assert_eq!(stats.in_flight, 0, "{stats:?}");
    assert_eq!(stats.settle_errors, 0, "{stats:?}");
    let depth = broker.queue_depth("test").unwrap();
    assert_eq!(
        (depth.ready, depth.unacked, depth.consumers),
        (HANGING as usize, 0, 0),
        "exactly the requeued deliveries wait in the queue, the consumer is closed: {depth:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_requeues_exactly_the_unfinished_deliveries_with_task_isolation() {
    requeue_at_the_deadline(Isolation::Task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_requeues_exactly_the_unfinished_deliveries_inline() {
    requeue_at_the_deadline(Isolation::Inline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeued_deliveries_come_back_flagged_as_redelivered() {
    let broker = MemoryTransport::new();
    let first = TestHarness::start_on(
        Bus::builder()
            .select_handlers(HandlerSelection::None)
            .shutdown_timeout(Duration::from_millis(50))
            .handler(worker()),
        broker.clone(),
    )
    .await
    .unwrap();
    first.publish(&Job { id: 1, hang: true }).await.unwrap();
    first
        .wait_until("the job runs", |h| h.bus().stats().in_flight == 1)
        .await
        .unwrap();
    first.shutdown().await.unwrap();
    let redelivered = Handler::raw(
        "redelivered",
        "sd.job",
        |_e: RawEvent, ctx: Context| async move {
            assert!(ctx.redelivered());
            assert_eq!(ctx.delivery_count(), Some(2));
            Ok::<_, HandlerError>(())
        },
    );
    let second = TestHarness::start_on(
        Bus::builder()
            .select_handlers(HandlerSelection::None)
            .handler(redelivered),
        broker,
    )
    .await
    .unwrap();
    second.settled().await.unwrap();
    assert_eq!(second.calls("redelivered").len(), 1);
    assert!(second.failures("redelivered").is_empty());
    second.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_closes_the_transport_after_the_run() {
    let broker = MemoryTransport::new();
    let bus = Bus::builder()
        .service("closing")
        .transport(broker.connection())
        .select_handlers(HandlerSelection::None)
        .handler(worker())
        .build()
        .await
        .unwrap();
    let task = bus.spawn().await.unwrap();
    bus.publish(&Job { id: 1, hang: false }).await.unwrap();
    broker.wait_idle(Duration::from_secs(5)).await.unwrap();
    bus.close().await.unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(broker.queue_depth("closing").unwrap().consumers, 0);
    let refused = bus.publish(&Job { id: 2, hang: false }).await;
    assert!(
        matches!(refused, Err(Error::Transport(TransportError::Closed))),
        "{refused:?}"
    );
    // the broker itself, through another connection, is still there
    assert!(broker.queue_depth("closing").is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_read_after_settled_are_exact() {
    let h = TestHarness::start(
        Bus::builder()
            .select_handlers(HandlerSelection::None)
            .handler(worker()),
    )
    .await
    .unwrap();
    for n in 1..=300u64 {
        h.publish(&Job {
            id: n as u32,
            hang: false,
        })
        .await
        .unwrap();
        h.settled().await.unwrap();
        let stats = h.bus().stats();
        assert_eq!(
            (stats.deliveries, stats.acked),
            (n, n),
            "after {n}: {stats:?}"
        );
    }
    h.shutdown().await.unwrap();
}

/// A transport whose one delivery never settles: its acker's future stays pending, as a
/// channel that stopped answering would leave it.
struct Stuck;

struct StuckConsumer {
    delivered: bool,
}

struct NeverSettles;

#[async_trait::async_trait]
impl pubsub::transport::Acker for NeverSettles {
    async fn settle(
        self: Box<Self>,
        _: pubsub::transport::Settlement,
    ) -> Result<(), TransportError> {
        std::future::pending().await
    }
}

#[async_trait::async_trait]
impl pubsub::transport::Consumer for StuckConsumer {
    async fn next(&mut self) -> Option<Result<pubsub::transport::Delivery, TransportError>> {
        if std::mem::replace(&mut self.delivered, true) {
            return std::future::pending().await;
        }
        let body = serde_json::to_vec(&Job { id: 1, hang: false }).expect("encodes");
        let message = std::sync::Arc::new(Message::new(Job::KEY, body));
        Some(Ok(pubsub::transport::Delivery::new(
            message,
            false,
            Box::new(NeverSettles),
        )))
    }

    async fn cancel(&mut self) -> Result<(), TransportError> {
        Ok(())
    }
}

#[async_trait::async_trait]
impl pubsub::transport::Transport for Stuck {
    fn name(&self) -> &'static str {
        "stuck"
    }

    fn capabilities(&self) -> pubsub::transport::Capabilities {
        pubsub::transport::Capabilities::queue()
    }

    async fn send(
        &self,
        _: pubsub::transport::Outgoing,
    ) -> Result<pubsub::transport::Confirmation, TransportError> {
        Ok(pubsub::transport::Confirmation::ready(Ok(())))
    }

    async fn declare(&self, _: &pubsub::transport::Subscription) -> Result<(), TransportError> {
        Ok(())
    }

    async fn consume(
        &self,
        _: &pubsub::transport::Subscription,
    ) -> Result<Box<dyn pubsub::transport::Consumer>, TransportError> {
        Ok(Box::new(StuckConsumer { delivered: false }))
    }

    async fn close(&self) -> Result<(), TransportError> {
        Ok(())
    }
}

/// A settlement that never ends does not hold the shutdown past its timeout plus the
/// margin (3 s; paused time here): counted as a settle error, and the shutdown completes.
#[tokio::test(start_paused = true)]
async fn a_settlement_that_never_ends_does_not_hang_the_shutdown() {
    let bus = Bus::builder()
        .service("stuck")
        .transport(Stuck)
        .select_handlers(HandlerSelection::None)
        .shutdown_timeout(Duration::from_millis(100))
        .handler(worker())
        .build()
        .await
        .expect("bus");
    let running = bus.spawn().await.expect("running");
    while bus.stats().deliveries == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bus.shutdown();
    let bound = Duration::from_millis(100) + Duration::from_secs(3);
    let ended = tokio::time::timeout(bound, running)
        .await
        .expect("the bus stopped within its shutdown timeout and the margin");
    ended.expect("bus task").expect("bus run");
    let stats = bus.stats();
    assert_eq!(
        (stats.settle_errors, stats.acked, stats.in_flight),
        (1, 0, 0),
        "{stats:?}"
    );
}
