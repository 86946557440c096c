//! The cases only stream transports run (they need [`Need::Replay`](crate::testing::conformance::Need::Replay)):
//! stored offsets, resuming, the error stream, single active consumer, start positions.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::bus::Bus;
use crate::handler::Handler;
use crate::handler_error::HandlerError;
use crate::handler_input::RawEvent;
use crate::headers::{HEADER_DEATH_REASON, HEADER_FAILED_HANDLERS};
use crate::headers::{HEADER_STREAM, HEADER_STREAM_OFFSET};
use crate::stats::BusStats;
use crate::stream::{StreamConsumption, StreamNaming};
use crate::testing::conformance::Broker;
use crate::testing::conformance::support::{
    PATIENCE, Seen, build, builder, eventually, linger, message, namespace, publish_all, publisher,
    start, stopped, within,
};
use crate::transport::{
    Consumer, Settlement, StartAt, StoreOffsets, StreamSource, Subscription, Transport,
};

/// A bus of `service` on a new connection, reading streams as `consumption`.
async fn stream_bus(
    broker: &dyn Broker,
    service: &str,
    handlers: Vec<Handler>,
    consumption: StreamConsumption,
) -> Bus {
    let connection = broker.connect().await;
    build(
        builder(connection, service, 10).stream_consumption(consumption),
        handlers,
    )
    .await
}

/// How the transport names streams; the case fails on one that is not stream-backed.
fn naming(transport: &dyn Transport) -> StreamNaming {
    match transport.stream_naming() {
        Some(naming) => naming,
        None => panic!(
            "the {} transport claims replay but names no streams (Transport::stream_naming)",
            transport.name()
        ),
    }
}

/// A reader of `stream` that stores no offset, from `start`.
async fn anonymous_reader(
    connection: &dyn Transport,
    name: &str,
    stream: &str,
    start: StartAt,
) -> Box<dyn Consumer> {
    let subscription = Subscription::stream(
        name,
        StreamSource::new(stream)
            .start_at(start)
            .store_offsets(StoreOffsets::Never),
    );
    match connection.consume(&subscription).await {
        Ok(consumer) => consumer,
        Err(error) => panic!("reading {stream} from {start:?} failed: {error}"),
    }
}

/// Waits until `seen` holds `expected`, lingers for anything more, stops the bus, and
/// checks that it handled exactly `expected`, once each.
async fn handles_exactly(
    bus: Bus,
    task: tokio::task::JoinHandle<crate::Result<()>>,
    seen: &Seen,
    expected: &BTreeSet<String>,
    what: &str,
) -> BusStats {
    eventually(what, &[seen], || seen.distinct().is_superset(expected)).await;
    linger(Duration::from_millis(100)).await;
    let stats = stopped(bus, task).await;
    assert_eq!(
        (&seen.distinct(), seen.len()),
        (expected, expected.len()),
        "{what}: exactly those, once each: {stats:?}"
    );
    stats
}

/// A restarted service resumes after its stored offset: it handles what was appended
/// while it was down, and of what it had handled before, at most one store interval again.
/// (Also: a new consumer starting at `Next` misses nothing published after its bus was
/// built and before it ran.)
pub(crate) async fn resume_after_restart(broker: &dyn Broker) {
    const COUNT: usize = 100;
    const STORE_EVERY: u32 = 7;
    let ns = namespace();
    let key = format!("{ns}.ledger.posted");
    let consumption = StreamConsumption::new().store_every(STORE_EVERY, Duration::from_secs(60));
    let clerk = publisher(broker.connect().await, &format!("{ns}-clerk")).await;

    let first = Seen::default();
    let bus = stream_bus(
        broker,
        &ns,
        vec![first.handler("post", &key)],
        consumption.clone(),
    )
    .await;
    let before = publish_all(&clerk, &key, COUNT).await; // after the build, before the run
    let task = start(&bus).await;
    eventually("the first run handled its events", &[&first], || {
        first.len() >= COUNT
    })
    .await;
    let stats = stopped(bus, task).await;
    assert_eq!(
        (first.distinct(), first.len()),
        (before.clone(), COUNT),
        "first run: each event published after the build, once: {stats:?}"
    );

    let while_down = publish_all(&clerk, &key, COUNT).await;
    let again = Seen::default();
    let bus = stream_bus(broker, &ns, vec![again.handler("post", &key)], consumption).await;
    let task = start(&bus).await;
    eventually(
        "the restarted service handled the backlog",
        &[&again],
        || again.distinct().is_superset(&while_down),
    )
    .await;
    linger(Duration::from_millis(100)).await;
    let stats = stopped(bus, task).await;
    let repeated: BTreeSet<String> = again.distinct().difference(&while_down).cloned().collect();
    assert!(
        repeated.is_subset(&before) && repeated.len() <= STORE_EVERY as usize,
        "the restart handled again {} events of the first run (at most one store interval, {STORE_EVERY}): {stats:?}",
        repeated.len()
    );
    assert_eq!(
        again.len(),
        again.distinct().len(),
        "an event was handled twice in one run"
    );
}

