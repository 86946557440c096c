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
//! A service queue declared exclusive or auto-delete ([`QueueOptions`](crate::QueueOptions))
//! belongs to one process: its dead-letter queue and wait queues are then exclusive
//! (non-durable) and its dead-letter exchange auto-delete, so none of them outlives it.
//!
//! A service's start also removes the bindings from the events exchange to its queue that no
//! pattern asks for any more (`stale_bindings`, through the management API): a handler
//! removed stops its events from piling up in the queue.
//!
//! The broker itself dead-letters into `{service}.dead-letters` what is rejected without
//! requeue or delivered past a quorum queue's delivery limit; the transport publishes its
//! own dead letters (with reason and failed handlers) there too.
//!
//! Delayed retries wait in `{service}.retry.{ms}ms`, durable queues whose message TTL is
//! that delay and which dead-letter, through the default exchange, back into the service's
//! queue. Delays are rounded up to a ladder (50 ms × √2ⁿ, so at most 41 % longer), which
//! keeps the number of wait queues small whatever the jitter; each is declared when a
//! retry first needs it. A wait queue is a plain FIFO with one TTL, so no message waits
//! behind a longer one, and a restart of the service loses no pending retry.

use std::collections::BTreeMap;
use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};
use pubsub_core::transport::{LIVE_QUEUE_MAX_LENGTH, LiveSource, Source, Subscription};

use crate::config::QueueType;

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

/// The ladder step a retry `delay` waits: the smallest 50 ms × √2ⁿ at least `delay`
/// (capped at a day).
pub(crate) fn retry_step(delay: Duration) -> Duration {
    let wanted = delay.as_micros().div_ceil(1000);
    let mut n = 0;
    loop {
        // rounded to whole milliseconds: 50, 71, 100, 141, 200, ...
        let step = (50.0 * 2f64.powf(f64::from(n) / 2.0)).round() as u64;
        if u128::from(step) >= wanted || step >= 86_400_000 {
            return Duration::from_millis(step);
        }
        n += 1;
    }
}

/// The wait queue of `service` for ladder step `step`.
pub(crate) fn wait_queue(service: &str, step: Duration) -> String {
    format!("{service}.retry.{}ms", step.as_millis())
}

/// Declares the wait queue of `service` for `step` (idempotent).
/// A per-process service's wait queue is exclusive to the publishing connection.
pub(crate) async fn declare_wait_queue(
    channel: &Channel,
    service: &str,
    step: Duration,
    per_process: bool,
) -> Result<String, AmqpError> {
    let name = wait_queue(service, step);
    let mut args = BTreeMap::new();
    let ttl = i64::try_from(step.as_millis()).unwrap_or(i64::MAX);
    args.insert(
        ShortString::from("x-message-ttl"),
        AMQPValue::LongLongInt(ttl),
    );
    args.insert(ShortString::from("x-dead-letter-exchange"), text(""));
    args.insert(
        ShortString::from("x-dead-letter-routing-key"),
        text(service),
    );
    queue(channel, &name, kept(per_process), FieldTable::from(args)).await?;
    Ok(name)
}

/// Declares the events exchange (a durable topic exchange), through which every publish
/// is routed: the publishing channel declares it when it opens, so that a bus that only
/// publishes works on a fresh broker, and so does every subscription.
pub(crate) async fn declare_events_exchange(
    channel: &Channel,
    name: &str,
) -> Result<(), AmqpError> {
    exchange(channel, name, ExchangeKind::Topic).await
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
        Source::Live(live) => return declare_live(channel, config, live).await,
        _ => {
            return Err(AmqpError::Unsupported(
                "stream subscriptions: use the Streams transport",
            ));
        }
    };
    let service = subscription.service.as_str();
    declare_events_exchange(channel, &config.exchange).await?;
    let dlx = dead_letter_exchange(service);
    let dlq = dead_letter_queue(service);
    let per_process = config.queue.per_process();
    let dlx_options = ExchangeDeclareOptions {
        durable: !per_process,
        auto_delete: per_process,
        ..ExchangeDeclareOptions::default()
    };
    exchange_with(channel, &dlx, ExchangeKind::Fanout, dlx_options).await?;
    queue(channel, &dlq, kept(per_process), FieldTable::default()).await?;
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

/// A live subscription's private queue: classic, exclusive to the consuming connection and
/// auto-delete (the broker removes it when its consumer's channel closes), bound to the
/// subscription's patterns, at most [`LIVE_QUEUE_MAX_LENGTH`] long (dropping the oldest);
/// nothing is dead-lettered from it.
async fn declare_live(
    channel: &Channel,
    config: &AmqpConfig,
    live: &LiveSource,
) -> Result<String, AmqpError> {
    declare_events_exchange(channel, &config.exchange).await?;
    let options = QueueDeclareOptions {
        durable: false,
        exclusive: true,
        auto_delete: true,
        ..QueueDeclareOptions::default()
    };
    let args = BTreeMap::from([
        (ShortString::from("x-queue-type"), text("classic")),
        (
            ShortString::from("x-max-length"),
            AMQPValue::LongLongInt(i64::try_from(LIVE_QUEUE_MAX_LENGTH).unwrap_or(i64::MAX)),
        ),
        (ShortString::from("x-overflow"), text("drop-head")),
    ]);
    queue(channel, &live.queue, options, FieldTable::from(args)).await?;
    for pattern in &live.patterns {
        bind(channel, &live.queue, &config.exchange, pattern).await?;
    }
    Ok(live.queue.clone())
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

/// Durable, or for a per-process service exclusive (gone with the connection).
fn kept(per_process: bool) -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: !per_process,
        exclusive: per_process,
        ..QueueDeclareOptions::default()
    }
}

async fn exchange(channel: &Channel, name: &str, kind: ExchangeKind) -> Result<(), AmqpError> {
    let options = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    exchange_with(channel, name, kind, options).await
}

async fn exchange_with(
    channel: &Channel,
    name: &str,
    kind: ExchangeKind,
    options: ExchangeDeclareOptions,
) -> Result<(), AmqpError> {
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

    #[test]
    fn retry_steps_round_up_by_at_most_a_square_root_of_two() {
        for ms in [1u64, 50, 51, 99, 400, 1000, 12_345, 3_600_000] {
            let delay = Duration::from_millis(ms);
            let step = retry_step(delay);
            assert!(step >= delay, "{step:?} < {delay:?}");
            assert!(
                step.as_secs_f64() <= (delay.as_secs_f64() * 1.42).max(0.051),
                "{step:?} for {delay:?}"
            );
        }
        assert_eq!(
            retry_step(Duration::from_millis(400)),
            Duration::from_millis(400)
        );
        let distinct: std::collections::BTreeSet<_> = (1..10_000u64)
            .map(|ms| retry_step(Duration::from_millis(ms * 7)))
            .collect();
        assert!(distinct.len() < 25, "{}", distinct.len());
    }
    use lapin::BasicProperties;
    use lapin::options::{
        BasicGetOptions, BasicPublishOptions, BasicRejectOptions, ConfirmSelectOptions,
        QueueDeleteOptions,
    };

    /// Declared twice, the topology routes by pattern, and a rejected message reaches the
    /// dead-letter queue. Against the real broker (`RABBITMQ_URL`; see `test_broker`).
    #[tokio::test]
    async fn declared_twice_it_routes_and_dead_letters() {
        if crate::test_broker::amqp_url().is_none() {
            return;
        }
        // `conf`: what a failed run leaves, scripts/test.sh removes
        let ns = format!(
            "conf-topo{}",
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
