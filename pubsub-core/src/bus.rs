//! The [`Bus`]: publishes events and runs the handlers of one service.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::Either;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::watch;
use uuid::Uuid;

use crate::builder::BusBuilder;
use crate::dispatcher::Dispatcher;
use crate::error::{Error, Result, TransportError};
use crate::event::Event;
use crate::metadata::Message;
use crate::publish::{PublishOptions, Publisher};
use crate::transport::{Consumer, Subscription};

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
/// // consume until the signal: usually `tokio::signal::ctrl_c()`
/// bus.run_until(tokio::time::sleep(std::time::Duration::from_millis(10))).await
/// # }
/// ```
#[derive(Clone)]
pub struct Bus {
    pub(crate) inner: Arc<BusInner>,
}

pub(crate) struct BusInner {
    pub(crate) publisher: Publisher,
    pub(crate) dispatcher: Arc<Dispatcher>,
    /// What this bus consumes; `None` for a publish-only bus.
    pub(crate) subscription: Option<Subscription>,
    pub(crate) running: AtomicBool,
    pub(crate) task_per_delivery: bool,
    pub(crate) handler_names: Vec<String>,
    pub(crate) shutdown: watch::Sender<bool>,
    pub(crate) shutdown_timeout: Duration,
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

    pub(crate) fn from_parts(
        publisher: Publisher,
        dispatcher: Dispatcher,
        subscription: Option<Subscription>,
        task_per_delivery: bool,
        shutdown_timeout: Duration,
    ) -> Self {
        let handler_names = dispatcher
            .handlers
            .iter()
            .map(|h| h.name.to_string())
            .collect();
        let (shutdown, _) = watch::channel(false);
        Self {
            inner: Arc::new(BusInner {
                publisher,
                dispatcher: Arc::new(dispatcher),
                subscription,
                running: AtomicBool::new(false),
                task_per_delivery,
                handler_names,
                shutdown,
                shutdown_timeout,
            }),
        }
    }

    /// The service name (queue and consumer name).
    pub fn service(&self) -> &str {
        &self.inner.publisher.service
    }

    /// Names of the handlers this bus runs.
    pub fn handler_names(&self) -> &[String] {
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

    /// Publishes an already encoded message as it is (gateways, bridges, tests of bad
    /// input); `app_id` defaults to this service. Returns the message's id.
    pub async fn publish_message(&self, message: Message) -> Result<Uuid> {
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
    /// shutdown timeout) and are settled. Final: running the bus again fails with
    /// [`Error::Closed`]; publishing keeps working.
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
    /// Fails if the bus is already running or was shut down, or if the transport closed the
    /// consumer without being asked to.
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
        if *self.inner.shutdown.borrow() {
            return Err(Error::Closed);
        }
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
        // The transport bounds unsettled deliveries by the prefetch; the bus does too, so
        // that a transport with coarser credit (streams) cannot overload it.
        let limit = self
            .inner
            .subscription
            .as_ref()
            .map_or(1, |s| usize::from(s.prefetch.max(1)));
        let mut signal = std::pin::pin!(signal);
        let mut outcome = Ok(());
        tracing::info!(service = %self.service(), handlers = ?self.inner.handler_names, "bus running");
        'consume: loop {
            let next = tokio::select! {
                biased;
                _ = &mut signal => break,
                _ = raised(stop) => break,
                Some(()) = in_flight.next(), if !in_flight.is_empty() => continue,
                next = consumer.next(), if in_flight.len() < limit => next,
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
                    // pause before asking again, while in-flight deliveries keep running
                    let mut pause = std::pin::pin!(tokio::time::sleep(Duration::from_millis(100)));
                    loop {
                        tokio::select! {
                            biased;
                            _ = &mut signal => break 'consume,
                            _ = raised(stop) => break 'consume,
                            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
                            _ = &mut pause => break,
                        }
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
