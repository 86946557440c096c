//! What the cases share: namespaces, counting handlers, bus set-up, waiting.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::select_all;
use tokio::sync::Notify;
use tokio::sync::futures::Notified;
use tokio::time::Instant;

use super::Broker;
use crate::bus::Bus;
use crate::handler::{HandlerError, RawEvent};
use crate::metadata::Message;
use crate::registry::{Handler, HandlerSelection};
use crate::retry::RetryPolicy;

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

pub(super) async fn bus(
    broker: &dyn Broker,
    service: &str,
    handlers: Vec<Handler>,
    prefetch: u16,
) -> Bus {
    let mut builder = Bus::builder()
        .service(service)
        .shared_transport(broker.connect().await)
        .select_handlers(HandlerSelection::None)
        .prefetch(prefetch)
        .retry(RetryPolicy::exponential(3, Duration::from_millis(10)))
        .shutdown_timeout(Duration::from_secs(5));
    for handler in handlers {
        builder = builder.handler(handler);
    }
    match builder.build().await {
        Ok(bus) => bus,
        Err(error) => panic!("building a bus for {service} failed: {error}"),
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

pub(super) async fn stop(bus: Bus, task: tokio::task::JoinHandle<crate::Result<()>>) {
    bus.shutdown();
    match task.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => panic!("bus {} ended with an error: {error}", bus.service()),
        Err(error) => panic!("bus {} task failed: {error}", bus.service()),
    }
}
