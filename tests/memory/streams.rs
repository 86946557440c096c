//! Streams on the in-memory broker. Services reading streams: handlers unit-tested with
//! the harness, offsets stored after handling, the error stream, and what the broker
//! shows. The broker in stream mode through the transport contract: exactly which prefix
//! is stored, exact start positions, retention, what stream mode refuses.
//!
//! What every stream transport shares (resuming, start positions, single active consumer,
//! the error stream) is in the conformance suite, which runs on the stream-backed memory
//! broker too (`conformance::stream_backed`); the tests here check what the memory broker
//! shows beyond it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use pubsub::prelude::*;
use pubsub::{
    Bus, Handler, HandlerSelection, MemoryTransport, RetryPolicy,
    stream::{StartAt, StoreOffsets, StreamConsumption, StreamNaming},
    testing::TestHarness,
    transport::{
        Bytes, Consumer, Delivery, Destination, Outgoing, Settlement, StreamSource, Subscription,
        Transport, TransportError,
    },
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
        .stream_consumption(StreamConsumption::new().store_every(1000, Duration::from_secs(60)))
}

#[tokio::test]
async fn the_harness_runs_a_stream_service_and_a_failure_lands_in_its_error_stream() {
    let broker = MemoryTransport::stream_backed();
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
    assert!(entry.reason.contains("cannot post 2"), "{}", entry.reason);
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
async fn the_harness_gives_a_stream_service_a_stream_broker() {
    let calls = Arc::new(AtomicU32::new(0));
    let h = TestHarness::start(builder(&calls, Some(0))).await.unwrap();
    h.publish(&Posted { n: 0 }).await.unwrap();
    h.settled().await.unwrap();
    assert_eq!(h.single_dead_letter().failed_handlers, ["ledger"]);
    assert_eq!(h.transport().stream_length("events.ledger").unwrap(), 1);
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_restarted_service_resumes_after_its_stored_offset() {
    let broker = MemoryTransport::stream_backed();
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
async fn a_wildcard_domain_reads_every_known_domain() {
    let wildcard = Handler::raw("all", "*.posted", |_: RawEvent, _: Context| async {
        Ok::<_, HandlerError>(())
    });
    let build = |consumption: StreamConsumption| {
        Bus::builder()
            .service("watch")
            .transport(MemoryTransport::stream_backed())
            .select_handlers(HandlerSelection::None)
            .handler(wildcard.clone())
            .stream_consumption(consumption)
            .build()
    };
    // `*` stands for every domain the binary knows: of the events it derives (Posted and
    // Closed here, more in other modules) and of its #[handler]s' patterns (with no domain
    // known at all, build() fails: StreamNaming's own tests)
    let known = known_domains();
    assert!(known.contains("ledger"), "Posted and Closed: {known:?}");
    let bus = build(StreamConsumption::new()).await.unwrap();
    assert_eq!(bus.consumed_streams(), streams_of(known.iter()));
    // domains() adds to them
    let bus = build(
        StreamConsumption::new()
            .domains(["ledger", "archive"])
            .start_at(StartAt::First),
    )
    .await
    .unwrap();
    assert!(!known.contains("archive"), "{known:?}");
    assert_eq!(
        bus.consumed_streams(),
        streams_of(known.iter().chain(&["archive".to_owned()]))
    );
}

/// Every domain this binary knows: of the events it derives and of the literal first word
/// of its `#[handler]`s' keys and patterns.
fn known_domains() -> BTreeSet<String> {
    let handlers = pubsub::registry::registered_handlers();
    let of_handlers = handlers.iter().flat_map(|h| {
        let key = h.event_key.as_deref().map(StreamNaming::domain_of);
        key.into_iter().chain([StreamNaming::domain_of(&h.pattern)])
    });
    let events = pubsub::registry::registered_events();
    let of_events = events.iter().map(|e| e.domain);
    of_handlers
        .chain(of_events)
        .filter(|domain| !matches!(*domain, "*" | "#"))
        .map(str::to_owned)
        .collect()
}

/// `events.<domain>` of each domain, in order.
fn streams_of<'a>(domains: impl Iterator<Item = &'a String>) -> Vec<String> {
    let domains: BTreeSet<&String> = domains.collect();
    domains.iter().map(|d| format!("events.{d}")).collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(domain = "ledger", action = "closed")]
struct Closed {
    day: u32,
}

/// The next item of an event stream, failing the test after 5 s.
async fn item<E>(
    events: &mut pubsub::stream::EventStream<E>,
) -> pubsub::Result<pubsub::stream::StreamedEvent<E>> {
    use futures::StreamExt;
    match tokio::time::timeout(Duration::from_secs(5), events.next()).await {
        Ok(Some(item)) => item,
        Ok(None) => panic!("the event stream ended"),
        Err(_) => panic!("no event within 5 s"),
    }
}

#[tokio::test]
async fn an_event_stream_yields_its_type_passes_over_others_and_reports_bad_input_as_items() {
    let broker = MemoryTransport::stream_backed();
    let bus = Bus::publisher("clerk", broker.clone());
    bus.publish(&Posted { n: 1 }).await.unwrap();
    bus.publish(&Closed { day: 1 }).await.unwrap(); // same stream, another key
    let mut bad = pubsub::Message::new(
        Posted::KEY,
        pubsub::transport::Bytes::from_static(b"{not json"),
    );
    bad.metadata.id = pubsub::Uuid::now_v7();
    bus.publish_message(bad.clone()).await.unwrap();
    bus.publish(&Posted { n: 2 }).await.unwrap();
    let mut posted = bus
        .subscribe::<Posted>()
        .start_at(StartAt::First)
        .await
        .unwrap();
    assert_eq!(posted.stream(), "events.ledger");
    let first = item(&mut posted).await.unwrap();
    assert_eq!((first.event.n, first.offset), (1, Some(0)));
    match item(&mut posted).await {
        Err(pubsub::Error::Undecodable { offset, id, .. }) => {
            assert_eq!((offset, id), (Some(2), bad.metadata.id));
        }
        other => panic!("expected the malformed message as an error item, got {other:?}"),
    }
    let second = item(&mut posted).await.unwrap();
    assert_eq!((second.event.n, second.offset), (2, Some(3)));
    // from an absolute offset, and only what comes next
    let mut from_three = bus
        .subscribe::<Posted>()
        .start_at(StartAt::Offset(3))
        .await
        .unwrap();
    assert_eq!(item(&mut from_three).await.unwrap().event.n, 2);
    let mut closed = bus
        .subscribe::<Closed>()
        .start_at(StartAt::Next)
        .await
        .unwrap();
    bus.publish(&Closed { day: 2 }).await.unwrap();
    assert_eq!(item(&mut closed).await.unwrap().event.day, 2);
    // on a queue transport there is no stream to read
    let queues = Bus::publisher("clerk", MemoryTransport::new());
    assert!(
        queues
            .subscribe::<Posted>()
            .start_at(StartAt::First)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_super_stream_keeps_each_key_in_one_partition_and_an_offset_per_partition() {
    use pubsub::{PublishOptions, stream::StreamNaming};
    let naming = StreamNaming::default().super_stream("ledger", 3);
    let broker = MemoryTransport::stream_backed_with(naming, pubsub::stream::Retention::default());
    let calls = Arc::new(AtomicU32::new(0));
    let h = TestHarness::start_on(builder(&calls, None), broker.clone())
        .await
        .unwrap();
    let account = |n: u32| PublishOptions::new().partition_key(format!("account-{}", n % 5));
    for n in 0..30 {
        h.bus()
            .publish_with(&Posted { n }, account(n))
            .await
            .unwrap();
    }
    h.settled().await.unwrap();
    assert_eq!(h.consumed::<Posted>("ledger").len(), 30);
    let partitions = ["events.ledger-0", "events.ledger-1", "events.ledger-2"];
    let mut lengths = Vec::new();
    for partition in partitions {
        let held: Vec<u32> = broker
            .stream_messages(partition)
            .unwrap()
            .iter()
            .map(|(_, m)| Posted::decode_message(m).unwrap().n)
            .collect();
        // a key's events sit in one partition, in publish order
        for key in 0..5 {
            let of_key: Vec<u32> = held.iter().copied().filter(|n| n % 5 == key).collect();
            assert!(
                of_key.is_empty() || of_key.len() == 6,
                "{partition}: {held:?}"
            );
            assert!(of_key.is_sorted(), "{partition}: {held:?}");
        }
        lengths.push(held.len() as u64);
    }
    assert_eq!(lengths.iter().sum::<u64>(), 30);
    assert!(
        lengths.iter().filter(|l| **l > 0).count() >= 2,
        "{lengths:?}"
    );
    h.shutdown().await.unwrap();
    for (partition, length) in partitions.iter().zip(&lengths) {
        let stored = broker.stored_offset(partition, "books").unwrap();
        assert_eq!(
            stored,
            length.checked_sub(1),
            "{partition}: one offset each"
        );
    }
    // a restart reads each partition after its own offset
    let again = Arc::new(AtomicU32::new(0));
    let h = TestHarness::start_on(builder(&again, None), broker.clone())
        .await
        .unwrap();
    for n in 30..36 {
        h.bus()
            .publish_with(&Posted { n }, account(n))
            .await
            .unwrap();
    }
    h.settled().await.unwrap();
    let seen: Vec<u32> = h.consumed::<Posted>("ledger").iter().map(|p| p.n).collect();
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (30..36).collect::<Vec<_>>(),
        "only the new events: {seen:?}"
    );
    // iterating the super stream reads every partition
    let mut all = h
        .bus()
        .subscribe::<Posted>()
        .start_at(StartAt::First)
        .await
        .unwrap();
    let mut read = Vec::new();
    for _ in 0..36 {
        read.push(item(&mut all).await.unwrap().event.n);
    }
    read.sort_unstable();
    assert_eq!(read, (0..36).collect::<Vec<_>>());
    h.shutdown().await.unwrap();
}

// The broker in stream mode, through the transport contract.

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

/// A typed event goes to a stream the publisher names, not to the stream of its domain, and
/// reads back typed from there; a queue transport refuses a named stream.
#[tokio::test]
async fn a_typed_event_published_to_a_named_stream_lands_there() {
    use futures::StreamExt;

    let broker = MemoryTransport::stream_backed();
    let chat = Bus::publisher("chat", broker.clone());
    let posted = Posted { n: 7 };
    chat.publish_with(&posted, PublishOptions::new().to_stream("ledger_room_1"))
        .await
        .expect("published to the named stream");
    assert_eq!(broker.stream_length("ledger_room_1").unwrap(), 1);
    assert!(
        broker.stream_length("events.ledger").is_err(),
        "nothing in the domain's stream: {:?}",
        broker.stream_names()
    );
    let mut room = chat
        .subscribe::<Posted>()
        .stream("ledger_room_1")
        .start_at(StartAt::First)
        .await
        .expect("reading the named stream");
    let read = room.next().await.expect("one event").expect("decodes");
    assert_eq!((read.event.n, read.stream.as_str()), (7, "ledger_room_1"));
    assert_eq!(read.metadata.content_type, "application/json");

    let queues = Bus::publisher("chat", MemoryTransport::new());
    let refused = queues
        .publish_with(&posted, PublishOptions::new().to_stream("ledger_room_1"))
        .await;
    assert!(
        matches!(
            refused,
            Err(pubsub::Error::Transport(TransportError::Unsupported { .. }))
        ),
        "{refused:?}"
    );
}

/// A stored offset decides where a restarted consumer starts, whatever start position it
/// asks for: that is logged at `info` with both values and how to start elsewhere, and
/// `reset_offset` makes the next start read from the offset given.
#[tokio::test]
async fn a_stored_offset_overrides_the_start_position_with_a_note_and_a_reset_moves_it() {
    use crate::support::logs::CapturedLogs;

    let broker = MemoryTransport::stream_backed();
    append(&broker, 3).await;
    let mut consumer = broker.consume(&reader("archive")).await.unwrap();
    for expected in 0..3 {
        let delivery = next(&mut consumer).await;
        assert_eq!(delivery.offset, Some(expected));
        delivery.acker.settle(Settlement::Ack).await.unwrap();
    }
    consumer.close().await.unwrap();
    assert_eq!(broker.stored_offset(STREAM, "archive").unwrap(), Some(2));

    let (logs, capturing) = CapturedLogs::capture();
    let from_zero = Subscription::stream("archive", source().start_at(StartAt::Offset(0)));
    let mut again = broker.consume(&from_zero).await.unwrap();
    drop(capturing);
    nothing_more(&mut again).await;
    again.close().await.unwrap();
    let logged = logs.text();
    assert!(
        logged.contains("INFO")
            && logged.contains("resumes events.ledger at offset 3, after the offset it stored (2)")
            && logged.contains("Offset(0)")
            && logged.contains("reset the stored offset"),
        "{logged}"
    );

    broker.reset_offset(STREAM, "archive", 0).unwrap();
    let mut replay = broker.consume(&from_zero).await.unwrap();
    assert_eq!(
        next(&mut replay).await.offset,
        Some(0),
        "read from the reset offset"
    );
}

/// A reader that only iterates a stream (`Bus::subscribe` with `.stream(..)`) creates nothing but the
/// stream it reads: no error stream of its service, which it would never use.
#[tokio::test]
async fn an_anonymous_reader_creates_no_error_stream() {
    let broker = MemoryTransport::stream_backed();
    let bus = Bus::publisher("reader", broker.clone());
    bus.publish(&Posted { n: 1 }).await.unwrap();
    let mut posted = bus
        .subscribe::<Posted>()
        .stream("events.ledger")
        .start_at(StartAt::First)
        .await
        .unwrap();
    assert_eq!(item(&mut posted).await.unwrap().event.n, 1);
    let names = broker.stream_names();
    assert_eq!(names, ["events.ledger"], "only the stream read: {names:?}");
}
