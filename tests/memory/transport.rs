//! The in-memory broker as a product: prefetch, redelivery, dead-letter queue, idle waits.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pubsub::prelude::*;
use pubsub::{
    Bus, Handler, HandlerSelection, MemoryTransport,
    testing::TestHarness,
    transport::{Bytes, DeadLetter, Settlement, Subscription, Transport},
};

fn subscription(service: &str, patterns: &[&str], prefetch: u16) -> Subscription {
    Subscription::new(
        service,
        patterns.iter().map(|p| p.to_string()).collect(),
        prefetch,
    )
}

async fn publish(broker: &MemoryTransport, key: &str, body: &'static [u8]) {
    broker
        .publish(Message::new(key, Bytes::from_static(body)).into())
        .await
        .unwrap();
}

#[tokio::test]
async fn prefetch_bounds_unsettled_deliveries() {
    let broker = MemoryTransport::new();
    let mut consumer = broker
        .consume(&subscription("q", &["a.*"], 2))
        .await
        .unwrap();
    for _ in 0..3 {
        publish(&broker, "a.b", b"{}").await;
    }
    let first = consumer.next().await.unwrap().unwrap();
    let _second = consumer.next().await.unwrap().unwrap();
    let third = tokio::time::timeout(Duration::from_millis(50), consumer.next()).await;
    assert!(
        third.is_err(),
        "a third delivery must wait for a settlement"
    );
    first.acker.settle(Settlement::Ack).await.unwrap();
    let third = tokio::time::timeout(Duration::from_secs(1), consumer.next()).await;
    assert!(matches!(third, Ok(Some(Ok(_)))), "settling frees a slot");
    let depth = broker.queue_depth("q").unwrap();
    assert_eq!((depth.ready, depth.unacked, depth.consumers), (0, 2, 1));
}

#[tokio::test]
async fn unsettled_deliveries_of_a_departed_consumer_are_redelivered_first() {
    let broker = MemoryTransport::new();
    let mut first = broker
        .consume(&subscription("q", &["#"], 10))
        .await
        .unwrap();
    publish(&broker, "k.one", b"1").await;
    publish(&broker, "k.two", b"2").await;
    let one = first.next().await.unwrap().unwrap();
    assert!(!one.redelivered);
    let late_ack = one.acker;
    drop(first);
    // the old delivery tag is gone with its consumer
    assert!(late_ack.settle(Settlement::Ack).await.is_err());
    let mut second = broker
        .consume(&subscription("q", &["#"], 10))
        .await
        .unwrap();
    let again = second.next().await.unwrap().unwrap();
    assert_eq!(again.message.metadata.key, "k.one");
    assert!(
        again.redelivered,
        "a requeued message is flagged as redelivered"
    );
    let two = second.next().await.unwrap().unwrap();
    assert_eq!(two.message.metadata.key, "k.two");
}

#[tokio::test]
async fn topic_routing_copies_to_every_bound_queue_once() {
    let broker = MemoryTransport::new();
    let mut a = broker
        .consume(&subscription("a", &["order.*", "order.#"], 10))
        .await
        .unwrap();
    let mut b = broker
        .consume(&subscription("b", &["#.created"], 10))
        .await
        .unwrap();
    let _c = broker
        .consume(&subscription("c", &["user.*"], 10))
        .await
        .unwrap();
    publish(&broker, "order.created", b"{}").await;
    let unroutable = broker
        .publish(Message::new("nobody.listens", Bytes::from_static(b"{}")).into())
        .await;
    assert!(
        matches!(unroutable, Err(pubsub::transport::TransportError::Unroutable { ref key, .. }) if key == "nobody.listens"),
        "a message no queue is bound for is returned as unroutable: {unroutable:?}"
    );
    let got_a = a.next().await.unwrap().unwrap();
    let got_b = b.next().await.unwrap().unwrap();
    assert_eq!(got_a.message.metadata.key, "order.created");
    assert_eq!(got_b.message.metadata.key, "order.created");
    let depth = broker.queue_depth("a").unwrap();
    assert_eq!(
        (depth.ready, depth.unacked),
        (0, 1),
        "two matching bindings, one copy"
    );
    assert_eq!(broker.queue_depth("c").unwrap().ready, 0);
    assert_eq!(broker.unroutable(), 1);
}

#[tokio::test]
async fn dead_letters_can_be_inspected_and_replayed() {
    let broker = MemoryTransport::new();
    let mut consumer = broker
        .consume(&subscription("svc", &["x.y"], 10))
        .await
        .unwrap();
    publish(&broker, "x.y", b"payload").await;
    let delivery = consumer.next().await.unwrap().unwrap();
    let id = delivery.message.metadata.id;
    let reason = DeadLetter::new("handler `h` failed", vec!["h".into(), "g".into()]);
    delivery
        .acker
        .settle(Settlement::DeadLetter(reason))
        .await
        .unwrap();
    let dead = broker.dead_lettered("svc").unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].message.metadata.id, id,
        "the id survives dead-lettering"
    );
    assert_eq!(
        dead[0].message.metadata.headers["x-death-reason"],
        "handler `h` failed"
    );
    assert_eq!(dead[0].message.metadata.headers["x-failed-handlers"], "h,g");
    assert_eq!(broker.replay_dead_letters("svc").unwrap(), 1);
    let replayed = consumer.next().await.unwrap().unwrap();
    assert_eq!(replayed.message.metadata.id, id);
    assert_eq!(
        replayed.message.metadata.headers.get("x-failed-handlers"),
        Some(&"h,g".to_owned()),
        "a replayed dead letter names the handlers to run again"
    );
    assert!(
        !replayed
            .message
            .metadata
            .headers
            .contains_key("x-death-reason")
    );
    assert!(broker.dead_lettered("svc").unwrap().is_empty());
    assert!(
        matches!(
            broker.dead_lettered("typo"),
            Err(pubsub::memory::InspectError::UnknownQueue { .. })
        ),
        "a service without a queue is an error, not an empty dead-letter queue"
    );
}

