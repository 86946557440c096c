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

/// An event type whose key has a parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(key = "ledger.{account}.posted")]
struct Posted {
    account: String,
}

/// Long keys, correlation ids and reply addresses make the stream message's properties
/// section long; each message reads back whole: a plain message with a key of 255 bytes
/// (its subject), and events with a long key or a long correlation id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_keys_and_conversations_read_back() {
    let Some(config) = support::stream_config() else {
        return;
    };
    let run = Uuid::now_v7().simple().to_string();
    let config = config.naming(StreamNaming::new(format!("long-{run}")));
    let transport = StreamTransport::new(config.clone());
    let bus = Bus::publisher(format!("long-{run}"), transport.clone());
    let stream = config.naming.stream_of_domain("ledger");
    // a plain message: the key is the subject
    let key = format!("ledger.{}", "k".repeat(255 - "ledger.".len()));
    let mut plain = Message::new(key.as_str(), Bytes::from_static(br#"{"account":"x"}"#));
    plain.metadata.correlation_id = Some(Uuid::now_v7().to_string());
    plain.metadata.reply_to = Some("replies.ledger".into());
    transport
        .send(plain.clone().into())
        .await
        .unwrap()
        .await
        .unwrap();
    // events: a long key, and a long correlation id
    let conversations = [Uuid::now_v7().to_string(), "c".repeat(220)];
    let accounts = ["a".repeat(255 - "ledger..posted".len()), "short".to_owned()];
    for (account, correlation_id) in accounts.iter().zip(&conversations) {
        let options = pubsub::PublishOptions::new().correlation_id(correlation_id.clone());
        let posted = Posted {
            account: account.clone(),
        };
        bus.publish_with(&posted, options).await.unwrap();
    }
    let read = transport.read_all(&stream).await.unwrap();
    assert_eq!(read.len(), 3, "{read:?}");
    let (_, first) = &read[0];
    assert_eq!(first.metadata.key, key);
    assert_eq!(first.metadata.correlation_id, plain.metadata.correlation_id);
    assert_eq!(first.metadata.reply_to, plain.metadata.reply_to);
    for ((_, message), (account, correlation_id)) in
        read[1..].iter().zip(accounts.iter().zip(&conversations))
    {
        assert_eq!(message.metadata.key, format!("ledger.{account}.posted"));
        assert_eq!(message.metadata.event_type.as_deref(), Some(Posted::KEY));
        assert_eq!(
            message.metadata.correlation_id.as_ref(),
            Some(correlation_id)
        );
        assert_eq!(
            Posted::decode_message(message).expect("it decodes").account,
            *account
        );
    }
    transport.delete_stream(&stream).await.unwrap();
    bus.close().await.unwrap();
}
