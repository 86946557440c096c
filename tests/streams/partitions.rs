//! A super stream on RabbitMQ Streams, counted: events keyed by order id go to the
//! partition of their key, in order; a service reads every partition with an offset of
//! its own on each, and a restart reads each partition after its own offset.
//! Against `RABBITMQ_STREAM_HOST`/`RABBITMQ_STREAM_PORT` (see `support::broker`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use pubsub::streams::{StreamConfig, StreamTransport};
use pubsub::{
    Bus, Event, HandlerSelection, PublishOptions,
    stream::{StartAt, StreamConsumption, StreamNaming},
    transport::Transport,
};

use crate::support::{self, counted::*};

const PARTITIONS: u16 = 3;
const KEYS: u64 = 50;

fn order(n: u64) -> PublishOptions {
    PublishOptions::new().partition_key(format!("order-{}", n % KEYS))
}

async fn service(config: &StreamConfig, service: &str, counts: &Arc<Counts>) -> Bus {
    Bus::builder()
        .service(service)
        .transport(StreamTransport::new(config.clone()))
        .select_handlers(HandlerSelection::None)
        .prefetch(100)
        .stream_consumption(
            StreamConsumption::new()
                .start_at(StartAt::First)
                .store_every(100, Duration::from_millis(200)),
        )
        .handler(counting(counts))
        .build()
        .await
        .expect("building the bus")
}

async fn publish_keyed(publisher: &Bus, range: std::ops::Range<u64>) -> BTreeSet<u64> {
    let mut confirmed = BTreeSet::new();
    // one task per key residue keeps each key's events in publish order
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..10 {
        let bus = publisher.clone();
        let range = range.clone();
        tasks.spawn(async move {
            let mut done = Vec::new();
            for n in range.filter(|n| (n % KEYS) % 10 == t) {
                bus.publish_with(&Tick { n, note: None }, order(n))
                    .await
                    .unwrap_or_else(|e| panic!("publishing {n}: {e}"));
                done.push(n);
            }
            done
        });
    }
    while let Some(done) = tasks.join_next().await {
        confirmed.extend(done.expect("a publishing task"));
    }
    confirmed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_super_stream_partitions_by_key_with_an_offset_per_partition() {
    let Some(config) = support::stream_config() else {
        return;
    };
    let _one = support::one_at_a_time().await;
    let ns = support::namespace("faults-partitions");
    let naming = StreamNaming::new(ns.clone()).super_stream("faults", PARTITIONS);
    let config = config.naming(naming.clone());
    let stream = naming.stream_of_key(Tick::KEY);
    let partitions = naming.partitions(&stream).expect("a super stream");
    let name = format!("{ns}-svc");
    const N: u64 = 3_000;

    let publishing = StreamTransport::new(config.clone());
    let publisher = Bus::publisher(format!("{ns}-shop"), publishing.clone());
    let counts = Arc::new(Counts::default());
    let bus = service(&config, &name, &counts).await;
    let running = bus.spawn().await.expect("running");
    let confirmed = publish_keyed(&publisher, 0..N).await;
    wait_until("every event handled", Duration::from_secs(60), || {
        counts.missing(&confirmed).is_empty()
    })
    .await;
    bus.shutdown();
    running.await.expect("bus task").expect("bus ended");

    // each key in one partition, in order; the partition the naming says
    let mut lengths = BTreeMap::new();
    let mut last_offsets = BTreeMap::new();
    for partition in &partitions {
        let read = publishing
            .read_all(partition)
            .await
            .expect("reading a partition");
        // offsets are not dense on the broker: chunks that are not messages take some
        last_offsets.insert(partition.clone(), read.last().map(|(offset, _)| *offset));
        let held: Vec<u64> = read
            .iter()
            .map(|(_, m)| Tick::decode_message(m).expect("a tick").n)
            .collect();
        for key in 0..KEYS {
            let of_key: Vec<u64> = held.iter().copied().filter(|n| n % KEYS == key).collect();
            if of_key.is_empty() {
                continue;
            }
            assert_eq!(of_key.len() as u64, N / KEYS, "{partition}: key {key}");
            assert!(of_key.is_sorted(), "{partition}: key {key} out of order");
            assert_eq!(
                naming
                    .partition_for(&stream, &format!("order-{key}"))
                    .as_deref(),
                Some(partition.as_str())
            );
        }
        lengths.insert(partition.clone(), held.len() as u64);
    }
    let total: u64 = lengths.values().sum();
    report(
        "super stream",
        N as usize,
        confirmed.len(),
        &counts,
        &format!(" / per partition {lengths:?}, last offsets {last_offsets:?}"),
    );
    assert_eq!(total, N, "every event in one partition: {lengths:?}");
    assert!(
        lengths.values().filter(|l| **l > 0).count() >= 2,
        "{lengths:?}"
    );
    assert_eq!(counts.duplicates(), (0, 0));
    // shutdown stored each partition's handled prefix
    for (partition, last) in &last_offsets {
        let stored = publishing
            .stored_offset(&name, partition)
            .await
            .expect("a stored offset");
        assert_eq!(stored, *last, "{partition}");
    }

    // a restart reads only what came after each partition's offset
    let again = Arc::new(Counts::default());
    let bus = service(&config, &name, &again).await;
    let running = bus.spawn().await.expect("running");
    let more = publish_keyed(&publisher, N..N + 300).await;
    wait_until("the new events handled", Duration::from_secs(60), || {
        again.missing(&more).is_empty()
    })
    .await;
    bus.shutdown();
    running.await.expect("bus task").expect("bus ended");
    let seen: BTreeSet<u64> = lock(&again.handled).keys().copied().collect();
    assert_eq!(
        seen, more,
        "only the new events, after each partition's offset"
    );

    let streams = [stream.clone(), naming.error_stream(&name)];
    for stream in streams {
        publishing.delete_stream(&stream).await.expect("deleting");
    }
    let _ = publishing.close().await;
}
