//! What the cases share: namespaces, counting handlers, bus set-up, waiting.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::select_all;
use tokio::sync::futures::Notified;
use tokio::sync::{Barrier, Notify};
use tokio::time::Instant;

use super::{Broker, Need};
use crate::builder::BusBuilder;
use crate::bus::Bus;
use crate::handler::Handler;
use crate::handler_error::HandlerError;
use crate::handler_input::RawEvent;
use crate::metadata::Message;
use crate::retry::RetryPolicy;
use crate::selection::HandlerSelection;
use crate::stats::BusStats;
use crate::transport::{Capabilities, Destination, Subscription, Transport};

/// How long a case waits for handling before it fails.
pub(super) const PATIENCE: Duration = Duration::from_secs(30);

/// A random namespace so that cases never see each other's messages on a shared broker.
pub(super) fn namespace() -> String {
    format!("conf{}", &uuid::Uuid::now_v7().simple().to_string()[20..])
}

/// Something a case can wait on: it notifies (`notify_waiters`) after every change.
pub(super) trait Changes: Sync {
    /// Notified after every change.
    fn changes(&self) -> &Notify;
}

/// A bus changes whenever one of its deliveries ends (its counters are updated first, and
/// its handlers ran before).
impl Changes for Bus {
    fn changes(&self) -> &Notify {
        &self.counters().ended
    }
}

/// A signal that handlers of a case raise after recording something.
#[derive(Clone, Default)]
pub(super) struct Progress(Arc<Notify>);

impl Progress {
    /// Wakes whoever waits on this progress.
    pub(super) fn tick(&self) {
        self.0.notify_waiters();
    }
}

impl Changes for Progress {
    fn changes(&self) -> &Notify {
        &self.0
    }
}

/// Records which message ids a handler saw, in order.
#[derive(Clone, Default)]
pub(super) struct Seen(Arc<SeenInner>);

#[derive(Default)]
pub(super) struct SeenInner {
    ids: Mutex<Vec<String>>,
    changed: Notify,
}

