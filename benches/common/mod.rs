//! What the AMQP and Streams benches share: the event, the rates printed, and the
//! framework's two publish loops.

use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use pubsub::{Bus, Event};
use serde::{Deserialize, Serialize};

/// Confirmations in flight for the pipelined publish.
pub(crate) const WINDOW: usize = 1000;
/// Tasks each awaiting `bus.publish` in the concurrent publish.
pub(crate) const CONCURRENT: u64 = 100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(domain = "bench", action = "ordered")]
pub(crate) struct Ordered {
    order_id: String,
    customer_id: String,
    sku: String,
    quantity: u32,
    total_cents: u64,
    note: String,
}

/// The 182-byte event every case sends.
pub(crate) fn sample() -> Ordered {
    Ordered {
        order_id: "A-000000017".into(),
        customer_id: "customer-4242".into(),
        sku: "KB-01-BLACK".into(),
        quantity: 2,
        total_cents: 19_998,
        note: "please deliver to the back door, the front one is being painted".into(),
    }
}

fn rate(n: u64, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64()
}

/// Prints one case's rate; returns it.
pub(crate) fn row(name: &str, n: u64, took: Duration) -> f64 {
    let r = rate(n, took);
    println!("{name:<52} {r:>10.0} /s  ({took:.2?})");
    r
}

/// `bus.begin_publish` of `n` events with at most `window` confirmations in flight.
pub(crate) async fn framework_send(bus: &Bus, n: u64, window: usize) -> Duration {
    let event = sample();
    let start = Instant::now();
    let mut pending: FuturesUnordered<pubsub::PendingPublish> = FuturesUnordered::new();
    for _ in 0..n {
        if pending.len() >= window {
            pending.next().await.expect("a confirm").expect("confirmed");
        }
        pending.push(bus.begin_publish(&event).await.expect("send"));
    }
    while let Some(confirmed) = pending.next().await {
        confirmed.expect("confirmed");
    }
    start.elapsed()
}

/// `n` events published by `CONCURRENT` tasks, each awaiting every `bus.publish`.
pub(crate) async fn framework_concurrent(bus: &Bus, n: u64) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENT)
        .map(|t| {
            let bus = bus.clone();
            let share = n / CONCURRENT + u64::from(t < n % CONCURRENT);
            tokio::spawn(async move {
                let event = sample();
                for _ in 0..share {
                    bus.publish(&event).await.expect("publish");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("publisher task");
    }
    start.elapsed()
}
