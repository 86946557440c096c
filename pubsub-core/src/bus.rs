//! The [`Bus`]: publishes events and runs the handlers of one service.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::Either;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::watch;
use uuid::Uuid;

use crate::dispatcher::{Counters, Dispatcher, Observer, ResolvedHandler};
use crate::error::{Error, Result, TransportError};
use crate::event::Event;
use crate::memory::MemoryTransport;
use crate::metadata::Message;
use crate::pattern::Pattern;
use crate::publish::{PublishOptions, Publisher};
use crate::registry::{self, Handler, HandlerSelection, RetrySpecOwned};
use crate::retry::RetryPolicy;
use crate::router::Router;
use crate::state::StateMap;
use crate::transport::{Consumer, Subscription, Transport};

/// A running service's connection to the event world: publish events, run handlers.
///
/// Cheap to clone; clones share one consumer and one publisher.
///
/// ```
/// use pubsub::prelude::*;
/// use pubsub::{Bus, MemoryTransport};
///
/// #[derive(Debug, Clone, Serialize, Deserialize, Event)]
/// #[event(domain = "doc", action = "written")]
/// struct DocWritten { title: String }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> pubsub::Result<()> {
/// let bus = Bus::builder()
///     .service("docs")
///     .transport(MemoryTransport::new())
///     .build()
///     .await?;
/// let id = bus.publish(&DocWritten { title: "hello".into() }).await?;
/// # let _ = id;
/// bus.shutdown();
/// bus.run_until(std::future::pending::<()>()).await // returns at once: shut down already
/// # }
/// ```
#[derive(Clone)]
pub struct Bus {
    inner: Arc<BusInner>,
}

struct BusInner {
    publisher: Publisher,
    dispatcher: Arc<Dispatcher>,
    /// What this bus consumes; `None` for a publish-only bus.
    subscription: Option<Subscription>,
    running: AtomicBool,
    task_per_delivery: bool,
    handler_names: Vec<String>,
    shutdown: watch::Sender<bool>,
    shutdown_timeout: Duration,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("service", &self.service())
            .field("transport", &self.inner.publisher.transport.name())
            .field("handlers", &self.inner.handler_names)
            .finish()
    }
}

/// What a bus has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct BusStats {
    /// Deliveries taken from the transport.
    pub deliveries: u64,
    /// Deliveries acked (all handlers succeeded, or none matched).
    pub acked: u64,
    /// Deliveries dead-lettered.
    pub dead_lettered: u64,
    /// Deliveries no handler matched (acked).
    pub unhandled: u64,
    /// Failed handler attempts (each retry counts).
    pub handler_failures: u64,
    /// Settlements the transport refused (the broker redelivers those).
    pub settle_errors: u64,
    /// Deliveries given back to the queue unfinished (shutdown deadline).
    pub requeued: u64,
}

impl Bus {
    /// Starts configuring a bus.
    pub fn builder() -> BusBuilder {
        BusBuilder::default()
    }

    /// The service name (queue and consumer name).
    pub fn service(&self) -> &str {
        &self.inner.publisher.service
    }

    /// Names of the handlers this bus runs.
    pub fn handlers(&self) -> &[String] {
        &self.inner.handler_names
    }

    /// Publishes `event` as the start of a new conversation (its correlation id is its own
    /// id). Returns the event id once the transport confirmed the publish.
    pub async fn publish<E: Event>(&self, event: &E) -> Result<Uuid> {
        self.inner
            .publisher
            .publish(event, PublishOptions::new())
            .await
    }

    /// Publishes `event` with explicit envelope options.
    pub async fn publish_with<E: Event>(&self, event: &E, options: PublishOptions) -> Result<Uuid> {
        self.inner.publisher.publish(event, options).await
    }

    /// Publishes an already encoded message as it is (gateways, bridges, tests of bad input).
    pub async fn publish_message(&self, message: Message) -> Result<()> {
        self.inner.publisher.publish_message(message).await
    }

    /// What the bus has done so far.
    pub fn stats(&self) -> BusStats {
        let c = &self.inner.dispatcher.counters;
        BusStats {
            deliveries: c.deliveries.load(Ordering::Relaxed),
            acked: c.acked.load(Ordering::Relaxed),
            dead_lettered: c.dead_lettered.load(Ordering::Relaxed),
            unhandled: c.unhandled.load(Ordering::Relaxed),
            handler_failures: c.handler_failures.load(Ordering::Relaxed),
            settle_errors: c.settle_errors.load(Ordering::Relaxed),
            requeued: c.requeued.load(Ordering::Relaxed),
        }
    }

