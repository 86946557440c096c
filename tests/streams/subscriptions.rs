//! Per-entity subscriptions through RabbitMQ Streams (`Bus::subscribe` with `.param`): a
//! hundred readers of one desk each get exactly their desk's edits and leave the broker
//! when dropped; a reader of one entity among fifty asks the broker for its key only
//! (stream filtering), so it is sent a fraction of the stream, and still misses none of
//! its own. Against `RABBITMQ_STREAM_HOST`/`RABBITMQ_STREAM_PORT` (see `support::broker`).

use std::time::Duration;

use futures::future::join_all;
use pubsub::Uuid;
use pubsub::prelude::*;
use pubsub::stream::{StartAt, StreamNaming};
use pubsub::streams::StreamTransport;
use pubsub::transport::Transport;

use crate::desks::{self, Edited};
use crate::support;

/// The stream consumers the broker has now, on every stream (from its metrics table).
fn broker_stream_consumers() -> usize {
    let out = support::broker::ctl(&[
        "-q",
        "eval",
        "'ets:info(rabbit_stream_consumer_created, size).'",
    ]);
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a count: {out:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_desks_each_get_their_own_and_leave_when_dropped() {
    let Some(config) = support::stream_config() else {
        return;
    };
    let run = Uuid::now_v7().simple().to_string();
    let config = config.naming(StreamNaming::new(format!("desks-{run}")));
    let transport = StreamTransport::new(config);
    let bus = Bus::publisher(format!("desks-{run}"), transport.clone());
    let streams = desks::each_desk_gets_its_own(&bus, 0, 10).await;
    let readers = transport.health().consumers.len();
    assert_eq!(readers, 100, "one reader per subscription");
    let counted = support::broker::has_rabbitmqctl().then(broker_stream_consumers);
    drop(streams);
    // each dropped stream closes its reader, on the client and on the broker
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = transport.health().consumers.len();
        let on_broker = counted.map(|before| before.saturating_sub(broker_stream_consumers()));
        if left == 0 && on_broker.is_none_or(|gone| gone >= 100) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "20 s after the streams were dropped: {left} readers left on the client, {on_broker:?} of 100 gone from the broker"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bus.close().await.unwrap();
}

/// Publishes `per` edits of each of `desks` desks: desk by desk, each desk's edits
/// confirmed before the next desk's (as a busy room writes in bursts), or interleaved.
async fn publish_desks(bus: &Bus, desks: u64, per: u64, bursts: bool) {
    if bursts {
        for desk in 0..desks {
            let edits = (0..per).map(|n| async move { bus.publish(&Edited { desk, n }).await });
            for published in join_all(edits).await {
                published.unwrap();
            }
        }
    } else {
        for n in 0..per {
            let edits =
                (0..desks).map(|desk| async move { bus.publish(&Edited { desk, n }).await });
            for published in join_all(edits).await {
                published.unwrap();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_of_one_desk_among_fifty_is_sent_a_fraction_and_misses_none() {
    const DESKS: u64 = 50;
    const PER: u64 = 40;
    let Some(config) = support::stream_config() else {
        return;
    };
    for bursts in [true, false] {
        let run = Uuid::now_v7().simple().to_string();
        let config = config
            .clone()
            .naming(StreamNaming::new(format!("filter-{run}")));
        let transport = StreamTransport::new(config);
        let bus = Bus::publisher(format!("filter-{run}"), transport.clone());
        publish_desks(&bus, DESKS, PER, bursts).await;
        let mut desk_17 = bus
            .subscribe::<Edited>()
            .param(Edited::DESK, 17)
            .start_at(StartAt::First)
            .await
            .unwrap();
        for n in 0..PER {
            let edit = desks::next_edit(&mut desk_17, &format!("edit {n} of desk 17")).await;
            assert_eq!(edit.event, Edited { desk: 17, n });
        }
        // the broker sends whole chunks: all of desk 17's were read once its last edit was
        let health = transport.health();
        let reader = health.consumers.first().expect("the reader's health");
        let total = DESKS * PER;
        let layout = if bursts {
            "desk by desk"
        } else {
            "interleaved"
        };
        println!(
            "stream filtering, {layout}: the reader of 1 desk among {DESKS} was sent {} of {total} \
             messages ({:.1}%), {} passed over on the client",
            reader.received,
            100.0 * reader.received as f64 / total as f64,
            reader.passed_over,
        );
        assert_eq!(
            reader.received - reader.passed_over,
            PER,
            "exactly its own passed"
        );
        if bursts {
            assert!(
                reader.received * 4 <= total,
                "with each desk's edits in chunks of their own, the broker skips most chunks: \
                 sent {} of {total}",
                reader.received
            );
        }
        drop(desk_17);
        bus.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instance_key_survives_retries_into_the_error_stream() {
    let Some(config) = support::stream_config() else {
        return;
    };
    let run = Uuid::now_v7().simple().to_string();
    let config = config.naming(StreamNaming::new(format!("keys-{run}")));
    let service = format!("desks-{run}");
    desks::the_instance_key_survives_retries_dead_letters_and_requests(
        StreamTransport::new(config),
        &service,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_super_stream_keeps_a_desk_in_one_partition_and_its_reader_gets_only_it() {
    let Some(config) = support::stream_config() else {
        return;
    };
    let run = Uuid::now_v7().simple().to_string();
    let naming = StreamNaming::new(format!("parts-{run}")).super_stream("desk", 3);
    let transport = StreamTransport::new(config.naming(naming.clone()));
    let bus = Bus::publisher(format!("parts-{run}"), transport.clone());
    for desk in 0..12 {
        for n in 0..3 {
            bus.publish(&Edited { desk, n }).await.unwrap();
        }
    }
    let stream = naming.stream_of_domain("desk");
    let partitions = naming.partitions(&stream).expect("a super stream");
    let mut held: Vec<Vec<String>> = Vec::new();
    for partition in &partitions {
        let read = transport.read_all(partition).await.unwrap();
        held.push(read.into_iter().map(|(_, m)| m.metadata.key).collect());
    }
    for desk in 0..12u64 {
        let key = format!("desk.{desk}.edited");
        let holding: Vec<&String> = partitions
            .iter()
            .zip(&held)
            .filter(|(_, keys)| keys.contains(&key))
            .map(|(partition, _)| partition)
            .collect();
        let expected = naming.partition_for(&stream, &desk.to_string());
        assert_eq!(
            holding,
            [&expected.unwrap()],
            "desk {desk}: partitioned by the desk"
        );
    }
    assert!(
        held.iter().filter(|keys| !keys.is_empty()).count() > 1,
        "spread: {held:?}"
    );
    let mut desk_5 = bus
        .subscribe::<Edited>()
        .param(Edited::DESK, 5)
        .start_at(StartAt::First)
        .await
        .unwrap();
    assert_eq!(desk_5.stream(), stream, "every partition is read");
    for n in 0..3 {
        let edit = desks::next_edit(&mut desk_5, &format!("edit {n} of desk 5")).await;
        assert_eq!(edit.event, Edited { desk: 5, n });
    }
    drop(desk_5);
    bus.close().await.unwrap();
}
