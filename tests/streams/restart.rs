//! Against RabbitMQ Streams: a service stopped part-way through 10 000 events and started
//! again, and an active instance stopped part-way with single active consumer while
//! another waits, handle every event at least once, and again at most one store interval.
//! Against `RABBITMQ_STREAM_HOST`/`RABBITMQ_STREAM_PORT` (see `support::broker`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pubsub::prelude::*;
use pubsub::streams::{StreamConfig, StreamTransport};
use pubsub::{
    Bus, Handler, HandlerSelection, Message, Uuid,
    stream::{StartAt, StreamConsumption},
    transport::{Bytes, Transport},
};
use tokio::sync::Notify;

use crate::support;

const COUNT: usize = 10_000;
const STORE_EVERY: u32 = 500;
const STOP_AFTER: usize = 4_000;

/// Handled count per event body, and a wake-up on every change.
#[derive(Default)]
struct Handled {
    counts: Mutex<HashMap<Bytes, usize>>,
    changed: Notify,
}

impl Handled {
    fn record(&self, body: Bytes) {
        *self
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(body)
            .or_default() += 1;
        self.changed.notify_waiters();
    }
    fn distinct(&self) -> usize {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
    /// Handled count per event body, as of now.
    fn snapshot(&self) -> HashMap<Bytes, usize> {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
    /// Whether every event of the run was handled here or by `other`.
    fn covers_all_with(&self, other: &Self) -> bool {
        let (mine, theirs) = (self.snapshot(), other.snapshot());
        (0..COUNT).all(|n| {
            let body = Bytes::from(n.to_string());
            mine.contains_key(&body) || theirs.contains_key(&body)
        })
    }
    fn total(&self) -> usize {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .sum()
    }
    async fn until(&self, what: &str, condition: impl Fn(&Self) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let changed = self.changed.notified();
            if condition(self) {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() && !condition(self) {
                panic!(
                    "timed out waiting until {what}: {} handled",
                    self.distinct()
                );
            }
        }
    }
}

async fn service_bus(
    config: &StreamConfig,
    service: &str,
    key: &str,
    handled: Arc<Handled>,
) -> (Bus, tokio::task::JoinHandle<pubsub::Result<()>>) {
    let handler = Handler::raw(
        "count",
        key.to_owned(),
        move |event: RawEvent, _: Context| {
            let handled = Arc::clone(&handled);
            async move {
                handled.record(event.message().body.clone());
                Ok::<_, HandlerError>(())
            }
        },
    );
    let bus = Bus::builder()
        .service(service)
        .transport(StreamTransport::new(config.clone()))
        .select_handlers(HandlerSelection::None)
        .prefetch(200)
        .stream_consumption(
            StreamConsumption::new()
                .start_at(StartAt::First)
                .store_every(STORE_EVERY, Duration::from_secs(60)),
        )
        .handler(handler)
        .build()
        .await
        .expect("the bus");
    let task = bus.spawn().await.expect("the bus runs");
    (bus, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_after_the_stored_offset() {
    let Some(config) = support::stream_config() else {
        return;
    };
    let _one = support::one_at_a_time().await;
    let run = Uuid::now_v7().simple().to_string();
    let config = config.naming(pubsub::stream::StreamNaming::new(format!("restart-{run}")));
    let key = "ledger.posted";
    let service = format!("ledger-{run}");
    let publisher = StreamTransport::new(config.clone());
    let stream = config.naming.stream_of_key(key);
    let mut confirms = Vec::with_capacity(COUNT);
    for n in 0..COUNT {
        let message = Message::new(key, Bytes::from(n.to_string()));
        confirms.push(publisher.send(message.into()).await.expect("sent"));
    }
    for confirm in confirms {
        confirm.await.expect("confirmed");
    }

    let first = Arc::new(Handled::default());
    let (bus, task) = service_bus(&config, &service, key, Arc::clone(&first)).await;
    first
        .until("part of the events were handled", |h| {
            h.distinct() >= STOP_AFTER
        })
        .await;
    bus.shutdown();
    task.await.expect("bus task").expect("bus ended cleanly");
    let handled_first = first.distinct();
    assert!(handled_first < COUNT, "stopped part-way: {handled_first}");

    let second = Arc::new(Handled::default());
    let (bus, task) = service_bus(&config, &service, key, Arc::clone(&second)).await;
    second
        .until("every event was handled", |h| h.covers_all_with(&first))
        .await;
    bus.shutdown();
    task.await.expect("bus task").expect("bus ended cleanly");

    let (firsts, seconds) = (first.snapshot(), second.snapshot());
    let again = seconds
        .keys()
        .filter(|body| firsts.contains_key(*body))
        .count();
    eprintln!(
        "first run handled {handled_first} ({} deliveries), second {} ({} deliveries), {again} of them again",
        first.total(),
        second.distinct(),
        second.total()
    );
    assert!(
        firsts.values().chain(seconds.values()).all(|&n| n == 1),
        "no event twice within a run"
    );
    // only what was settled but not yet stored is read again: at most one store interval
    // (shutdown stores the handled prefix, so usually none)
    assert!(
        again <= STORE_EVERY as usize,
        "{again} handled again, more than one store interval"
    );
    assert_eq!(
        handled_first + seconds.len() - again,
        COUNT,
        "every event at least once"
    );
    for s in [stream, config.naming.error_stream(&service)] {
        publisher.delete_stream(&s).await.expect("deleting");
    }
    publisher.close().await.expect("closed");
}

/// Two instances with single active consumer: the active one is stopped part-way through
/// 10 000 events, the other takes over from its stored offset: every event handled, again
/// at most one store interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_instance_takes_over_from_the_stored_offset() {
    let Some(config) = support::stream_config() else {
        return;
    };
    let _one = support::one_at_a_time().await;
    let run = Uuid::now_v7().simple().to_string();
    let config = config.naming(pubsub::stream::StreamNaming::new(format!("takeover-{run}")));
    let key = "ledger.posted";
    let service = format!("ledger-{run}");
    let stream = config.naming.stream_of_key(key);
    let instance = |handled: &Arc<Handled>, id: &str| {
        let handled = Arc::clone(handled);
        let handler = Handler::raw(
            "count",
            key.to_owned(),
            move |event: RawEvent, _: Context| {
                let handled = Arc::clone(&handled);
                async move {
                    handled.record(event.message().body.clone());
                    Ok::<_, HandlerError>(())
                }
            },
        );
        Bus::builder()
            .service(service.clone())
            .transport(StreamTransport::new(config.clone().instance(id)))
            .select_handlers(HandlerSelection::None)
            .prefetch(200)
            .stream_consumption(
                StreamConsumption::new()
                    .start_at(StartAt::First)
                    .single_active(true)
                    .store_every(STORE_EVERY, Duration::from_secs(60)),
            )
            .handler(handler)
            .build()
    };
    let (one, two) = (Arc::new(Handled::default()), Arc::new(Handled::default()));
    let first = instance(&one, "a").await.expect("first instance");
    let first_task = first.spawn().await.expect("runs");
    let second = instance(&two, "b").await.expect("second instance");
    let second_task = second.spawn().await.expect("runs");

    let publisher = StreamTransport::new(config.clone());
    let mut confirms = Vec::with_capacity(COUNT);
    for n in 0..COUNT {
        let message = Message::new(key, Bytes::from(n.to_string()));
        confirms.push(publisher.send(message.into()).await.expect("sent"));
    }
    for confirm in confirms {
        confirm.await.expect("confirmed");
    }
    one.until("the active instance handled part", |h| {
        h.distinct() >= STOP_AFTER
    })
    .await;
    assert_eq!(two.total(), 0, "the other instance waits");
    first.shutdown();
    first_task.await.expect("bus task").expect("ended cleanly");
    let handled_first = one.distinct();
    two.until("the second instance handled the rest", |h| {
        h.covers_all_with(&one)
    })
    .await;
    second.shutdown();
    second_task.await.expect("bus task").expect("ended cleanly");
    let (firsts, seconds) = (one.snapshot(), two.snapshot());
    let again = seconds.keys().filter(|b| firsts.contains_key(*b)).count();
    eprintln!(
        "single active consumer: first instance handled {handled_first}, the second took over and handled {}, {again} of them again",
        seconds.len()
    );
    assert!(handled_first < COUNT, "stopped part-way: {handled_first}");
    assert!(
        again <= STORE_EVERY as usize,
        "{again} handled again, more than one store interval"
    );
    assert_eq!(handled_first + seconds.len() - again, COUNT, "every event");
    for s in [stream, config.naming.error_stream(&service)] {
        publisher.delete_stream(&s).await.expect("deleting");
    }
    publisher.close().await.expect("closed");
}
