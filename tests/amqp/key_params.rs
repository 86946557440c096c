//! Routing keys with parameters through RabbitMQ: the queue binds `session.*.code_updated`
//! for `index` and `session.42.code_updated` for `watch_42`, each sees its sessions; the
//! wire carries the type in `type` and the key in the routing key and `x-event-key`; and a
//! plain publisher that sets only a routing key reaches the typed handlers. Against
//! `RABBITMQ_URL` (see `support::broker`).

use std::sync::Arc;

use lapin::BasicProperties;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use pubsub::amqp::{AmqpTransport, connect};
use pubsub::prelude::*;

use crate::interop::declare_exchange;
use crate::sessions::{CodeUpdated, SessionsSeen, index, update, watch_42};
use crate::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_sees_every_session_and_watch_42_its_own() {
    let ns = support::namespace("interop");
    let Some(config) = support::amqp_config() else {
        return;
    };
    let config = config
        .exchange(format!("{ns}.events"))
        .connection_attempts(3);
    let seen = Arc::new(SessionsSeen::default());
    let bus = Bus::builder()
        .service(format!("{ns}-editor"))
        .transport(AmqpTransport::new(config.clone()))
        .select_handlers(pubsub::handlers![index, watch_42])
        .state(Arc::clone(&seen))
        .build()
        .await
        .unwrap();
    let task = bus.spawn().await.unwrap();

    // a plain consumer of every session, to read the wire
    let raw = connect(&config, "raw client").await.unwrap();
    let channel = raw.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    declare_exchange(&channel, &config.exchange).await;
    let queue = format!("{ns}.raw");
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.as_str().into(), exclusive, FieldTable::default())
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.as_str().into(),
            config.exchange.as_str().into(),
            "session.#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();

    bus.publish(&update(42)).await.unwrap();
    bus.publish(&update(7)).await.unwrap();
    // as aio-pika would: a routing key and a JSON body, no type
    channel
        .basic_publish(
            config.exchange.as_str().into(),
            "session.9.code_updated".into(),
            BasicPublishOptions::default(),
            br#"{"session_id":9,"delta":"+9"}"#,
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    seen.assert_index_and_watch_42(&bus, task).await;

    // the wire: the key routes, the type (the template) travels in `type`, and the key
    // again in `x-event-key`, which outlives a wait queue or a dead-letter queue
    let got = channel
        .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the bus's first publish is in the raw queue");
    let d = got.delivery;
    assert_eq!(d.routing_key.as_str(), "session.42.code_updated");
    assert_eq!(
        d.properties.kind().as_ref().map(|s| s.as_str()),
        Some(CodeUpdated::KEY)
    );
    let headers = d.properties.headers().as_ref().expect("headers").inner();
    assert!(
        matches!(headers.get("x-event-key"), Some(AMQPValue::LongString(s)) if s.as_bytes() == b"session.42.code_updated"),
        "{headers:?}"
    );
    channel
        .exchange_delete(config.exchange.as_str().into(), Default::default())
        .await
        .unwrap();
    raw.close(200, "done".into()).await.unwrap();
}