#[tokio::test]
async fn handlers_of_different_deliveries_run_concurrently_up_to_prefetch() {
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (r, p) = (Arc::clone(&running), Arc::clone(&peak));
    let handler = Handler::raw("slow", "load.*", move |_e: RawEvent, _c: Context| {
        let (r, p) = (Arc::clone(&r), Arc::clone(&p));
        async move {
            let now = r.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(30)).await;
            r.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, HandlerError>(())
        }
    });
    let h = TestHarness::start(
        Bus::builder()
            .select_handlers(HandlerSelection::None)
            .handler(handler)
            .prefetch(4),
    )
    .await
    .unwrap();
    for _ in 0..20 {
        h.bus()
            .publish_message(Message::new("load.test", Bytes::from_static(b"{}")))
            .await
            .unwrap();
    }
    h.settled().await.unwrap();
    assert_eq!(h.calls("slow").len(), 20);
    assert_eq!(
        peak.load(Ordering::SeqCst),
        4,
        "exactly prefetch deliveries in flight at the peak"
    );
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_delivery_dropped_unsettled_is_requeued() {
    let broker = MemoryTransport::new();
    let mut consumer = broker.consume(&subscription("q", &["#"], 1)).await.unwrap();
    publish(&broker, "a.b", b"{}").await;
    let first = consumer.next().await.unwrap().unwrap();
    let id = first.message.metadata.id;
    drop(first);
    let again = consumer.next().await.unwrap().unwrap();
    assert_eq!(again.message.metadata.id, id);
    assert!(again.redelivered);
    again.acker.settle(Settlement::Ack).await.unwrap();
    assert!(broker.is_idle());
}

#[tokio::test]
async fn wait_idle_times_out_while_work_is_stuck() {
    let broker = MemoryTransport::new();
    let mut consumer = broker.consume(&subscription("q", &["#"], 1)).await.unwrap();
    publish(&broker, "a.b", b"{}").await;
    let _held = consumer.next().await.unwrap().unwrap();
    let err = broker
        .wait_idle(Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("did not become idle"), "{err}");
}

#[tokio::test]
async fn competing_consumers_are_served_round_robin() {
    let broker = MemoryTransport::new();
    let subscription = subscription("rr", &["rr.#"], 10);
    let mut a = broker.consume(&subscription).await.unwrap();
    let mut b = broker.consume(&subscription).await.unwrap();
    for n in 0..10u8 {
        broker
            .publish(Message::new("rr.tick", Bytes::from(vec![n])).into())
            .await
            .unwrap();
    }
    let (mut got, mut held) = ((Vec::new(), Vec::new()), Vec::new());
    // a takes first, all it can: a broker that let consumers pull would hand it 0..5
    for _ in 0..5 {
        let delivery = a.next().await.unwrap().unwrap();
        got.0.push(delivery.message.body[0]);
        held.push(delivery); // unsettled: dropping would requeue it
    }
    for _ in 0..5 {
        let delivery = b.next().await.unwrap().unwrap();
        got.1.push(delivery.message.body[0]);
        held.push(delivery);
    }
    assert_eq!(
        got,
        (vec![0, 2, 4, 6, 8], vec![1, 3, 5, 7, 9]),
        "alternating"
    );
    let depth = broker.queue_depth("rr").unwrap();
    assert_eq!((depth.ready, depth.unacked), (0, 10), "{depth:?}");
}

#[tokio::test]
async fn messages_pushed_to_a_cancelled_consumer_go_to_the_others() {
    let broker = MemoryTransport::new();
    let subscription = subscription("rc", &["rc.#"], 10);
    let mut a = broker.consume(&subscription).await.unwrap();
    let mut b = broker.consume(&subscription).await.unwrap();
    for n in 0..4u8 {
        broker
            .publish(Message::new("rc.tick", Bytes::from(vec![n])).into())
            .await
            .unwrap();
    }
    a.cancel().await.unwrap();
    assert!(a.next().await.is_none(), "a cancelled consumer ends");
    let mut got: Vec<u8> = Vec::new();
    for _ in 0..4 {
        let delivery = b.next().await.unwrap().unwrap();
        got.push(delivery.message.body[0]);
        delivery.acker.settle(Settlement::Ack).await.unwrap();
    }
    got.sort_unstable();
    assert_eq!(
        got,
        [0, 1, 2, 3],
        "nothing stranded with the cancelled consumer"
    );
}

#[tokio::test]
async fn a_full_queue_refuses_publishes_and_keeps_what_it_has() {
    let broker = MemoryTransport::with_max_length(2);
    broker
        .declare(&subscription("full", &["full.#"], 10))
        .await
        .unwrap();
    let publish = |n: u8| broker.publish(Message::new("full.job", Bytes::from(vec![n])).into());
    publish(0).await.unwrap();
    publish(1).await.unwrap();
    let refused = publish(2).await;
    assert!(
        matches!(refused, Err(pubsub::transport::TransportError::Nacked { ref reason }) if reason.contains("full")),
        "{refused:?}"
    );
    assert_eq!(broker.queue_depth("full").unwrap().ready, 2);
}
