//! The in-memory broker in stream mode, through the transport contract: offsets, stored
//! prefixes, start positions, retention, single active consumer, error stream.

use std::time::{Duration, SystemTime};

use pubsub::{
    MemoryTransport, Message,
    stream::{StartAt, StoreOffsets, StreamNaming},
    transport::{
        Bytes, Consumer, DeadLetter, Delivery, Destination, Outgoing, Settlement, StreamSource,
        Subscription, Transport,
    },
};

const STREAM: &str = "events.ledger";

async fn append(broker: &MemoryTransport, count: u64) {
    for n in 0..count {
        let message = Message::new("ledger.posted", Bytes::from(format!("{{\"n\":{n}}}")));
        broker.publish(message.into()).await.expect("append");
    }
}

/// The stream, read from the first message, storing offsets only at close.
fn source() -> StreamSource {
    StreamSource::new(STREAM)
        .start_at(StartAt::First)
        .store_offsets(StoreOffsets::every(1000, Duration::from_secs(60)))
}

fn reader(service: &str) -> Subscription {
    Subscription::stream(service, source())
}

async fn next(consumer: &mut Box<dyn Consumer>) -> Delivery {
    match tokio::time::timeout(Duration::from_secs(5), consumer.next()).await {
        Ok(Some(Ok(delivery))) => delivery,
        other => panic!("expected a delivery, got {other:?}"),
    }
}

/// Nothing more comes within a short window (used only where nothing must come).
async fn nothing_more(consumer: &mut Box<dyn Consumer>) {
    let more = tokio::time::timeout(Duration::from_millis(50), consumer.next()).await;
    assert!(more.is_err(), "expected no delivery, got {more:?}");
}

#[tokio::test]
async fn only_the_contiguous_settled_prefix_is_stored_and_a_restart_resumes_after_it() {
    let broker = MemoryTransport::stream_backed();
    append(&broker, 5).await;
    let mut consumer = broker.consume(&reader("books")).await.unwrap();
    let mut deliveries = Vec::new();
    for expected in 0..5 {
        let delivery = next(&mut consumer).await;
        assert_eq!(delivery.offset, Some(expected));
        deliveries.push(delivery);
    }
    let mut held = None;
    for delivery in deliveries {
        match delivery.offset {
            Some(2) => held = Some(delivery), // still running
            _ => delivery.acker.settle(Settlement::Ack).await.unwrap(),
        }
    }
    consumer.cancel().await.unwrap();
    drop(held); // abandoned at shutdown: never settled
    consumer.close().await.unwrap();
    assert_eq!(broker.stored_offset(STREAM, "books").unwrap(), Some(1));
    let mut again = broker.consume(&reader("books")).await.unwrap();
    let offsets = [next(&mut again).await.offset, next(&mut again).await.offset];
    assert_eq!(
        offsets,
        [Some(2), Some(3)],
        "resumes after the stored offset"
    );
}

#[tokio::test]
async fn start_positions_first_last_next_offset_timestamp() {
    let broker = MemoryTransport::stream_backed();
    append(&broker, 3).await;
    let middle = SystemTime::now();
    append(&broker, 3).await;
    let first_offset = |start: StartAt| {
        let broker = broker.clone();
        async move {
            let anonymous = Subscription::stream(
                "anyone",
                source().start_at(start).store_offsets(StoreOffsets::Never),
            );
            let mut consumer = broker.consume(&anonymous).await.unwrap();
            next(&mut consumer).await.offset
        }
    };
    assert_eq!(first_offset(StartAt::First).await, Some(0));
    assert_eq!(first_offset(StartAt::Last).await, Some(5));
    assert_eq!(first_offset(StartAt::Offset(4)).await, Some(4));
    assert_eq!(first_offset(StartAt::Timestamp(middle)).await, Some(3));
    let mut next_only = broker
        .consume(&Subscription::stream(
            "late",
            source().start_at(StartAt::Next),
        ))
        .await
        .unwrap();
    nothing_more(&mut next_only).await;
    append(&broker, 1).await;
    assert_eq!(next(&mut next_only).await.offset, Some(6));
}

