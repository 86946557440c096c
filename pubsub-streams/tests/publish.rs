//! Publishing against the real broker: what is confirmed is in the stream, in order, once;
//! a re-sent batch under the same producer name and ids is de-duplicated.

mod support;

use pubsub_core::{Bytes, Destination, Message, Outgoing, Transport};
use pubsub_streams::StreamTransport;

fn event(n: usize) -> Message {
    Message::new("order.created", Bytes::from(format!("{{\"n\":{n}}}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_events_are_read_back_in_order() {
    let Some(config) = support::broker() else {
        return;
    };
    let stream = support::unique("publish");
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
    support::delete(&transport, &[&stream]).await;
    transport.close().await.expect("closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_batch_is_in_the_stream_once_and_ids_resume_after_a_restart() {
    let Some(config) = support::broker() else {
        return;
    };
    let stream = support::unique("dedup");
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

    let read = second.read_all(&stream).await.expect("read back");
    let ids: Vec<_> = read.iter().map(|(_, m)| m.metadata.id).collect();
    let mut expected: Vec<_> = batch.iter().map(|m| m.metadata.id).collect();
    expected.push(last.metadata.id);
    assert_eq!(ids.len(), BATCH as usize + 1, "each event once");
    assert_eq!(ids, expected);
    support::delete(&second, &[&stream]).await;
    second.close().await.expect("closed");
}

/// Messages whose batch of 100 would pass the frame size (1 MiB): 60 of 100 KiB sent
/// without waiting are all confirmed (frames of 7, under `max_message_size` 128 KiB); with
/// the default limit (64 KiB) one is refused, saying why.
///
/// Not read back: RabbitMQ 4.0.5 may join such frames into a chunk over 1 MiB, and then
/// did not deliver that chunk to this client's consumers (seen in 2 runs of 3; see the
/// README's Streams limits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_are_batched_under_the_frame_size_or_refused() {
    let Some(config) = support::broker() else {
        return;
    };
    let stream = support::unique("large");
    let transport = StreamTransport::new(config.clone().max_message_size(128 * 1024));
    const N: usize = 60;
    let body = vec![b'x'; 100 * 1024];
    let mut confirms = Vec::with_capacity(N);
    for _ in 0..N {
        let to = Destination::Stream {
            stream: stream.clone(),
            partition_key: None,
        };
        let message = Message::new("order.created", Bytes::from(body.clone()));
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
    support::delete(&transport, &[&stream]).await;
    transport.close().await.expect("closed");
}
