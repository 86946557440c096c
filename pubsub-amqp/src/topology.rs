//! What the transport declares, idempotently, with names the client chooses (a server-named
//! queue could not be declared again after a reconnect):
//!
//! | what | name | kind |
//! |---|---|---|
//! | events | [`AmqpConfig::exchange`] (`pubsub.events`) | durable topic exchange |
//! | a service's queue | the service | durable queue, bound with each handler pattern, dead-lettering to its DLX |
//! | its dead-letter exchange | `{service}.dlx` | durable fanout exchange |
//! | its dead-letter queue | `{service}.dead-letters` | durable queue bound to the DLX |
//!
//! The broker itself dead-letters into `{service}.dead-letters` what is rejected without
//! requeue or delivered past a quorum queue's delivery limit; the transport publishes its
//! own dead letters (with reason and failed handlers) there too.

use std::collections::BTreeMap;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};
use pubsub_core::{QueueType, Source, Subscription};

use crate::config::{AmqpConfig, Argument};
use crate::error::AmqpError;

/// The dead-letter exchange of `service`.
pub(crate) fn dead_letter_exchange(service: &str) -> String {
    format!("{service}.dlx")
}

/// The dead-letter queue of `service`.
pub(crate) fn dead_letter_queue(service: &str) -> String {
    format!("{service}.dead-letters")
}

/// Declares the events exchange, and for a queue or dead-letter subscription the service's
/// queue with its bindings, dead-letter exchange and dead-letter queue. Returns the name of
/// the queue to consume.
pub(crate) async fn declare(
    channel: &Channel,
    config: &AmqpConfig,
    subscription: &Subscription,
) -> Result<String, AmqpError> {
    let patterns: &[String] = match &subscription.source {
        Source::Queue(queue) => &queue.patterns,
        Source::DeadLetters => &[],
        _ => {
            return Err(AmqpError::Unsupported(
                "stream subscriptions: use the Streams transport",
            ));
        }
    };
    let service = subscription.service.as_str();
    exchange(channel, &config.exchange, ExchangeKind::Topic).await?;
    let dlx = dead_letter_exchange(service);
    let dlq = dead_letter_queue(service);
    exchange(channel, &dlx, ExchangeKind::Fanout).await?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    queue(channel, &dlq, durable, FieldTable::default()).await?;
    bind(channel, &dlq, &dlx, "").await?;

    let options = QueueDeclareOptions {
        durable: config.queue.durable,
        exclusive: config.queue.exclusive,
        auto_delete: config.queue.auto_delete,
        ..QueueDeclareOptions::default()
    };
    queue(channel, service, options, queue_arguments(config, &dlx)).await?;
    for pattern in patterns {
        bind(channel, service, &config.exchange, pattern).await?;
    }
    Ok(match subscription.source {
        Source::DeadLetters => dlq,
        _ => service.to_owned(),
    })
}

/// The service queue's arguments: its type, dead-letter exchange and the user's extras.
fn queue_arguments(config: &AmqpConfig, dlx: &str) -> FieldTable {
    let mut args = BTreeMap::new();
    let mut put = |name: &str, value: AMQPValue| {
        args.insert(ShortString::from(name), value);
    };
    put("x-dead-letter-exchange", text(dlx));
    match config.queue_type {
        QueueType::Quorum { delivery_limit } => {
            put("x-queue-type", text("quorum"));
            if let Some(limit) = delivery_limit {
                put("x-delivery-limit", AMQPValue::LongLongInt(limit.into()));
            }
        }
        _ => put("x-queue-type", text("classic")),
    }
    for (name, value) in &config.queue.arguments {
        put(
            name,
            match value {
                Argument::Str(s) => text(s),
                Argument::Int(n) => AMQPValue::LongLongInt(*n),
                Argument::Bool(b) => AMQPValue::Boolean(*b),
            },
        );
    }
    FieldTable::from(args)
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.as_bytes().to_vec()))
}

