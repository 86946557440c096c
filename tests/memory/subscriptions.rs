//! Per-entity subscriptions at run time on the in-memory transport (`Bus::subscribe` with
//! `.param`): in queue mode each is a private queue bound to its entity's key, gone when
//! the stream is dropped; in stream mode a reader that the broker passes only its
//! entity's messages, replaying history too; a super stream keeps an entity's events in
//! one partition.

use futures::StreamExt;
use pubsub::Error;
use pubsub::prelude::*;
use pubsub::stream::{Retention, StartAt, StreamNaming};
use pubsub::transport::TransportError;

use crate::desks::{self, Edited};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(key = "room.{room}.said.{user}")]
struct Said {
    room: String,
    user: u32,
    text: String,
}

fn said(room: &str, user: u32, text: &str) -> Said {
    Said {
        room: room.into(),
        user,
        text: text.into(),
    }
}

async fn next<E>(stream: &mut pubsub::stream::EventStream<E>) -> E {
    let next = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next()).await;
    next.expect("an event in time")
        .expect("the stream goes on")
        .expect("an event that decodes")
        .event
}

#[tokio::test]
async fn a_hundred_desks_each_get_their_own_and_their_queues_go_with_them() {
    let transport = MemoryTransport::new();
    let bus = Bus::publisher("desks", transport.clone());
    let streams = desks::each_desk_gets_its_own(&bus, 0, 20).await;
    let live = |names: Vec<String>| {
        names
            .iter()
            .filter(|q| q.starts_with("desks.live."))
            .count()
    };
    assert_eq!(live(transport.queue_names()), 100);
    drop(streams);
    assert_eq!(transport.queue_names(), Vec::<String>::new());
    // with nothing bound, an edit of a desk that was watched is unroutable
    let unroutable = transport.unroutable();
    bus.publish(&Edited { desk: 1, n: 0 }).await.unwrap();
    assert_eq!(transport.unroutable(), unroutable + 1);
}

#[tokio::test]
async fn a_hundred_desks_on_a_stream_each_get_their_own() {
    let transport = MemoryTransport::stream_backed();
    let bus = Bus::publisher("desks", transport.clone());
    let streams = desks::each_desk_gets_its_own(&bus, 0, 20).await;
    drop(streams);
    transport
        .wait_idle(std::time::Duration::from_secs(5))
        .await
        .expect("no reader holds anything once the streams are dropped");
}

#[tokio::test]
async fn two_params_narrow_to_one_key_and_one_leaves_the_other_open() {
    let bus = Bus::publisher("chat", MemoryTransport::new());
    let mut ann_in_lobby = bus
        .subscribe::<Said>()
        .param(Said::ROOM, "lobby")
        .param(Said::USER, 1)
        .await
        .unwrap();
    let mut lobby = bus
        .subscribe::<Said>()
        .param(Said::ROOM, "lobby")
        .await
        .unwrap();
    let mut everyone = bus.subscribe::<Said>().await.unwrap();
    for (room, user, text) in [
        ("attic", 1, "up"),
        ("lobby", 2, "hi"),
        ("lobby", 1, "hello"),
    ] {
        bus.publish(&said(room, user, text)).await.unwrap();
    }
    assert_eq!(next(&mut ann_in_lobby).await, said("lobby", 1, "hello"));
    assert_eq!(next(&mut lobby).await.text, "hi");
    assert_eq!(next(&mut lobby).await.text, "hello");
    for text in ["up", "hi", "hello"] {
        assert_eq!(next(&mut everyone).await.text, text);
    }
}

#[tokio::test]
async fn a_value_that_cannot_be_a_word_fails_the_subscription() {
    let bus = Bus::publisher("chat", MemoryTransport::new());
    let error = bus
        .subscribe::<Said>()
        .param(Said::ROOM, "a.b")
        .await
        .unwrap_err();
    let Error::Key(key) = &error else {
        panic!("not a key error: {error}");
    };
    assert_eq!((key.param, key.value.as_str()), ("room", "a.b"));
    assert!(
        error.to_string().contains("room.{room}.said.{user}"),
        "{error}"
    );
}

