//! Events published through `Context` get ids derived from the handled event, the handler
//! and the publish's position, so a retry or a redelivery re-publishes the same ids.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use pubsub::prelude::*;
use pubsub::{
    Bus, Handler, HandlerSelection, MemoryTransport, RetryPolicy, Uuid, testing::TestHarness,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(domain = "ids", action = "ordered")]
struct Ordered {
    id: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(domain = "ids", action = "billed")]
struct Billed {
    id: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(domain = "ids", action = "shipped")]
struct Shipped {
    id: u32,
}

/// Publishes `Billed` then `Shipped`, and fails until its `fail_until`-th call.
fn forwarder(name: &str, calls: Arc<AtomicU32>, fail_until: u32) -> Handler {
    Handler::typed(name, move |order: Ordered, ctx: Context| {
        let calls = Arc::clone(&calls);
        async move {
            ctx.publish(&Billed { id: order.id }).await?;
            ctx.publish(&Shipped { id: order.id }).await?;
            if calls.fetch_add(1, Ordering::SeqCst) + 1 < fail_until {
                return Err(HandlerError::new("downstream refused"));
            }
            Ok::<_, HandlerError>(())
        }
    })
}

/// The ids of every message published under `key`, in order.
fn ids_of(broker: &MemoryTransport, key: &str) -> Vec<Uuid> {
    broker
        .published()
        .iter()
        .filter(|m| m.metadata.key == key)
        .map(|m| m.metadata.id)
        .collect()
}

#[tokio::test]
async fn a_retried_handler_republishes_the_same_ids() {
    let calls = Arc::new(AtomicU32::new(0));
    let h = TestHarness::start(
        Bus::builder()
            .select_handlers(HandlerSelection::None)
            .retry(RetryPolicy::exponential(3, Duration::from_millis(5)))
            .handler(forwarder("forward", Arc::clone(&calls), 3)),
    )
    .await
    .unwrap();
    let cause = h.publish(&Ordered { id: 1 }).await.unwrap();
    h.settled().await.unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "two failures, then success"
    );
    let billed = ids_of(h.transport(), Billed::KEY);
    let shipped = ids_of(h.transport(), Shipped::KEY);
    assert_eq!(billed.len(), 3, "published once per attempt");
    assert!(
        billed.iter().all(|id| *id == billed[0]),
        "every attempt publishes Billed with one id: {billed:?}"
    );
    assert!(shipped.iter().all(|id| *id == shipped[0]), "{shipped:?}");
    assert_ne!(
        billed[0], shipped[0],
        "the position in the call tells them apart"
    );
    assert_ne!(billed[0], cause);
    assert_eq!(billed[0].get_version_num(), 5, "a name-based UUID");
    let message = h
        .published_messages()
        .into_iter()
        .find(|m| m.metadata.key == Billed::KEY)
        .unwrap();
    assert_eq!(message.metadata.causation_id, Some(cause.to_string()));
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_redelivered_event_republishes_the_same_ids_and_other_events_get_others() {
    let broker = MemoryTransport::new();
    let calls = Arc::new(AtomicU32::new(0));
    let h = TestHarness::start_on(
        Bus::builder()
            .select_handlers(HandlerSelection::None)
            .retry(RetryPolicy::none())
            .handler(forwarder("forward", Arc::clone(&calls), 2)),
        broker.clone(),
    )
    .await
    .unwrap();
    h.publish(&Ordered { id: 1 }).await.unwrap();
    h.settled().await.unwrap();
    assert_eq!(h.dead_letters().len(), 1, "the first delivery failed");
    // the dead letter comes back: a redelivery of the same event
    assert_eq!(broker.replay_dead_letters("test").unwrap(), 1);
    h.settled().await.unwrap();
    assert!(h.dead_letters().is_empty());
    h.publish(&Ordered { id: 2 }).await.unwrap();
    h.settled().await.unwrap();
    let billed = ids_of(&broker, Billed::KEY);
    assert_eq!(billed.len(), 3);
    assert_eq!(
        billed[0], billed[1],
        "the redelivery re-published the same id"
    );
    assert_ne!(billed[1], billed[2], "another event, another id");
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn two_handlers_of_one_event_publish_different_ids() {
    let h = TestHarness::start(
        Bus::builder()
            .select_handlers(HandlerSelection::None)
            .handler(forwarder("first", Arc::default(), 0))
            .handler(forwarder("second", Arc::default(), 0)),
    )
    .await
    .unwrap();
    h.publish(&Ordered { id: 1 }).await.unwrap();
    h.settled().await.unwrap();
    let billed = ids_of(h.transport(), Billed::KEY);
    assert_eq!(billed.len(), 2);
    assert_ne!(billed[0], billed[1], "the handler's name is part of the id");
    h.shutdown().await.unwrap();
}