    /// Asks a running bus to stop: no new deliveries, in-flight ones finish (up to the
    /// shutdown timeout) and are settled.
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Starts consuming, then runs the bus in a background task until
    /// [`shutdown`](Self::shutdown). Returns once the bus consumes its queue (so a
    /// transport that refuses to consume fails here); the handle yields how the run ended.
    pub async fn spawn(&self) -> Result<tokio::task::JoinHandle<Result<()>>> {
        let bus = self.clone();
        let Some(subscription) = &self.inner.subscription else {
            return Ok(tokio::spawn(async move {
                bus.run_until(std::future::pending::<()>()).await
            }));
        };
        let claim = self.claim()?;
        let consumer = self.inner.publisher.transport.consume(subscription).await?;
        Ok(tokio::spawn(async move {
            let _claim = claim;
            bus.run_consumer(consumer, std::future::pending::<()>())
                .await
        }))
    }

    /// Consumes and handles deliveries until `signal` completes (e.g.
    /// `tokio::signal::ctrl_c()`) or [`shutdown`](Self::shutdown) is called, then shuts
    /// down gracefully: stops taking deliveries, lets in-flight ones finish within the
    /// shutdown timeout and settles them; those still running then are requeued, so the
    /// broker redelivers them.
    ///
    /// Fails if the bus is already running, or if the transport closed the consumer
    /// without being asked to.
    pub async fn run_until<F: Future>(&self, signal: F) -> Result<()> {
        let Some(subscription) = &self.inner.subscription else {
            // Publish-only bus: nothing to consume, just wait for the signal.
            let mut stop = self.inner.shutdown.subscribe();
            tokio::select! {
                _ = signal => {}
                _ = raised(&mut stop) => {}
            }
            return Ok(());
        };
        let _claim = self.claim()?;
        let consumer = self.inner.publisher.transport.consume(subscription).await?;
        self.run_consumer(consumer, signal).await
    }

    /// Marks the bus as running until the claim is dropped.
    fn claim(&self) -> Result<RunningClaim> {
        if self.inner.running.swap(true, Ordering::SeqCst) {
            return Err(Error::Config(format!(
                "bus {} is already running: run it once, or build another bus to add consumers",
                self.service()
            )));
        }
        Ok(RunningClaim(Arc::clone(&self.inner)))
    }

    async fn run_consumer<F: Future>(
        &self,
        mut consumer: Box<dyn Consumer>,
        signal: F,
    ) -> Result<()> {
        let mut stop = self.inner.shutdown.subscribe();
        let stop = &mut stop;
        let mut in_flight = FuturesUnordered::new();
        let mut signal = std::pin::pin!(signal);
        let mut outcome = Ok(());
        tracing::info!(service = %self.service(), handlers = ?self.inner.handler_names, "bus running");
        loop {
            let next = tokio::select! {
                biased;
                _ = &mut signal => break,
                _ = raised(stop) => break,
                Some(()) = in_flight.next(), if !in_flight.is_empty() => continue,
                next = consumer.next() => next,
            };
            match next {
                Some(Ok(delivery)) => {
                    let dispatch = Arc::clone(&self.inner.dispatcher).dispatch(delivery);
                    in_flight.push(if self.inner.task_per_delivery {
                        Either::Right(OwnedTask(tokio::spawn(dispatch)))
                    } else {
                        Either::Left(dispatch)
                    });
                }
                Some(Err(TransportError::Closed)) | None => {
                    tracing::error!(service = %self.service(), "the transport closed the consumer");
                    outcome = Err(Error::Transport(TransportError::Closed));
                    break;
                }
                Some(Err(error)) => {
                    tracing::warn!(%error, "consumer error; continuing");
                    tokio::select! {
                        _ = &mut signal => break,
                        _ = raised(stop) => break,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
            }
        }
        self.drain(consumer, in_flight).await;
        outcome
    }

    async fn drain<D: Future<Output = ()>>(
        &self,
        mut consumer: Box<dyn Consumer>,
        mut in_flight: FuturesUnordered<D>,
    ) {
        if let Err(error) = consumer.cancel().await {
            tracing::warn!(%error, "cancelling the consumer failed");
        }
        let count = in_flight.len();
        let deadline = self.inner.shutdown_timeout;
        let finish = async { while in_flight.next().await.is_some() {} };
        if tokio::time::timeout(deadline, finish).await.is_err() {
            // Dropping an unsettled delivery requeues it (the Acker contract): the broker
            // redelivers it, flagged as redelivered, to the next consumer.
            let remaining = in_flight.len();
            tracing::warn!(
                remaining,
                ?deadline,
                "shutdown timeout: requeueing unfinished deliveries"
            );
            drop(in_flight);
            let requeued = &self.inner.dispatcher.counters.requeued;
            requeued.fetch_add(remaining as u64, Ordering::Relaxed);
        }
        drop(consumer);
        tracing::info!(service = %self.service(), in_flight = count, "bus stopped");
    }
}

/// Completes once the flag is raised (or its sender is gone).
async fn raised(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|raised| *raised).await;
}

/// A spawned delivery task, aborted when dropped (at the shutdown deadline), which drops
/// its unsettled delivery and so requeues it.
struct OwnedTask(tokio::task::JoinHandle<()>);

impl Future for OwnedTask {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|joined| {
            if let Err(error) = joined {
                tracing::error!(%error, "a delivery task failed");
            }
        })
    }
}