async fn exchange(channel: &Channel, name: &str, kind: ExchangeKind) -> Result<(), AmqpError> {
    let options = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(name.into(), kind, options, FieldTable::default())
        .await
        .map_err(|e| AmqpError::topology(format!("declaring exchange {name:?}"), e))
}

async fn queue(
    channel: &Channel,
    name: &str,
    options: QueueDeclareOptions,
    arguments: FieldTable,
) -> Result<(), AmqpError> {
    channel
        .queue_declare(name.into(), options, arguments)
        .await
        .map(drop)
        .map_err(|e| AmqpError::topology(format!("declaring queue {name:?}"), e))
}

async fn bind(channel: &Channel, queue: &str, exchange: &str, key: &str) -> Result<(), AmqpError> {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| {
            AmqpError::topology(format!("binding {queue:?} to {exchange:?} with {key:?}"), e)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::BasicProperties;
    use lapin::options::{
        BasicGetOptions, BasicPublishOptions, BasicRejectOptions, ConfirmSelectOptions,
        QueueDeleteOptions,
    };

    /// Declared twice, the topology routes by pattern, and a rejected message reaches the
    /// dead-letter queue. Against the real broker (`RABBITMQ_URL`), skipped without it.
    #[tokio::test]
    async fn declared_twice_it_routes_and_dead_letters() {
        if std::env::var_os(crate::ENV_URL).is_none() {
            assert!(std::env::var_os("PUBSUB_REQUIRE_BROKER").is_none());
            return;
        }
        let ns = format!(
            "topo{}",
            &pubsub_core::Uuid::now_v7().simple().to_string()[20..]
        );
        let config = AmqpConfig::from_env()
            .unwrap()
            .exchange(format!("{ns}.events"))
            .connection_attempts(3);
        let connection = crate::connect(&config, "topology test").await.unwrap();
        let channel = connection.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let subscription = Subscription::queue(ns.clone(), ["order.*", "#.failed"]);
        for _ in 0..2 {
            assert_eq!(declare(&channel, &config, &subscription).await.unwrap(), ns);
        }
        let dlq = declare(&channel, &config, &Subscription::dead_letters(ns.clone()))
            .await
            .unwrap();
        assert_eq!(dlq, format!("{ns}.dead-letters"));
        for key in ["order.created", "payment.failed", "order.created.v2"] {
            channel
                .basic_publish(
                    config.exchange.as_str().into(),
                    key.into(),
                    BasicPublishOptions::default(),
                    key.as_bytes(),
                    BasicProperties::default(),
                )
                .await
                .unwrap()
                .await
                .unwrap();
        }
        let mut routed = Vec::new();
        while let Some(got) = channel
            .basic_get(ns.as_str().into(), BasicGetOptions::default())
            .await
            .unwrap()
        {
            routed.push(String::from_utf8(got.delivery.data.clone()).unwrap());
            if routed.len() == 1 {
                // the broker dead-letters a rejected message into the service's DLQ
                got.delivery
                    .acker
                    .reject(BasicRejectOptions { requeue: false })
                    .await
                    .unwrap();
            } else {
                got.delivery.acker.ack(Default::default()).await.unwrap();
            }
        }
        assert_eq!(routed, ["order.created", "payment.failed"]);
        let mut dead = None;
        for _ in 0..200 {
            dead = channel
                .basic_get(dlq.as_str().into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap();
            if dead.is_some() {
                break;
            }
            tokio::task::yield_now().await;
        }
        let dead = dead.expect("the rejected message is in the dead-letter queue");
        assert_eq!(dead.delivery.data, b"order.created");
        for queue in [ns.clone(), dlq] {
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await
                .unwrap();
        }
        for exchange in [config.exchange.clone(), dead_letter_exchange(&ns)] {
            channel
                .exchange_delete(exchange.as_str().into(), Default::default())
                .await
                .unwrap();
        }
        connection.close(200, "done".into()).await.unwrap();
    }
}
