//! The AMQP transport against raw lapin, on the same broker in the same run.
//!
//! ```text
//! eval "$(scripts/broker.sh start)"
//! cargo bench --bench amqp --features amqp
//! ```
//!
//! * **publish**: persistent publishes with confirms. Raw: lapin with up to `WINDOW`
//!   confirms in flight; framework: `bus.begin_publish(&e)` with the same window, and `CONCURRENT`
//!   tasks each awaiting `bus.publish(&e)`. Also raw lapin awaiting each confirm, the gap
//!   pipelining closes.
//! * **consume**: a queue filled with N events, drained: raw lapin consume + serde decode +
//!   ack, against a bus with one typed handler, at prefetch 100 and 1000.
//!
//! The broker is the limit on these 2-core machines, so the ratio is what counts.
//! `PUBSUB_BENCH_N` sets N (default 20 000). Without `RABBITMQ_URL` it says so and exits.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};
use pubsub::amqp::{AmqpConfig, AmqpTransport};
use pubsub::{Bus, Context, Event, Handler, HandlerError, HandlerSelection};
use tokio::sync::Notify;

#[path = "common/broker.rs"]
mod broker;
mod common;
use broker::{confirm_channel, handling_bus, remove_service};
use common::{CONCURRENT, Ordered, WINDOW, framework_concurrent, framework_send, row, sample};

/// A queue bound to the events exchange with the benchmark key, empty.
async fn bound_queue(channel: &Channel, config: &AmqpConfig, name: &str) {
    broker::bound_queue(channel, &config.exchange, name, Ordered::KEY, false).await;
}

