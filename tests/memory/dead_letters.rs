//! Dead letters that end poison loops: bounded reasons, replay that runs only the failed
//! handlers, and a delivery-count limit for messages that kill their consumer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use pubsub::prelude::*;
use pubsub::{
    Bus, Handler, HandlerSelection, MemoryTransport, RetryPolicy,
    testing::TestHarness,
    transport::{Subscription, Transport},
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(domain = "dl", action = "signed-up")]
struct SignedUp {
    email: String,
}

fn counting(name: &str, count: Arc<AtomicU32>) -> Handler {
    Handler::typed(name, move |_e: SignedUp, _c: Context| {
        let count = Arc::clone(&count);
        async move {
            count.fetch_add(1, Ordering::SeqCst);
            Ok::<_, HandlerError>(())
        }
    })
}

/// Fails permanently while `down` is set.
fn crm(down: Arc<AtomicBool>, count: Arc<AtomicU32>) -> Handler {
    Handler::typed("crm", move |_e: SignedUp, _c: Context| {
        let (down, count) = (Arc::clone(&down), Arc::clone(&count));
        async move {
            count.fetch_add(1, Ordering::SeqCst);
            if down.load(Ordering::SeqCst) {
                return Err(HandlerError::permanent("crm is down"));
            }
            Ok::<_, HandlerError>(())
        }
    })
}

