//! Routing keys with parameters through RabbitMQ Streams: `index` sees every session,
//! `watch_42` only its own, a plain publisher's message with only a key (`subject`) reaches
//! them, and the stream keeps the type in `subject` and the key in `x-event-key`. Against
//! `RABBITMQ_STREAM_HOST`/`RABBITMQ_STREAM_PORT` (see `support::broker`).

use std::sync::Arc;

use pubsub::prelude::*;
use pubsub::stream::{StartAt, StreamConsumption, StreamNaming};
use pubsub::streams::StreamTransport;
use pubsub::transport::{Bytes, Transport};
use pubsub::{Message, Uuid};

use crate::sessions::{CodeUpdated, SessionsSeen, index, update, watch_42};
use crate::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_sees_every_session_and_watch_42_its_own() {
    let Some(config) = support::stream_config() else {
        return;
    };
    let run = Uuid::now_v7().simple().to_string();
    let config = config.naming(StreamNaming::new(format!("keys-{run}")));
    let service = format!("editor-{run}");
    let seen = Arc::new(SessionsSeen::default());
    // the plain publisher, and what reads the stream after the bus (which closes its own)
    let transport = StreamTransport::new(config.clone());
    let bus = Bus::builder()
        .service(service.clone())
        .transport(StreamTransport::new(config.clone()))
        .select_handlers(pubsub::handlers![index, watch_42])
        .stream_consumption(StreamConsumption::new().start_at(StartAt::First))
        .state(Arc::clone(&seen))
        .build()
        .await
        .unwrap();
    let task = bus.spawn().await.unwrap();

    bus.publish(&update(42)).await.unwrap();
    bus.publish(&update(7)).await.unwrap();
    // a plain publisher: the key as subject, a JSON body, nothing else
    let plain = Message::new(
        "session.9.code_updated",
        Bytes::from_static(br#"{"session_id":9,"delta":"+9"}"#),
    );
    transport.send(plain.into()).await.unwrap().await.unwrap();
    seen.assert_index_and_watch_42(&bus, task).await;

    // the stream keeps type and key apart
    let stream = config.naming.stream_of_key(CodeUpdated::KEY);
    let read = transport.read_all(&stream).await.unwrap();
    let keys: Vec<(&str, Option<&str>)> = read
        .iter()
        .map(|(_, m)| (m.metadata.key.as_str(), m.metadata.event_type.as_deref()))
        .collect();
    assert_eq!(
        keys,
        [
            ("session.42.code_updated", Some(CodeUpdated::KEY)),
            ("session.7.code_updated", Some(CodeUpdated::KEY)),
            ("session.9.code_updated", None),
        ]
    );
    for s in [stream, config.naming.error_stream(&service)] {
        transport.delete_stream(&s).await.unwrap();
    }
    transport.close().await.unwrap();
}
