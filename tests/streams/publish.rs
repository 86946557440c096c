//! Publishing against the real broker: what is confirmed is in the stream, in order, once;
//! a re-sent batch under the same producer name and ids is de-duplicated. Against
//! `RABBITMQ_STREAM_HOST`/`RABBITMQ_STREAM_PORT` (see `support::broker`).

use futures::StreamExt;
use pubsub::streams::StreamTransport;
use pubsub::{
    Message,
    transport::{Bytes, Destination, Outgoing, Transport},
};
use rabbitmq_stream_client::types::OffsetSpecification;
use std::time::Duration;

use crate::support;

fn event(n: usize) -> Message {
    Message::new("order.created", Bytes::from(format!("{{\"n\":{n}}}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_events_are_read_back_in_order() {
    let Some(config) = support::stream_config() else {
        return;
    };
    let stream = support::namespace("publish");
    let transport = StreamTransport::new(config);
    const N: usize = 2_000;
    let mut confirms = Vec::with_capacity(N);
    let sent: Vec<Message> = (0..N).map(event).collect();
    for message in &sent {
        let to = Destination::Stream {
            stream: stream.clone(),
            partition_key: None,
        };
        confirms.push(
            transport
                .send(Outgoing::new(message.clone(), to))
                .await
                .expect("sent"),
        );
    }
    for (n, confirm) in confirms.into_iter().enumerate() {
        confirm
            .await
            .unwrap_or_else(|e| panic!("event {n} not confirmed: {e}"));
    }
    let read = transport.read_all(&stream).await.expect("read back");
    assert_eq!(read.len(), N, "every confirmed event once");
    for (n, ((offset, message), sent)) in read.iter().zip(&sent).enumerate() {
        assert_eq!(*offset, n as u64);
        // the timestamp travels in milliseconds
        let mut expected = sent.clone();
        expected.metadata.timestamp = message.metadata.timestamp;
        let drift = sent
            .metadata
            .timestamp
            .duration_since(message.metadata.timestamp);
        assert!(
            drift.as_ref().is_ok_and(|d| d.as_millis() < 1),
            "event {n}: {drift:?}"
        );
        assert_eq!(message, &expected, "event {n} as published");
    }
    delete(&transport, &[&stream]).await;
    transport.close().await.expect("closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_batch_is_in_the_stream_once_and_ids_resume_after_a_restart() {
    let Some(config) = support::stream_config() else {
        return;
    };
    let stream = support::namespace("dedup");
    const BATCH: u64 = 200;
    let first = StreamTransport::new(config.clone());
    let producer = first.producer("dedup", &stream).await.expect("producer");
    assert_eq!(
        producer.next_id().await,
        1,
        "a new producer starts at id 1, never 0"
    );
    let batch: Vec<Message> = (0..BATCH as usize).map(event).collect();
    let mut confirms = Vec::new();
    for message in &batch {
        confirms.push(producer.send(message).await.expect("sent"));
    }
    for confirm in confirms {
        confirm.await.expect("confirmed");
    }
    // the same batch again, same name, same ids (1..=BATCH): confirmed, and dropped
    let mut confirms = Vec::new();
    for (i, message) in batch.iter().enumerate() {
        confirms.push(
            producer
                .send_with_id(message, i as u64 + 1)
                .await
                .expect("re-sent"),
        );
    }
    for confirm in confirms {
        confirm.await.expect("a duplicate is confirmed too");
    }
    first.close().await.expect("closed");

    // a restarted producer of the same name resumes after the broker's last id, and
    // re-sending id 1 (the smallest) after the restart is dropped as well
    let second = StreamTransport::new(config);
    let producer = second
        .producer("dedup", &stream)
        .await
        .expect("producer again");
    assert_eq!(producer.next_id().await, BATCH + 1);
    producer
        .send_with_id(&batch[0], 1)
        .await
        .expect("re-sent")
        .await
        .expect("confirmed");
    let last = event(9_999);
    producer
        .send(&last)
        .await
        .expect("sent")
        .await
        .expect("confirmed");
    // an explicit id at the next one moves the next one past it: a send after it does
    // not take the same id (one of the two would be dropped, or confirmed twice)
    let next = producer.next_id().await;
    let explicit = event(10_000);
    let after = event(10_001);
    let explicit_sent = producer.send_with_id(&explicit, next).await.expect("sent");
    let after_sent = producer.send(&after).await.expect("sent");
    explicit_sent.await.expect("confirmed");
    after_sent.await.expect("confirmed");
    assert_eq!(producer.next_id().await, next + 2);

    let read = second.read_all(&stream).await.expect("read back");
    let ids: Vec<_> = read.iter().map(|(_, m)| m.metadata.id).collect();
    let mut expected: Vec<_> = batch.iter().map(|m| m.metadata.id).collect();
    expected.extend([last.metadata.id, explicit.metadata.id, after.metadata.id]);
    assert_eq!(ids.len(), BATCH as usize + 3, "each event once");
    assert_eq!(ids, expected);
    delete(&second, &[&stream]).await;
    second.close().await.expect("closed");
}

/// Messages whose batch of 100 would pass the frame size (1 MiB): 60 of 100 KiB sent
/// without waiting are all confirmed and read back whole, in order (the producer holds at
/// most 1 MiB of them unconfirmed: frames of 10); with the default limit (64 KiB) one is
/// refused, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_are_batched_under_the_frame_size_or_refused() {
    let Some(config) = support::stream_config() else {
        return;
    };
    let stream = support::namespace("large");
    let transport = StreamTransport::new(config.clone().max_message_size(128 * 1024));
    const N: usize = 60;
    let body = vec![b'x'; 100 * 1024];
    let mut confirms = Vec::with_capacity(N);
    let mut sent = Vec::with_capacity(N);
    for _ in 0..N {
        let to = Destination::Stream {
            stream: stream.clone(),
            partition_key: None,
        };
        let message = Message::new("order.created", Bytes::from(body.clone()));
        sent.push(message.metadata.id);
        confirms.push(
            transport
                .send(Outgoing::new(message, to))
                .await
                .expect("sent"),
        );
    }
    let mut failed = Vec::new();
    for (n, confirm) in confirms.into_iter().enumerate() {
        if let Err(error) = confirm.await {
            failed.push(format!("{n}: {error}"));
        }
    }
    assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
    // read back by a plain client (read_all gives up on a stream whose last chunk takes
    // over 300 ms to arrive, and the client 0.11 takes about 500 ms to decode one of 1 MiB)
    let environment = support::raw_stream_environment(&config).await;
    let mut reader = environment
        .consumer()
        .offset(OffsetSpecification::First)
        .build(&stream)
        .await
        .expect("a raw consumer");
    let mut read = Vec::with_capacity(N);
    while read.len() < N {
        let delivery = tokio::time::timeout(Duration::from_secs(10), reader.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {N} read back in time", read.len()))
            .expect("the subscription goes on")
            .expect("a delivery");
        let message = delivery.message();
        assert_eq!(
            message.data().map(<[u8]>::len),
            Some(body.len()),
            "whole bodies"
        );
        let id = message
            .properties()
            .and_then(|p| p.message_id.as_ref())
            .and_then(|id| <&pubsub::Uuid>::try_from(id).ok().copied());
        read.push(id.expect("the event id"));
    }
    let _ = reader.handle().close().await;
    assert_eq!(read, sent, "every large message read back once, in order");
    // with the default limit (64 KiB), such a message is refused, saying why
    let limited = StreamTransport::new(config);
    let to = Destination::Stream {
        stream: stream.clone(),
        partition_key: None,
    };
    let refused = limited
        .send(Outgoing::new(
            Message::new("order.created", Bytes::from(body)),
            to,
        ))
        .await
        .expect_err("refused");
    assert!(
        refused
            .to_string()
            .contains("exceeds StreamConfig::max_message_size"),
        "{refused}"
    );
    let _ = limited.close().await;
    delete(&transport, &[&stream]).await;
    transport.close().await.expect("closed");
}

/// Deletes `streams`.
async fn delete(transport: &StreamTransport, streams: &[&str]) {
    for stream in streams {
        transport
            .delete_stream(stream)
            .await
            .unwrap_or_else(|e| panic!("deleting {stream}: {e}"));
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, pubsub::Event)]
#[event(domain = "room", action = "said")]
struct Said {
    user: String,
    text: String,
}

/// A typed event goes to a stream the publisher names (a chat room), with its own content
/// type, and reads back typed from there; the stream of its domain gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_event_published_to_a_named_stream_reads_back_from_it() {
    let Some(config) = support::stream_config() else {
        return;
    };
    let room = support::namespace("publish-room");
    let transport = StreamTransport::new(config);
    let chat = pubsub::Bus::publisher("chat", transport.clone());
    let said = Said {
        user: "ada".into(),
        text: "hello, room".into(),
    };
    chat.publish_with(&said, pubsub::PublishOptions::new().to_stream(&room))
        .await
        .expect("published to the room");
    let mut events = chat
        .subscribe::<Said>()
        .stream(&room)
        .start_at(pubsub::stream::StartAt::First)
        .await
        .expect("reading the room");
    let read = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("an event within 10 s")
        .expect("the stream goes on")
        .expect("decodes");
    assert_eq!(read.event, said);
    assert_eq!(read.stream, room);
    assert_eq!(read.metadata.content_type, "application/json");
    drop(events);
    delete(&transport, &[&room]).await;
    transport.close().await.expect("closed");
}