/// Only the contiguous prefix of handled deliveries is stored: with a store after every
/// event, a delivery still running at shutdown (abandoned at the deadline) holds the
/// offset back, so the next run handles it and what follows it, and nothing before it.
pub(crate) async fn only_handled_prefix_is_stored(broker: &dyn Broker) {
    const COUNT: usize = 10;
    const STUCK: usize = 3;
    let ns = namespace();
    let key = format!("{ns}.ledger.posted");
    let consumption = StreamConsumption::new().store_every(1, Duration::from_secs(60));
    let clerk = publisher(broker.connect().await, &format!("{ns}-clerk")).await;
    let mut ids = Vec::with_capacity(COUNT);
    let first = Seen::default();
    // built before publishing, so that its Next is before the first event
    let stuck_id: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let handler = {
        let (seen, stuck_id) = (first.clone(), Arc::clone(&stuck_id));
        Handler::raw("post", key.clone(), move |event: RawEvent, _ctx| {
            let (seen, stuck_id) = (seen.clone(), Arc::clone(&stuck_id));
            async move {
                let id = event.metadata().id.to_string();
                let stuck = stuck_id.lock().map(|s| s.as_deref() == Some(&*id));
                if stuck.unwrap_or(false) {
                    std::future::pending::<()>().await; // never finishes
                }
                seen.push(id);
                Ok::<_, HandlerError>(())
            }
        })
    };
    let connection = broker.connect().await;
    let bus = builder(connection, &ns, 10)
        .stream_consumption(consumption.clone())
        .shutdown_timeout(Duration::from_millis(300));
    let bus = build(bus, vec![handler]).await;
    for n in 0..COUNT {
        let message = message(&key, n);
        ids.push(message.metadata.id.to_string());
        if n == STUCK {
            *stuck_id.lock().unwrap_or_else(|p| p.into_inner()) = Some(ids[n].clone());
        }
        if let Err(error) = clerk.publish_message(message).await {
            panic!("publish {n} failed: {error}");
        }
    }
    let task = start(&bus).await;
    eventually("every event but the stuck one handled", &[&first], || {
        first.len() >= COUNT - 1
    })
    .await;
    let stats = stopped(bus, task).await;
    assert_eq!(
        stats.abandoned, 1,
        "the stuck delivery is abandoned: {stats:?}"
    );

    let again = Seen::default();
    let bus = stream_bus(broker, &ns, vec![again.handler("post", &key)], consumption).await;
    let task = start(&bus).await;
    let from_stuck: BTreeSet<String> = ids[STUCK..].iter().cloned().collect();
    let what = "the next run resumes at the stuck event, not before and not after it";
    handles_exactly(bus, task, &again, &from_stuck, what).await;
}