#[tokio::test]
async fn next_is_fixed_when_declared_so_a_built_service_misses_nothing() {
    let broker = MemoryTransport::stream_backed();
    append(&broker, 2).await;
    let subscription = Subscription::stream("svc", source().start_at(StartAt::Next));
    broker.declare(&subscription).await.unwrap();
    append(&broker, 1).await; // between build and run
    let mut consumer = broker.consume(&subscription).await.unwrap();
    assert_eq!(next(&mut consumer).await.offset, Some(2));
}

#[tokio::test]
async fn retention_keeps_the_last_messages_and_offsets_go_on() {
    let broker = MemoryTransport::stream_backed_with(
        StreamNaming::default(),
        // bodies of 7 bytes each: the last 3 fit
        pubsub::stream::Retention::default().max_length_bytes(21),
    );
    append(&broker, 5).await;
    assert_eq!(broker.stream_length(STREAM).unwrap(), 3);
    let offsets: Vec<u64> = broker
        .stream_messages(STREAM)
        .unwrap()
        .iter()
        .map(|(o, _)| *o)
        .collect();
    assert_eq!(offsets, [2, 3, 4]);
    let mut consumer = broker.consume(&reader("late")).await.unwrap();
    assert_eq!(next(&mut consumer).await.offset, Some(2));
}

#[tokio::test]
async fn a_single_active_consumer_hands_over_at_its_stored_offset() {
    let broker = MemoryTransport::stream_backed();
    append(&broker, 4).await;
    let sac = Subscription::stream("books", source().single_active(true));
    let mut first = broker.consume(&sac).await.unwrap();
    let mut second = broker.consume(&sac).await.unwrap();
    for expected in 0..2 {
        let delivery = next(&mut first).await;
        assert_eq!(delivery.offset, Some(expected));
        delivery.acker.settle(Settlement::Ack).await.unwrap();
    }
    nothing_more(&mut second).await;
    first.cancel().await.unwrap();
    first.close().await.unwrap();
    assert_eq!(
        next(&mut second).await.offset,
        Some(2),
        "takes over after 1"
    );
}

#[tokio::test]
async fn a_dead_letter_goes_to_the_error_stream_and_the_offset_advances() {
    let broker = MemoryTransport::stream_backed();
    append(&broker, 1).await;
    let mut consumer = broker.consume(&reader("books")).await.unwrap();
    let delivery = next(&mut consumer).await;
    let failed = DeadLetter::new("ledger: closed", vec!["ledger".into()]);
    delivery
        .acker
        .settle(Settlement::DeadLetter(failed))
        .await
        .unwrap();
    consumer.close().await.unwrap();
    assert_eq!(broker.stored_offset(STREAM, "books").unwrap(), Some(0));
    let [entry] = <[_; 1]>::try_from(broker.error_stream("books").unwrap()).unwrap();
    assert_eq!(
        (entry.reason.as_str(), entry.offset),
        ("ledger: closed", Some(0))
    );
    assert_eq!(entry.stream.as_deref(), Some(STREAM));
}

#[tokio::test]
async fn requeue_is_refused_and_queues_do_not_exist_in_stream_mode() {
    let broker = MemoryTransport::stream_backed();
    append(&broker, 1).await;
    let mut consumer = broker.consume(&reader("books")).await.unwrap();
    let delivery = next(&mut consumer).await;
    assert!(delivery.acker.settle(Settlement::Requeue).await.is_err());
    let queue = Subscription::queue("books", ["ledger.*"]);
    assert!(broker.declare(&queue).await.is_err());
    let to_queue = Outgoing::new(
        Message::new("ledger.posted", Bytes::new()),
        Destination::Queue("books".into()),
    );
    assert!(broker.publish(to_queue).await.is_err());
    assert!(broker.stream_length("events.nothing").is_err());
}
