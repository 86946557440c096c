//! Where a named consumer starts on RabbitMQ Streams: after the offset it stored, whatever
//! start position it asks for (noted at `info`), and from the offset an operator resets it
//! to; and the offset of a stream's last message. Against
//! `RABBITMQ_STREAM_HOST`/`RABBITMQ_STREAM_PORT` (see `support::broker`).

use std::time::Duration;

use pubsub::Message;
use pubsub::stream::{StartAt, StoreOffsets};
use pubsub::streams::StreamTransport;
use pubsub::transport::{
    Bytes, Consumer, Delivery, Destination, Outgoing, Settlement, StreamSource, Subscription,
    Transport,
};

use crate::support::{self, logs::CapturedLogs};

async fn append(transport: &StreamTransport, stream: &str, count: u64) {
    for n in 0..count {
        let message = Message::new("ledger.posted", Bytes::from(format!("{{\"n\":{n}}}")));
        let to = Destination::Stream {
            stream: stream.to_owned(),
            partition_key: None,
        };
        transport
            .publish(Outgoing::new(message, to))
            .await
            .expect("appended");
    }
}

fn archive(stream: &str, start: StartAt) -> Subscription {
    Subscription::stream(
        "archive",
        StreamSource::new(stream)
            .start_at(start)
            .store_offsets(StoreOffsets::every(1000, Duration::from_secs(60))),
    )
}

async fn next(consumer: &mut Box<dyn Consumer>) -> Delivery {
    match tokio::time::timeout(Duration::from_secs(10), consumer.next()).await {
        Ok(Some(Ok(delivery))) => delivery,
        other => panic!("expected a delivery, got {other:?}"),
    }
}

#[tokio::test]
async fn a_stored_offset_overrides_the_start_position_with_a_note_and_a_reset_moves_it() {
    let Some(config) = support::stream_config() else {
        return;
    };
    let stream = support::namespace("offsets");
    let transport = StreamTransport::new(config);
    append(&transport, &stream, 3).await;
    let mut consumer = transport
        .consume(&archive(&stream, StartAt::First))
        .await
        .expect("consuming");
    let mut read = Vec::new();
    for _ in 0..3 {
        let delivery = next(&mut consumer).await;
        read.push(delivery.offset.expect("an offset"));
        delivery.acker.settle(Settlement::Ack).await.expect("acked");
    }
    consumer.close().await.expect("closed, storing its offset");
    let last = transport
        .last_offset(&stream)
        .await
        .expect("its last offset");
    assert_eq!(last, Some(read[2]), "the last of {read:?}");
    append(&transport, &stream, 1).await;

    let (logs, capturing) = CapturedLogs::capture();
    let mut again = transport
        .consume(&archive(&stream, StartAt::Offset(0)))
        .await
        .expect("consuming again");
    drop(capturing);
    let resumed = next(&mut again).await;
    let after = resumed.offset.expect("an offset");
    assert!(after > read[2], "resumes after {read:?}, not at 0: {after}");
    resumed.acker.settle(Settlement::Ack).await.expect("acked");
    again.close().await.expect("closed");
    let logged = logs.text();
    assert!(
        logged.contains("INFO")
            && logged.contains(&format!("after the offset it stored ({})", read[2]))
            && logged.contains("Offset(0)"),
        "{logged}"
    );

    transport
        .reset_offset(&stream, "archive", 0)
        .await
        .expect("reset");
    let mut replay = transport
        .consume(&archive(&stream, StartAt::Next))
        .await
        .expect("consuming after the reset");
    let first = next(&mut replay).await.offset;
    assert_eq!(first, Some(read[0]), "read from the start after the reset");
    replay.close().await.expect("closed");
    transport.delete_stream(&stream).await.expect("deleted");
    transport.close().await.expect("closed");
}