/// Handling that fails for good writes the event to the service's error stream with the
/// reason, the failed handlers, and the stream and offset it came from; then the offset
/// advances: a restarted service does not handle it again.
pub(crate) async fn failures_go_to_the_error_stream(broker: &dyn Broker) {
    let ns = namespace();
    let key = format!("{ns}.ledger.posted");
    let clerk = publisher(broker.connect().await, &format!("{ns}-clerk")).await;
    let poison = message(&key, 2);
    let poison_id = poison.metadata.id;
    let handler = |seen: &Seen| {
        let seen = seen.clone();
        Handler::raw("post", key.clone(), move |event: RawEvent, _ctx| {
            let seen = seen.clone();
            async move {
                if event.metadata().id == poison_id {
                    return Err(HandlerError::permanent("the ledger is closed"));
                }
                seen.push(event.metadata().id.to_string());
                Ok(())
            }
        })
    };
    let first = Seen::default();
    let bus = stream_bus(broker, &ns, vec![handler(&first)], StreamConsumption::new()).await;
    let mut sent = publish_all(&clerk, &key, 2).await;
    if let Err(error) = clerk.publish_message(poison.clone()).await {
        panic!("publish failed: {error}");
    }
    sent.extend(publish_all(&clerk, &key, 2).await);
    let task = start(&bus).await;
    eventually("four handled and one failed", &[&bus], || {
        let stats = bus.stats();
        stats.acked + stats.dead_lettered >= 5
    })
    .await;
    let stats = stopped(bus, task).await;
    assert_eq!((stats.acked, stats.dead_lettered), (4, 1), "{stats:?}");
    let dead = broker.dead_letters(&ns).await;
    let [entry] = dead.as_slice() else {
        panic!("one entry in the error stream of {ns}, found {dead:#?}");
    };
    let headers = &entry.metadata.headers;
    assert_eq!(
        entry.metadata.id, poison_id,
        "the failed event, its id kept"
    );
    assert_eq!(entry.body, poison.body, "the failed event's body");
    let reason = headers
        .get(HEADER_DEATH_REASON)
        .cloned()
        .unwrap_or_default();
    assert!(reason.contains("the ledger is closed"), "reason {reason:?}");
    assert_eq!(
        headers.get(HEADER_FAILED_HANDLERS).map(String::as_str),
        Some("post")
    );
    let stream = naming(&*broker.connect().await).stream_of_key(&key);
    assert_eq!(headers.get(HEADER_STREAM), Some(&stream), "its stream");
    let offset = headers.get(HEADER_STREAM_OFFSET);
    assert!(
        offset.is_some_and(|o| o.parse::<u64>().is_ok()),
        "its offset: {offset:?}"
    );

    // the offset went past it: a restart handles only what comes next
    let again = Seen::default();
    let bus = stream_bus(broker, &ns, vec![handler(&again)], StreamConsumption::new()).await;
    let task = start(&bus).await;
    let marker = publish_all(&clerk, &key, 1).await;
    eventually(
        "the restarted service handled the marker",
        &[&again],
        || again.len() >= 1,
    )
    .await;
    linger(Duration::from_millis(100)).await;
    let stats = stopped(bus, task).await;
    assert_eq!(again.distinct(), marker, "nothing handled again: {stats:?}");
    assert_eq!(
        stats.dead_lettered, 0,
        "the failed event came back: {stats:?}"
    );
}

/// With single active consumer, of two instances of a service one handles everything;
/// when it stops, the other takes over after the stored offset: every event once.
pub(crate) async fn single_active_consumer_takes_over(broker: &dyn Broker) {
    const EACH: usize = 20;
    let ns = namespace();
    let key = format!("{ns}.ledger.posted");
    let consumption = StreamConsumption::new()
        .single_active(true)
        .store_every(1000, Duration::from_secs(60));
    let clerk = publisher(broker.connect().await, &format!("{ns}-clerk")).await;
    let (one, two) = (Seen::default(), Seen::default());
    let first = stream_bus(
        broker,
        &ns,
        vec![one.handler("post", &key)],
        consumption.clone(),
    )
    .await;
    let second = stream_bus(broker, &ns, vec![two.handler("post", &key)], consumption).await;
    let first_task = start(&first).await;
    let second_task = start(&second).await;
    let batch = publish_all(&clerk, &key, EACH).await;
    eventually(
        "the active instance handled the batch",
        &[&one, &two],
        || one.len() + two.len() >= EACH,
    )
    .await;
    linger(Duration::from_millis(100)).await;
    assert_eq!(
        (one.distinct(), two.len()),
        (batch, 0),
        "the first instance is the active one, the other waits"
    );
    stopped(first, first_task).await;
    let next_batch = publish_all(&clerk, &key, EACH).await;
    let what = "the second instance took over: what came after the first stopped";
    handles_exactly(second, second_task, &two, &next_batch, what).await;
}

