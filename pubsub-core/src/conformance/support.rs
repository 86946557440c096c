//! What the cases share: namespaces, counting handlers, bus set-up, waiting.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::Broker;
use crate::bus::Bus;
use crate::handler::Handler;
use crate::handler_error::HandlerError;
use crate::handler_input::RawEvent;
use crate::metadata::Message;
use crate::retry::RetryPolicy;
use crate::selection::HandlerSelection;

/// How long a case waits for handling before it fails.
pub(super) const PATIENCE: Duration = Duration::from_secs(30);

/// A random namespace so that cases never see each other's messages on a shared broker.
pub(super) fn namespace() -> String {
    format!("conf{}", &uuid::Uuid::now_v7().simple().to_string()[20..])
}

/// Records which message ids a handler saw, in order.
#[derive(Clone, Default)]
pub(super) struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    pub(super) fn push(&self, id: String) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(id);
    }
    pub(super) fn ids(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    pub(super) fn distinct(&self) -> BTreeSet<String> {
        self.ids().into_iter().collect()
    }
    pub(super) fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len()
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

pub(super) async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {PATIENCE:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
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
