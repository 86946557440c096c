//! What the AMQP benches share beyond `common/mod.rs`: a bus with one handler, a raw
//! confirm-mode channel, a raw queue bound to the exchange, and the removal of what a bus
//! declared.

use lapin::Channel;
use lapin::options::{
    ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use pubsub::amqp::{AmqpConfig, connect};
use pubsub::transport::Transport;
use pubsub::{Bus, Handler, HandlerSelection};

/// A bus of `service` on `transport` with `handler` alone, built but not consuming yet.
pub(crate) async fn handling_bus(
    transport: impl Transport,
    service: &str,
    prefetch: u16,
    handler: Handler,
) -> Bus {
    Bus::builder()
        .service(service)
        .transport(transport)
        .select_handlers(HandlerSelection::None)
        .prefetch(prefetch)
        .handler(handler)
        .build()
        .await
        .expect("bus")
}

/// The queue `name` (durable or not), bound to `exchange` with `key`, empty.
pub(crate) async fn bound_queue(
    channel: &Channel,
    exchange: &str,
    name: &str,
    key: &str,
    durable: bool,
) {
    let _ = channel
        .queue_delete(name.into(), QueueDeleteOptions::default())
        .await;
    let options = QueueDeclareOptions {
        durable,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(name.into(), options, FieldTable::default())
        .await
        .expect("declare");
    channel
        .queue_bind(
            name.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
}

/// A connection of its own named `name`, and a channel of it in confirm mode.
pub(crate) async fn confirm_channel(
    config: &AmqpConfig,
    name: &str,
) -> (lapin::Connection, Channel) {
    let connection = connect(config, name).await.expect("connects");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    (connection, channel)
}

/// Deletes what a bus of `service` declared: its queue, dead-letter queue and dead-letter
/// exchange (a benchmark leaves nothing on the broker).
pub(crate) async fn remove_service(channel: &Channel, service: &str) {
    for queue in [service.to_owned(), format!("{service}.dead-letters")] {
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .expect("delete");
    }
    channel
        .exchange_delete(format!("{service}.dlx").as_str().into(), Default::default())
        .await
        .expect("delete");
}