/// A new named consumer from `First` reads the history (Watermill's
/// NewSubscriberReceivesOldMessages); anonymous readers start where they are told:
/// first, last, next, an absolute offset, a timestamp.
pub(crate) async fn start_positions(broker: &dyn Broker) {
    let ns = namespace();
    let key = format!("{ns}.tick.done");
    let connection = broker.connect().await;
    let stream = naming(&*connection).stream_of_key(&key);
    let mut ids = Vec::new();
    let mut append = async |n: usize| {
        let message = message(&key, n);
        ids.push(message.metadata.id.to_string());
        if let Err(error) = connection.publish(message.into()).await {
            panic!("publish {n} to {stream} failed: {error}");
        }
    };
    for n in 0..3 {
        append(n).await;
    }
    let middle = SystemTime::now();
    for n in 3..6 {
        append(n).await;
    }
    let read = |start: StartAt, until: String| {
        let (connection, stream) = (Arc::clone(&connection), stream.clone());
        let reader = format!("{ns}-reader");
        async move {
            let mut consumer = anonymous_reader(&*connection, &reader, &stream, start).await;
            let mut read = Vec::new();
            while read.last().map(|(_, id)| id) != Some(&until) {
                match within(PATIENCE, "the next message", consumer.next()).await {
                    Some(Ok(delivery)) => {
                        let id = delivery.message.metadata.id.to_string();
                        read.push((delivery.offset, id));
                        let _ = delivery.acker.settle(Settlement::Ack).await;
                    }
                    other => panic!("reading from {start:?}: {other:?} after {read:?}"),
                }
            }
            let _ = consumer.close().await;
            read
        }
    };
    let all = read(StartAt::First, ids[5].clone()).await;
    let read_ids =
        |read: &[(Option<u64>, String)]| read.iter().map(|(_, id)| id.clone()).collect::<Vec<_>>();
    assert_eq!(read_ids(&all), ids, "First: the whole stream, in order");
    let Some(fourth) = all[4].0 else {
        panic!("a stream delivery has an offset: {all:?}");
    };
    assert_eq!(
        read_ids(&read(StartAt::Offset(fourth), ids[5].clone()).await),
        ids[4..],
        "Offset: from that offset"
    );
    let since = read_ids(&read(StartAt::Timestamp(middle), ids[5].clone()).await);
    assert!(
        since.ends_with(&ids[3..]) && !since.contains(&ids[0]),
        "Timestamp: what was appended since (a chunk may start a little earlier): {since:?}"
    );
    let last = read_ids(&read(StartAt::Last, ids[5].clone()).await);
    assert!(
        last.ends_with(&ids[5..]) && !last.contains(&ids[0]),
        "Last: the last chunk: {last:?}"
    );
    // Next: only what is appended after the subscription
    let next_reader = format!("{ns}-next");
    let mut consumer = anonymous_reader(&*connection, &next_reader, &stream, StartAt::Next).await;
    let marker = message(&key, 6);
    if let Err(error) = connection.publish(marker.clone().into()).await {
        panic!("publishing the marker failed: {error}");
    }
    match within(PATIENCE, "the marker", consumer.next()).await {
        Some(Ok(delivery)) => assert_eq!(
            delivery.message.metadata.id, marker.metadata.id,
            "Next: only what is appended after the subscription"
        ),
        other => panic!("reading from Next: {other:?}"),
    }
    let _ = consumer.close().await;
    let _ = connection.close().await;
}

/// A service that starts at `First` handles everything its stream held before it existed
/// (Watermill's NewSubscriberReceivesOldMessages), each event once.
pub(crate) async fn new_service_reads_history(broker: &dyn Broker) {
    const COUNT: usize = 30;
    let ns = namespace();
    let key = format!("{ns}.ledger.posted");
    let clerk = publisher(broker.connect().await, &format!("{ns}-clerk")).await;
    let history = publish_all(&clerk, &key, COUNT).await;
    let seen = Seen::default();
    let consumption = StreamConsumption::new().start_at(StartAt::First);
    let bus = stream_bus(
        broker,
        &format!("{ns}-late"),
        vec![seen.handler("post", &key)],
        consumption,
    )
    .await;
    let task = start(&bus).await;
    let what = "the new service read the whole history";
    handles_exactly(bus, task, &seen, &history, what).await;
}