#[tokio::test]
async fn replaying_a_dead_letter_runs_only_the_handlers_that_failed() {
    let broker = MemoryTransport::new();
    let (emails, crm_calls) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let down = Arc::new(AtomicBool::new(true));
    let h = TestHarness::start_on(
        Bus::builder()
            .select_handlers(HandlerSelection::None)
            .handler(counting("email", Arc::clone(&emails)))
            .handler(crm(Arc::clone(&down), Arc::clone(&crm_calls))),
        broker.clone(),
    )
    .await
    .unwrap();
    h.publish(&SignedUp {
        email: "a@example.com".into(),
    })
    .await
    .unwrap();
    h.settled().await.unwrap();
    assert_eq!(h.single_dead_letter().failed_handlers, ["crm"]);
    down.store(false, Ordering::SeqCst);
    assert_eq!(broker.replay_dead_letters("test").unwrap(), 1);
    h.settled().await.unwrap();
    assert_eq!(
        emails.load(Ordering::SeqCst),
        1,
        "the email is not sent twice"
    );
    assert_eq!(crm_calls.load(Ordering::SeqCst), 2, "crm ran again");
    assert!(h.dead_letters().is_empty());
    assert_eq!(h.bus().stats().acked, 1);
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn replaying_to_all_runs_every_handler_again() {
    let broker = MemoryTransport::new();
    let (emails, crm_calls) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let down = Arc::new(AtomicBool::new(true));
    let h = TestHarness::start_on(
        Bus::builder()
            .select_handlers(HandlerSelection::None)
            .handler(counting("email", Arc::clone(&emails)))
            .handler(crm(Arc::clone(&down), Arc::clone(&crm_calls))),
        broker.clone(),
    )
    .await
    .unwrap();
    h.publish(&SignedUp {
        email: "b@x".into(),
    })
    .await
    .unwrap();
    h.settled().await.unwrap();
    down.store(false, Ordering::SeqCst);
    assert_eq!(broker.replay_dead_letters_to_all("test").unwrap(), 1);
    h.settled().await.unwrap();
    assert_eq!(emails.load(Ordering::SeqCst), 2);
    assert_eq!(crm_calls.load(Ordering::SeqCst), 2);
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_huge_panic_message_gives_a_bounded_dead_letter_reason() {
    let huge = Handler::typed("huge", |_e: SignedUp, _c: Context| async move {
        if true {
            panic!("{}", "x".repeat(1 << 20));
        }
        Ok::<_, HandlerError>(())
    });
    let also = Handler::typed("also", |_e: SignedUp, _c: Context| async move {
        Err::<(), _>(HandlerError::permanent("é".repeat(100_000)))
    });
    let h = TestHarness::start(
        Bus::builder()
            .select_handlers(HandlerSelection::None)
            .retry(RetryPolicy::none())
            .handler(huge)
            .handler(also),
    )
    .await
    .unwrap();
    h.publish(&SignedUp {
        email: "c@x".into(),
    })
    .await
    .unwrap();
    h.settled().await.unwrap();
    let dead = h.single_dead_letter();
    let header = &dead.message.metadata.headers["x-death-reason"];
    assert!(
        header.len() <= 4096,
        "reason header of {} bytes",
        header.len()
    );
    assert_eq!(*header, dead.reason);
    assert!(
        dead.reason.contains("handler `also` failed"),
        "{}",
        dead.reason
    );
    assert!(
        dead.reason.contains("handler `huge` failed"),
        "{}",
        dead.reason
    );
    assert!(dead.reason.contains("…[truncated]"), "{}", dead.reason);
    let mut failed = dead.failed_handlers.clone();
    failed.sort();
    assert_eq!(failed, ["also", "huge"]);
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_message_delivered_past_the_limit_is_dead_lettered_unhandled() {
    let broker = MemoryTransport::new();
    let calls = Arc::new(AtomicU32::new(0));
    let subscription = Subscription::queue("test", [SignedUp::KEY]);
    broker.declare(&subscription).await.unwrap();
    broker
        .publish(
            Message::new(
                SignedUp::KEY,
                pubsub::transport::Bytes::from_static(b"{\"email\":\"d@x\"}"),
            )
            .into(),
        )
        .await
        .unwrap();
    // Twice a consumer takes it and dies without settling (a crash), so the broker
    // delivers it again.
    for expected in 1..=2 {
        let mut consumer = broker.consume(&subscription).await.unwrap();
        let delivery = consumer.next().await.unwrap().unwrap();
        assert_eq!(delivery.delivery_count, Some(expected));
        drop((delivery, consumer));
    }
    let h = TestHarness::start_on(
        Bus::builder()
            .select_handlers(HandlerSelection::None)
            .max_deliveries(Some(2))
            .handler(counting("fragile", Arc::clone(&calls))),
        broker.clone(),
    )
    .await
    .unwrap();
    h.settled().await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 0, "not handled a third time");
    let dead = h.single_dead_letter();
    assert!(
        dead.reason
            .contains("delivered 3 times, over the limit of 2"),
        "{}",
        dead.reason
    );
    let stats = h.bus().stats();
    assert_eq!((stats.poisoned, stats.dead_lettered), (1, 1), "{stats:?}");
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_service_consumes_its_own_dead_letter_queue() {
    let broker = MemoryTransport::new();
    let down = Arc::new(AtomicBool::new(true));
    let service = TestHarness::start_on(
        Bus::builder()
            .service("signup")
            .select_handlers(HandlerSelection::None)
            .handler(crm(Arc::clone(&down), Arc::default())),
        broker.clone(),
    )
    .await
    .unwrap();
    service
        .publish(&SignedUp {
            email: "e@x".into(),
        })
        .await
        .unwrap();
    service.settled().await.unwrap();
    assert_eq!(broker.dead_lettered("signup").unwrap().len(), 1);
    // The repair bus fails on its first look, then succeeds: the dead letter stays a dead
    // letter (with its original failed handlers) until it is acked.
    let looks = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&looks);
    let repair = Handler::raw("repair", "#", move |_e: RawEvent, ctx: Context| {
        let seen = Arc::clone(&seen);
        async move {
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.push((
                ctx.header("x-death-reason").map(str::to_owned),
                ctx.header("x-failed-handlers").map(str::to_owned),
            ));
            if seen.len() == 1 {
                return Err(HandlerError::permanent("not yet"));
            }
            Ok::<_, HandlerError>(())
        }
    });
    let repairing = TestHarness::start_on(
        Bus::builder()
            .service("signup")
            .select_handlers(HandlerSelection::None)
            .retry(RetryPolicy::none().max_backoff(std::time::Duration::from_millis(20)))
            .handler(repair)
            .consume_dead_letters(),
        broker.clone(),
    )
    .await
    .unwrap();
    repairing.settled().await.unwrap();
    let looks = looks.lock().unwrap().clone();
    assert_eq!(looks.len(), 2, "{looks:?}");
    for (reason, failed) in &looks {
        assert!(
            reason.as_deref().unwrap_or("").contains("crm is down"),
            "{looks:?}"
        );
        assert_eq!(failed.as_deref(), Some("crm"), "{looks:?}");
    }
    assert!(
        broker.dead_lettered("signup").unwrap().is_empty(),
        "acked away"
    );
    let stats = repairing.bus().stats();
    assert_eq!(
        (stats.retried, stats.acked, stats.dead_lettered),
        (1, 1, 0),
        "{stats:?}"
    );
    repairing.shutdown().await.unwrap();
    service.shutdown().await.unwrap();
}
