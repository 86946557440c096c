//! A reader that only iterates a stream creates nothing on the broker but what it reads.

use std::time::Duration;

use futures::StreamExt;
use pubsub::streams::{StreamTransport, StreamsError};
use pubsub::transport::Transport;

use crate::support;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, pubsub::Event)]
#[event(domain = "confreader", action = "noted")]
struct Noted {
    n: u32,
}

/// `Bus::subscribe` with `.stream(..)` reads the stream, and leaves no error stream of its service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_of_a_named_stream_creates_no_error_stream() {
    let Some(config) = support::stream_config() else {
        return;
    };
    let stream = support::namespace("conf-reader");
    let service = support::namespace("conf-reader-svc");
    let transport = StreamTransport::new(config.clone());
    let errors = config.naming.error_stream(&service);
    let bus = pubsub::Bus::publisher(service.clone(), transport.clone());
    bus.publish_with(
        &Noted { n: 1 },
        pubsub::PublishOptions::new().to_stream(&stream),
    )
    .await
    .expect("published");
    let mut events = bus
        .subscribe::<Noted>()
        .stream(&stream)
        .start_at(pubsub::stream::StartAt::First)
        .await
        .expect("reading");
    let read = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("an event within 10 s")
        .expect("the stream goes on")
        .expect("decodes");
    assert_eq!(read.event.n, 1);
    // asked on a connection of its own: does the error stream exist?
    let probe = StreamTransport::new(config);
    let found = probe.stored_offset(&service, &errors).await;
    drop(events);
    // removed whatever the outcome (a failed run must not leave it behind)
    for name in [&stream, &errors] {
        transport.delete_stream(name).await.expect("deleting");
    }
    probe.close().await.expect("closed");
    transport.close().await.expect("closed");
    match found {
        Err(StreamsError::Refused { code, .. }) if code.contains("StreamDoesNotExist") => {}
        other => panic!("the reader created its service's error stream {errors}: {other:?}"),
    }
}