impl Drop for OwnedTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Clears the bus's running flag when its run ends.
struct RunningClaim(Arc<BusInner>);

impl Drop for RunningClaim {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::SeqCst);
    }
}

/// Configures a [`Bus`]; consumed by [`build`](Self::build).
///
/// ```
/// use std::time::Duration;
/// use pubsub::{Bus, HandlerSelection, MemoryTransport, RetryPolicy};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> pubsub::Result<()> {
/// struct Db;
/// let bus = Bus::builder()
///     .service("billing")
///     .transport(MemoryTransport::new())
///     .select_handlers(HandlerSelection::None)
///     .state(Db)
///     .retry(RetryPolicy::exponential(5, Duration::from_millis(200)))
///     .retry_policy("patient", RetryPolicy::exponential(10, Duration::from_secs(1)))
///     .handler_timeout(Duration::from_secs(10))
///     .prefetch(32)
///     .build()
///     .await?;
/// # let _ = bus;
/// # Ok(())
/// # }
/// ```
#[must_use = "a builder does nothing until `.build().await`"]
pub struct BusBuilder {
    service: Option<String>,
    transport: Option<Arc<dyn Transport>>,
    selection: HandlerSelection,
    handlers: Vec<Handler>,
    state: StateMap,
    retry: RetryPolicy,
    policies: HashMap<String, RetryPolicy>,
    handler_timeout: Duration,
    prefetch: u16,
    max_message_size: usize,
    shutdown_timeout: Duration,
    task_per_delivery: bool,
    observer: Option<Arc<dyn Observer>>,
}

impl Default for BusBuilder {
    fn default() -> Self {
        Self {
            service: None,
            transport: None,
            selection: HandlerSelection::default(),
            handlers: Vec::new(),
            state: StateMap::default(),
            retry: RetryPolicy::default(),
            policies: HashMap::new(),
            handler_timeout: Duration::from_secs(30),
            prefetch: 100,
            max_message_size: 4 * 1024 * 1024,
            shutdown_timeout: Duration::from_secs(10),
            task_per_delivery: false,
            observer: None,
        }
    }
}

impl std::fmt::Debug for BusBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusBuilder")
            .field("service", &self.service)
            .field("selection", &self.selection)
            .field("handlers", &self.handlers)
            .field("prefetch", &self.prefetch)
            .finish_non_exhaustive()
    }
}