async fn raw_publish(channel: &Channel, config: &AmqpConfig, n: u64, window: usize) -> Duration {
    let body = serde_json::to_vec(&sample()).expect("encodes");
    let start = Instant::now();
    let mut pending: FuturesUnordered<lapin::PublisherConfirm> = FuturesUnordered::new();
    for _ in 0..n {
        if pending.len() >= window {
            pending.next().await.expect("a confirm").expect("confirmed");
        }
        let confirm = channel
            .basic_publish(
                config.exchange.as_str().into(),
                Ordered::KEY.into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .expect("publish");
        pending.push(confirm);
    }
    while let Some(confirmed) = pending.next().await {
        confirmed.expect("confirmed");
    }
    start.elapsed()
}

async fn raw_consume(channel: &Channel, queue: &str, n: u64, prefetch: u16) -> Duration {
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .expect("qos");
    let start = Instant::now();
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "bench raw".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    // acks are not awaited one by one: as many in flight as the prefetch allows
    let mut acks = FuturesUnordered::new();
    for _ in 0..n {
        let delivery = consumer
            .next()
            .await
            .expect("a delivery")
            .expect("delivered");
        let event: Ordered = serde_json::from_slice(&delivery.data).expect("decodes");
        std::hint::black_box(event);
        acks.push(async move { delivery.acker.ack(BasicAckOptions::default()).await });
        while let Some(Some(acked)) = futures::FutureExt::now_or_never(acks.next()) {
            acked.expect("ack");
        }
    }
    while let Some(acked) = acks.next().await {
        acked.expect("ack");
    }
    let took = start.elapsed();
    channel
        .basic_cancel(consumer.tag(), Default::default())
        .await
        .expect("cancel");
    took
}

async fn framework_consume(config: &AmqpConfig, service: &str, n: u64, prefetch: u16) -> Duration {
    let handled = Arc::new(AtomicU64::new(0));
    let done = Arc::new(Notify::new());
    let (count, all) = (Arc::clone(&handled), Arc::clone(&done));
    let handler = Handler::typed("count", move |event: Ordered, _ctx: Context| {
        let (count, all) = (Arc::clone(&count), Arc::clone(&all));
        async move {
            std::hint::black_box(event);
            if count.fetch_add(1, Ordering::Relaxed) + 1 == n {
                all.notify_one();
            }
            Ok::<_, HandlerError>(())
        }
    });
    let transport = AmqpTransport::new(config.clone().prefetch(prefetch));
    let bus = handling_bus(transport, service, prefetch, handler).await;
    // fill its queue while it does not consume yet
    let (raw, channel) = confirm_channel(config, "bench raw").await;
    raw_publish(&channel, config, n, WINDOW).await;
    let start = Instant::now();
    let task = bus.spawn().await.expect("consumes");
    done.notified().await;
    let took = start.elapsed();
    bus.close().await.expect("closes");
    task.await.expect("bus task").expect("bus ran");
    remove_service(&channel, service).await;
    let _ = raw.close(200, "done".into()).await;
    took
}

fn main() {
    if std::env::var_os("RABBITMQ_URL").is_none() {
        println!(
            "no RABBITMQ_URL: start a broker (eval \"$(scripts/broker.sh start)\") and run again"
        );
        return;
    }
    let n: u64 = std::env::var("PUBSUB_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let ns = format!(
            "bench{}",
            &pubsub::Uuid::now_v7().simple().to_string()[20..]
        );
        let config = AmqpConfig::from_env()
            .expect("config")
            .exchange(format!("{ns}.events"));
        let publisher = Bus::publisher("bench-publisher", AmqpTransport::new(config.clone()));
        // declares the exchange (and a queue nobody reads, so that publishes route)
        let sink = Bus::builder()
            .service(format!("{ns}-sink"))
            .transport(AmqpTransport::new(config.clone()))
            .select_handlers(HandlerSelection::None)
            .handler(Handler::typed("never", |_e: Ordered, _c: Context| async {
                Ok::<_, HandlerError>(())
            }))
            .build()
            .await
            .expect("sink bus");
        let (raw, channel) = confirm_channel(&config, "bench raw").await;
        let sink_queue = format!("{ns}-sink");
        println!(
            "pubsub AMQP benchmark: N = {n}, {} -byte JSON event, RabbitMQ at {}",
            serde_json::to_vec(&sample()).map_or(0, |b| b.len()),
            config.url()
        );
        println!();
        println!("publish (persistent, confirmed)");
        framework_send(&publisher, n / 10, WINDOW).await; // warm-up
        let raw_one = row(
            "  raw lapin, awaiting each confirm",
            n / 10,
            raw_publish(&channel, &config, n / 10, 1).await,
        );
        let raw_rate = row(
            &format!("  raw lapin, {WINDOW} confirms in flight"),
            n,
            raw_publish(&channel, &config, n, WINDOW).await,
        );
        let send = row(
            &format!("  framework, bus.send with {WINDOW} in flight"),
            n,
            framework_send(&publisher, n, WINDOW).await,
        );
        let concurrent = row(
            &format!("  framework, {CONCURRENT} tasks awaiting bus.publish"),
            n,
            framework_concurrent(&publisher, n).await,
        );
        bound_queue(&channel, &config, &sink_queue).await; // empties it
        println!();
        println!("consume + decode + handle + ack (a queue of N, drained)");
        let mut consume = Vec::new();
        for prefetch in [100u16, 1000] {
            let queue = format!("{ns}-raw-{prefetch}");
            bound_queue(&channel, &config, &queue).await;
            let (raw_c, filler) = confirm_channel(&config, "bench raw").await;
            raw_publish(&filler, &config, n, WINDOW).await;
            let _ = raw_c.close(200, "filled".into()).await;
            let consumer_channel = raw.create_channel().await.expect("channel");
            let r = row(
                &format!("  raw lapin, prefetch {prefetch}"),
                n,
                raw_consume(&consumer_channel, &queue, n, prefetch).await,
            );
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await
                .expect("delete");
            let f = row(
                &format!("  framework, prefetch {prefetch}"),
                n,
                framework_consume(&config, &format!("{ns}-bus-{prefetch}"), n, prefetch).await,
            );
            consume.push((prefetch, r, f));
            bound_queue(&channel, &config, &sink_queue).await;
        }
        println!();
        println!("framework / raw lapin (goal ≥ 0.90 each):");
        println!("  publish, pipelined:          {:.2}", send / raw_rate);
        println!(
            "  publish, concurrent awaits:  {:.2}",
            concurrent / raw_rate
        );
        println!(
            "  (raw awaiting each confirm:  {:.2} of pipelined raw)",
            raw_one / raw_rate
        );
        for (prefetch, r, f) in consume {
            println!("  consume, prefetch {prefetch:<5}:    {:.2}", f / r);
        }
        drop(sink);
        remove_service(&channel, &sink_queue).await;
        channel
            .exchange_delete(config.exchange.as_str().into(), Default::default())
            .await
            .expect("delete");
        let _ = raw.close(200, "done".into()).await;
    });
}