#[tokio::test]
async fn a_queue_transport_has_no_history_to_replay() {
    let bus = Bus::publisher("chat", MemoryTransport::new());
    let replay = bus.subscribe::<Said>().start_at(StartAt::First).await;
    let error = replay.unwrap_err();
    assert!(
        matches!(error, Error::Transport(TransportError::Unsupported { .. })),
        "{error}"
    );
    assert!(error.to_string().contains("stream-backed"), "{error}");
    let named = bus
        .subscribe::<Said>()
        .stream("chat.lobby")
        .await
        .unwrap_err();
    assert!(named.to_string().contains("stream-backed"), "{named}");
}

#[tokio::test]
async fn a_late_joiner_replays_its_room_only_then_goes_on_live() {
    let transport = MemoryTransport::stream_backed();
    let bus = Bus::publisher("chat", transport.clone());
    for (room, text) in [("lobby", "one"), ("attic", "no"), ("lobby", "two")] {
        bus.publish(&said(room, 1, text)).await.unwrap();
    }
    let mut lobby = bus
        .subscribe::<Said>()
        .param(Said::ROOM, "lobby")
        .param(Said::USER, 1)
        .start_at(StartAt::First)
        .await
        .unwrap();
    assert_eq!(next(&mut lobby).await.text, "one");
    assert_eq!(next(&mut lobby).await.text, "two");
    bus.publish(&said("attic", 1, "still no")).await.unwrap();
    bus.publish(&said("lobby", 1, "three")).await.unwrap();
    assert_eq!(next(&mut lobby).await.text, "three");
}

#[tokio::test]
async fn a_super_stream_keeps_an_entity_in_one_partition_and_its_reader_gets_only_it() {
    let naming = StreamNaming::default().super_stream("desk", 4);
    let transport = MemoryTransport::stream_backed_with(naming.clone(), Retention::default());
    let bus = Bus::publisher("desks", transport.clone());
    for desk in 0..20 {
        for n in 0..3 {
            bus.publish(&Edited { desk, n }).await.unwrap();
        }
    }
    let partitions = naming.partitions("events.desk").expect("a super stream");
    let mut used = 0;
    for desk in 0..20u64 {
        let holding: Vec<&String> = partitions
            .iter()
            .filter(|p| {
                let messages = transport.stream_messages(p).unwrap_or_default();
                messages
                    .iter()
                    .any(|(_, m)| m.metadata.key == format!("desk.{desk}.edited"))
            })
            .collect();
        assert_eq!(holding.len(), 1, "desk {desk}'s edits are in {holding:?}");
        let expected = naming.partition_for("events.desk", &desk.to_string());
        assert_eq!(
            Some(holding[0]),
            expected.as_ref(),
            "partitioned by the desk"
        );
        used |= 1 << partitions.iter().position(|p| p == holding[0]).unwrap_or(0);
    }
    assert!(used > 1, "twenty desks spread over more than one partition");
    let mut desk_7 = bus
        .subscribe::<Edited>()
        .param(Edited::DESK, 7)
        .start_at(StartAt::First)
        .await
        .unwrap();
    // every partition is read: an event partitioned by another key is not missed
    assert_eq!(desk_7.stream(), "events.desk");
    let elsewhere = pubsub::PublishOptions::new().partition_key("not-7");
    bus.publish_with(&Edited { desk: 7, n: 3 }, elsewhere)
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(next(&mut desk_7).await);
    }
    // in order within a partition; across partitions interleaved
    got.sort_by_key(|edit| edit.n);
    assert_eq!(
        got,
        (0..4).map(|n| Edited { desk: 7, n }).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn the_instance_key_survives_retries_dead_letters_and_requests_in_memory() {
    desks::the_instance_key_survives_retries_dead_letters_and_requests(
        MemoryTransport::new(),
        "desks",
    )
    .await;
}

#[tokio::test]
async fn the_instance_key_survives_retries_into_the_error_stream_in_memory() {
    desks::the_instance_key_survives_retries_dead_letters_and_requests(
        MemoryTransport::stream_backed(),
        "desks",
    )
    .await;
}

#[tokio::test]
async fn an_unread_subscription_keeps_the_newest() {
    let bus = Bus::publisher("desks", MemoryTransport::new());
    desks::an_unread_subscription_keeps_the_newest(&bus).await;
}