impl BusBuilder {
    /// The service name: its queue, its consumer, the `app_id` of what it publishes.
    /// Buses with the same service share (compete for) its messages — so they must run the
    /// same handlers: a bus acks, as unhandled, a message that only another version of the
    /// service had a handler for.
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = Some(service.into());
        self
    }

    /// The transport (default: a fresh [`MemoryTransport`]).
    pub fn transport(mut self, transport: impl Transport) -> Self {
        self.transport = Some(Arc::new(transport));
        self
    }

    /// A transport already shared behind an `Arc`.
    pub fn shared_transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Which `#[handler]` functions this bus runs (default: [`HandlerSelection::ForService`]).
    pub fn select_handlers(mut self, selection: HandlerSelection) -> Self {
        self.selection = selection;
        self
    }

    /// Adds a handler built at run time.
    pub fn handler(mut self, handler: Handler) -> Self {
        self.handlers.push(handler);
        self
    }

    /// Registers shared state, read by handlers with [`Context::state`](crate::Context::state).
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.state.insert(value);
        self
    }

    /// The default retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// A named retry policy for `#[handler(retry = "name")]`.
    pub fn retry_policy(mut self, name: impl Into<String>, policy: RetryPolicy) -> Self {
        self.policies.insert(name.into(), policy);
        self
    }

    /// Timeout of one handler attempt, unless the handler sets its own (default 30 s).
    pub fn handler_timeout(mut self, timeout: Duration) -> Self {
        self.handler_timeout = timeout;
        self
    }

    /// Unsettled deliveries at once; handlers of different deliveries run concurrently up
    /// to this (default 100; 0 is taken as 1, never as "unlimited").
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch.max(1);
        self
    }

    /// Largest body accepted; larger messages are dead-lettered (default 4 MiB).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// How long shutdown waits for in-flight deliveries (default 10 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Runs every delivery in a task of its own, so that CPU-heavy handlers of different
    /// deliveries use every core, at the cost of a task spawn per delivery. By default the
    /// deliveries of a bus run concurrently (up to the prefetch) on its consumer task,
    /// which is cheaper; handlers that await I/O need nothing else.
    pub fn task_per_delivery(mut self, enabled: bool) -> Self {
        self.task_per_delivery = enabled;
        self
    }

    pub(crate) fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    pub(crate) fn has_service(&self) -> bool {
        self.service.is_some()
    }

    /// Checks the configuration, declares the service's queue and bindings with the
    /// transport (so events published from now on wait for it), and returns the bus, not
    /// yet consuming: see [`Bus::run_until`] and [`Bus::spawn`].
    pub async fn build(self) -> Result<Bus> {
        let service = match self.service.as_deref().map(str::trim) {
            Some(s) if !s.is_empty() => s.to_owned(),
            _ => {
                return Err(Error::Config(
                    "a bus needs a service name: .service(\"orders\")".into(),
                ));
            }
        };
        let mut handlers = registry::select(&self.selection, &service)?;
        handlers.extend(self.handlers);
        let mut names = BTreeSet::new();
        let mut patterns = Vec::with_capacity(handlers.len());
        let mut resolved = Vec::with_capacity(handlers.len());
        for handler in handlers {
            registry::check_name(&handler.name)?;
            if !names.insert(handler.name.to_string()) {
                return Err(Error::Config(format!(
                    "two handlers are named `{}` on service {service}: rename one with #[handler(name = \"...\")]",
                    handler.name
                )));
            }
            patterns.push(Pattern::new(handler.pattern.as_str())?);
            let policy = match &handler.retry {
                RetrySpecOwned::Default => self.retry,
                RetrySpecOwned::Retries(n) => self.retry.retries(*n),
                RetrySpecOwned::Named(name) => *self.policies.get(name).ok_or_else(|| {
                    Error::Config(format!(
                        "handler `{}` uses retry policy `{name}`, which is not registered: .retry_policy(\"{name}\", ...)",
                        handler.name
                    ))
                })?,
            };
            resolved.push(ResolvedHandler {
                name: handler.name,
                decoder: handler.decoder,
                timeout: handler.timeout.unwrap_or(self.handler_timeout),
                policy,
                call: handler.call,
            });
        }
        let transport = self
            .transport
            .unwrap_or_else(|| Arc::new(MemoryTransport::new()));
        let publisher = Publisher {
            transport: Arc::clone(&transport),
            service: Arc::from(service.as_str()),
        };
        let subscription = if resolved.is_empty() {
            None
        } else {
            let bindings: BTreeSet<String> = patterns.iter().map(|p| p.to_string()).collect();
            let subscription = Subscription {
                service: service.clone(),
                patterns: bindings.into_iter().collect(),
                prefetch: self.prefetch,
            };
            transport.declare(&subscription).await?;
            Some(subscription)
        };
        let handler_names = resolved.iter().map(|h| h.name.to_string()).collect();
        let dispatcher = Dispatcher {
            handlers: resolved,
            router: Router::new(patterns),
            publisher: publisher.clone(),
            state: Arc::new(self.state),
            max_message_size: self.max_message_size,
            observer: self.observer,
            counters: Arc::new(Counters::default()),
        };
        let (shutdown, _) = watch::channel(false);
        Ok(Bus {
            inner: Arc::new(BusInner {
                publisher,
                dispatcher: Arc::new(dispatcher),
                subscription,
                running: AtomicBool::new(false),
                task_per_delivery: self.task_per_delivery,
                handler_names,
                shutdown,
                shutdown_timeout: self.shutdown_timeout,
            }),
        })
    }
}