impl Seen {
    pub(super) fn push(&self, id: String) {
        self.0
            .ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(id);
        self.0.changed.notify_waiters();
    }
    pub(super) fn ids(&self) -> Vec<String> {
        self.0.ids.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    pub(super) fn distinct(&self) -> BTreeSet<String> {
        self.ids().into_iter().collect()
    }
    pub(super) fn len(&self) -> usize {
        self.0.ids.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
    pub(super) fn handler(&self, name: &str, pattern: &str) -> Handler {
        let seen = self.clone();
        Handler::raw(name, pattern, move |event: RawEvent, _ctx| {
            let seen = seen.clone();
            async move {
                seen.push(event.metadata().id.to_string());
                Ok::<_, HandlerError>(())
            }
        })
    }
}

impl Changes for Seen {
    fn changes(&self) -> &Notify {
        &self.0.changed
    }
}

/// Handles like [`Seen::handler`], but the bus's first delivery is held until the other
/// holder of `rendezvous` has its first one too (bounded by [`PATIENCE`]). With prefetch 1,
/// two competing buses then both get work, whatever the scheduling, on a transport that
/// shares the queue between them.
pub(super) fn competing(
    seen: &Seen,
    name: &str,
    pattern: &str,
    rendezvous: &Arc<Barrier>,
) -> Handler {
    let (seen, rendezvous) = (seen.clone(), Arc::clone(rendezvous));
    let first = Arc::new(AtomicBool::new(true));
    Handler::raw(name, pattern, move |event: RawEvent, _ctx| {
        let (seen, rendezvous, first) = (seen.clone(), Arc::clone(&rendezvous), Arc::clone(&first));
        async move {
            if first.swap(false, Ordering::SeqCst) {
                // no rendezvous by then: the case's check that both got work fails
                let _ = tokio::time::timeout(PATIENCE, rendezvous.wait()).await;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
            seen.push(event.metadata().id.to_string());
            Ok::<_, HandlerError>(())
        }
    })
}

/// The name and capabilities of the broker's transport, read from a fresh connection
/// (closed afterwards).
pub(super) async fn probe(broker: &dyn Broker) -> (&'static str, Capabilities) {
    let connection = broker.connect().await;
    let found = (connection.name(), connection.capabilities());
    let _ = connection.close().await;
    found
}

/// Says that part of a case does not run, and why.
pub(super) fn skip_part(case: &str, part: &str, need: Need, transport: &str) {
    eprintln!("skipped {case} ({part}): {}", need.skip_reason(transport));
}

/// The suite's bus settings: handlers added at run time only, 3 quick retries.
pub(super) fn builder(transport: Arc<dyn Transport>, service: &str, prefetch: u16) -> BusBuilder {
    Bus::builder()
        .service(service)
        .shared_transport(transport)
        .select_handlers(HandlerSelection::None)
        .prefetch(prefetch)
        .retry(RetryPolicy::exponential(3, Duration::from_millis(10)))
        .shutdown_timeout(Duration::from_secs(5))
}

/// Builds the bus with `handlers` added, or fails the case.
pub(super) async fn build(builder: BusBuilder, handlers: Vec<Handler>) -> Bus {
    let builder = handlers.into_iter().fold(builder, BusBuilder::handler);
    let described = format!("{builder:?}");
    match builder.build().await {
        Ok(bus) => bus,
        Err(error) => panic!("building a bus failed: {error}\n{described}"),
    }
}

/// A bus of `service` on `transport` that only publishes.
pub(super) async fn publisher(transport: Arc<dyn Transport>, service: &str) -> Bus {
    build(builder(transport, service, 1), Vec::new()).await
}

/// A bus of `service` on a new connection, running `handlers`.
pub(super) async fn bus(
    broker: &dyn Broker,
    service: &str,
    handlers: Vec<Handler>,
    prefetch: u16,
) -> Bus {
    bus_on(broker.connect().await, service, handlers, prefetch).await
}

/// A bus of `service` on `transport` (a connection other buses may share).
pub(super) async fn bus_on(
    transport: Arc<dyn Transport>,
    service: &str,
    handlers: Vec<Handler>,
    prefetch: u16,
) -> Bus {
    build(builder(transport, service, prefetch), handlers).await
}

/// What a raw consumer of `service` reads for `pattern`: its queue bound to the pattern,
/// or, on a stream transport, the stream of the pattern's domain (from `Next` as of the
/// declare).
pub(super) fn raw_subscription(
    transport: &dyn Transport,
    service: &str,
    pattern: &str,
) -> Subscription {
    match transport.stream_naming() {
        Some(naming) => Subscription::stream(service, naming.stream_of_key(pattern)),
        None => Subscription::queue(service, [pattern]),
    }
}

/// Where raw input for `service` goes straight to: its queue, or, on a stream transport,
/// the stream of `key`'s domain.
pub(super) fn straight_to(transport: &dyn Transport, service: &str, key: &str) -> Destination {
    match transport.stream_naming() {
        Some(naming) => Destination::Stream {
            stream: naming.stream_of_key(key),
            partition_key: None,
        },
        None => Destination::Queue(service.to_owned()),
    }
}

/// A JSON message under `key` carrying `n`.
pub(super) fn message(key: &str, n: usize) -> Message {
    Message::new(key, Bytes::from(format!("{{\"n\":{n}}}")))
}

pub(super) async fn publish_all(bus: &Bus, key: &str, count: usize) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for n in 0..count {
        let message = message(key, n);
        ids.insert(message.metadata.id.to_string());
        if let Err(error) = bus.publish_message(message).await {
            panic!("publish {n} of {count} to {key} failed: {error}");
        }
    }
    ids
}

/// Waits until `condition` holds, re-checking it whenever one of `sources` changes (never
/// on a timer: whatever the condition reads must be one of the sources' changes); `false`
/// if it still does not hold at `deadline`.
pub(super) async fn until(
    sources: &[&dyn Changes],
    deadline: Instant,
    condition: impl Fn() -> bool,
) -> bool {
    assert!(!sources.is_empty(), "a wait needs something to wait on");
    loop {
        // armed before the check: a change after it wakes us, one before it is seen by it
        let mut changes: Vec<Pin<Box<Notified<'_>>>> = sources
            .iter()
            .map(|source| Box::pin(source.changes().notified()))
            .collect();
        for change in &mut changes {
            change.as_mut().enable();
        }
        if condition() {
            return true;
        }
        if tokio::time::timeout_at(deadline, select_all(changes))
            .await
            .is_err()
        {
            return condition();
        }
    }
}

/// Waits until `condition` holds (see [`until`]); fails the case after [`PATIENCE`].
pub(super) async fn eventually(what: &str, sources: &[&dyn Changes], condition: impl Fn() -> bool) {
    if !until(sources, Instant::now() + PATIENCE, condition).await {
        panic!("timed out after {PATIENCE:?} waiting until {what}");
    }
}

/// After everything expected happened, a window in which anything unexpected (a
/// duplicate, a redelivery loop) would show. It only makes the check sensitive: a correct
/// transport passes whatever the scheduling.
pub(super) async fn linger(window: Duration) {
    tokio::time::sleep(window).await;
}

pub(super) async fn start(bus: &Bus) -> tokio::task::JoinHandle<crate::Result<()>> {
    match bus.spawn().await {
        Ok(task) => task,
        Err(error) => panic!("bus {} did not start: {error}", bus.service()),
    }
}

/// Fails the case unless `future` completes within `limit`.
pub(super) async fn within<F: Future>(limit: Duration, what: &str, future: F) -> F::Output {
    match tokio::time::timeout(limit, future).await {
        Ok(output) => output,
        Err(_) => panic!("{what} did not return within {limit:?}"),
    }
}

/// Fails the case unless `future` completes within a second: what a transport must do "at
/// once".
pub(super) async fn at_once<F: Future>(what: &str, future: F) -> F::Output {
    within(Duration::from_secs(1), what, future).await
}

/// Stops the bus and returns what it did, every delivery settled.
pub(super) async fn stopped(
    bus: Bus,
    task: tokio::task::JoinHandle<crate::Result<()>>,
) -> BusStats {
    let stats = bus.clone();
    stop(bus, task).await;
    stats.stats()
}

pub(super) async fn stop(bus: Bus, task: tokio::task::JoinHandle<crate::Result<()>>) {
    bus.shutdown();
    match task.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => panic!("bus {} ended with an error: {error}", bus.service()),
        Err(error) => panic!("bus {} task failed: {error}", bus.service()),
    }
}
