//! The [`Bus`]: publishes events and runs the handlers of one service.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::watch;
use tracing::Instrument;
use uuid::Uuid;

use crate::consumption::Consumption;
use crate::dispatch::{Abandon, Dispatcher, Incoming, Outcome};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::health::Health;
use crate::metadata::Message;
use crate::publish::{PendingPublish, PublishOptions, Publisher};

use crate::stats::{BusStats, Counters, Ended};
use crate::transport::TransportError;
use crate::transport::{
    Acker, Capabilities, Consumer, DeadLetteredMessage, Delivery, Settlement, Transport,
};

/// How long one settlement may take (an ack, or a copy to a dead-letter queue or error
/// stream confirmed first) before the bus gives up on it, so that a transport whose
/// channel stopped answering cannot hold an in-flight slot, or a shutdown, for ever. The
/// broker delivers an unsettled message again.
const SETTLE_WAIT: Duration = Duration::from_secs(60);

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
    /// `None` for a publisher-only bus.
    pub(crate) dispatcher: Option<Arc<Dispatcher>>,
    /// What this bus consumes; `None` for a bus without handlers.
    pub(crate) consumption: Option<Consumption>,
    pub(crate) capabilities: Capabilities,
    pub(crate) counters: Arc<Counters>,
    /// Whether the bus is consuming now.
    pub(crate) running: watch::Sender<bool>,
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

impl Bus {
    /// A bus that only publishes, as `service`: it declares nothing, consumes nothing and
    /// runs no handler, whatever `#[handler]`s are linked into the binary.
    ///
    /// ```
    /// use pubsub::prelude::*;
    /// use pubsub::{Bus, MemoryTransport};
    ///
    /// #[derive(Debug, Clone, Serialize, Deserialize, Event)]
    /// #[event(domain = "page", action = "viewed")]
    /// struct PageViewed { path: String }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> pubsub::Result<()> {
    /// let broker = MemoryTransport::new();
    /// let web = Bus::publisher("web", broker.clone());
    /// assert!(web.handler_names().is_empty());
    /// web.publish(&PageViewed { path: "/".into() }).await?; // nobody listens: a warning
    /// assert_eq!(broker.unroutable(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn publisher(service: impl Into<String>, transport: impl Transport) -> Self {
        let publisher = Publisher::new(service.into(), Arc::new(transport), false);
        Self::from_parts(publisher, None, None, Arc::default(), Duration::ZERO)
    }

    pub(crate) fn from_parts(
        publisher: Publisher,
        dispatcher: Option<Dispatcher>,
        consumption: Option<Consumption>,
        counters: Arc<Counters>,
        shutdown_timeout: Duration,
    ) -> Self {
        let handler_names = dispatcher
            .iter()
            .flat_map(|d| d.handlers.iter().map(|h| h.name.to_string()))
            .collect();
        let (shutdown, _) = watch::channel(false);
        let (running, _) = watch::channel(false);
        Self {
            inner: Arc::new(BusInner {
                capabilities: publisher.capabilities,
                publisher,
                dispatcher: dispatcher.map(Arc::new),
                consumption,
                counters,
                running,
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

    /// What the bus's transport can do.
    pub fn capabilities(&self) -> Capabilities {
        self.inner.capabilities
    }

    /// Publishes `event` as the start of a new conversation (its correlation id is its own
    /// id). Returns the event id once the transport confirmed the publish.
    pub async fn publish<E: Event>(&self, event: &E) -> Result<Uuid> {
        self.inner
            .publisher
            .publish(event, PublishOptions::new())
            .await
    }

    /// Hands `event` to the transport and returns once it is on its way, with a
    /// [`PendingPublish`] that resolves to the event id when the broker confirmed it:
    /// pipelined publishing, many confirmations in flight from one task.
    /// [`publish`](Self::publish) is `send` followed by waiting.
    ///
    /// ```
    /// use pubsub::prelude::*;
    /// use pubsub::{Bus, MemoryTransport};
    ///
    /// #[derive(Debug, Clone, Serialize, Deserialize, Event)]
    /// #[event(domain = "metric", action = "sampled")]
    /// struct Sampled { value: u32 }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> pubsub::Result<()> {
    /// let bus = Bus::publisher("sensor", MemoryTransport::new());
    /// let mut pending = Vec::new();
    /// for value in 0..1000 {
    ///     pending.push(bus.send(&Sampled { value }).await?); // does not wait for the broker
    /// }
    /// for publish in pending {
    ///     publish.await?; // each confirmation on its own
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send<E: Event>(&self, event: &E) -> Result<PendingPublish> {
        self.inner
            .publisher
            .send(event, PublishOptions::new())
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

    /// What the bus has done so far. Every count of a delivery that ended is in place
    /// before it leaves `in_flight`.
    pub fn stats(&self) -> BusStats {
        self.inner.counters.snapshot()
    }

    /// Whether the bus is connected and consuming: its own state and its transport's
    /// connections and consumers (see [`Health`]).
    pub fn health(&self) -> Health {
        Health {
            service: self.service().to_owned(),
            consuming: *self.inner.running.borrow(),
            has_handlers: self.inner.consumption.is_some(),
            transport: self.inner.publisher.transport.health(),
        }
    }

    /// The messages waiting in this service's dead-letter queue, oldest first, each with
    /// its reason and the handlers that failed. They stay in the queue (replay or consume
    /// them with [`BusBuilder::consume_dead_letters`](crate::BusBuilder::consume_dead_letters)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> pubsub::Result<()> {
    /// use pubsub::prelude::*;
    ///
    /// let invoice = Handler::raw("invoice", "order.#", |_: RawEvent, _: Context| async {
    ///     Ok::<_, HandlerError>(())
    /// });
    /// let bus = Bus::builder()
    ///     .service("billing")
    ///     .transport(MemoryTransport::new())
    ///     .select_handlers(HandlerSelection::None) // only the one below
    ///     .handler(invoice)
    ///     .build()
    ///     .await?;
    /// assert!(bus.dead_letters().await?.is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetteredMessage>> {
        Ok(self
            .inner
            .publisher
            .transport
            .dead_letters(self.service())
            .await?)
    }

    /// Used by the test harness and the conformance suite (`testing` feature).
    #[cfg(feature = "testing")]
    pub(crate) fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// Asks a running bus to stop: no new deliveries, in-flight ones finish (up to the
    /// shutdown timeout) and are settled. Final: running the bus again fails with
    /// [`Error::Closed`]; publishing keeps working until [`close`](Self::close).
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Shuts down, waits until the run has ended (every delivery settled or requeued, the
    /// consumer closed), then closes the transport: its connections, flushed. Publishing
    /// fails afterwards.
    pub async fn close(&self) -> Result<()> {
        self.shutdown();
        let mut running = self.inner.running.subscribe();
        let _ = running.wait_for(|running| !*running).await;
        self.inner.publisher.transport.close().await?;
        Ok(())
    }

    /// Starts consuming, then runs the bus in a background task until
    /// [`shutdown`](Self::shutdown). Returns once the bus consumes its queue (so a
    /// transport that refuses to consume fails here); the handle yields how the run ended.
    pub async fn spawn(&self) -> Result<tokio::task::JoinHandle<Result<()>>> {
        let bus = self.clone();
        let Some(consumption) = &self.inner.consumption else {
            return Ok(tokio::spawn(async move {
                bus.run_until(std::future::pending::<()>()).await
            }));
        };
        let claim = self.claim()?;
        let consumer = consumption
            .consume(&*self.inner.publisher.transport)
            .await?;
        Ok(tokio::spawn(async move {
            let _claim = claim;
            bus.run_consumer(consumer, std::future::pending::<()>())
                .await
        }))
    }

    /// Consumes and handles deliveries until `signal` completes (e.g.
    /// `tokio::signal::ctrl_c()`) or [`shutdown`](Self::shutdown) is called, then shuts
    /// down gracefully: stops taking deliveries and lets in-flight ones finish within the
    /// shutdown timeout; at the deadline, abandons the rest (their handler tasks aborted
    /// and awaited) and requeues them explicitly, so the broker redelivers them; then closes
    /// the consumer (a stream consumer stores its offset). Call [`close`](Self::close)
    /// afterwards to close the transport.
    ///
    /// Fails if the bus is already running or was shut down, or if the transport closed the
    /// consumer without being asked to.
    pub async fn run_until<F: Future>(&self, signal: F) -> Result<()> {
        let Some(consumption) = &self.inner.consumption else {
            // Nothing to consume, just wait for the signal.
            let mut stop = self.inner.shutdown.subscribe();
            tokio::select! {
                _ = signal => {}
                _ = raised(&mut stop) => {}
            }
            return Ok(());
        };
        let _claim = self.claim()?;
        let consumer = consumption
            .consume(&*self.inner.publisher.transport)
            .await?;
        self.run_consumer(consumer, signal).await
    }

    /// Marks the bus as running until the claim is dropped.
    fn claim(&self) -> Result<RunningClaim> {
        if *self.inner.shutdown.borrow() {
            return Err(Error::Closed);
        }
        if self.inner.running.send_replace(true) {
            return Err(Error::AlreadyRunning {
                service: self.service().to_owned(),
            });
        }
        Ok(RunningClaim(Arc::clone(&self.inner)))
    }

    async fn run_consumer<F: Future>(
        &self,
        mut consumer: Box<dyn Consumer>,
        signal: F,
    ) -> Result<()> {
        let Some(dispatcher) = &self.inner.dispatcher else {
            return Ok(());
        };
        let mut stop = self.inner.shutdown.subscribe();
        let stop = &mut stop;
        let (abandon_all, abandon) = watch::channel(false);
        let abandon = Abandon(abandon);
        let mut in_flight = FuturesUnordered::new();
        // The transport bounds unsettled deliveries by the prefetch; the bus does too, so
        // that a transport with coarser credit (streams) cannot overload it.
        let limit = self
            .inner
            .consumption
            .as_ref()
            .map_or(1, |c| usize::from(c.prefetch().max(1)));
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
                    self.inner.counters.delivered();
                    in_flight.push(self.process(Arc::clone(dispatcher), delivery, abandon.clone()));
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
        self.drain(consumer, in_flight, abandon_all).await;
        outcome
    }

    /// Handles one delivery and settles it: the only place a delivery is settled.
    fn process(
        &self,
        dispatcher: Arc<Dispatcher>,
        delivery: Delivery,
        abandon: Abandon,
    ) -> impl Future<Output = ()> + Send + 'static {
        let counters = Arc::clone(&self.inner.counters);
        let can_requeue = self.inner.capabilities.requeue;
        let Delivery {
            message,
            redelivered,
            delivery_count,
            acker,
            ..
        } = delivery;
        let span = tracing::info_span!(
            "delivery",
            service = %dispatcher.publisher.service,
            id = %message.metadata.id,
            key = %message.metadata.key,
            redelivered,
        );
        async move {
            let incoming = Incoming {
                message,
                redelivered,
                delivery_count,
            };
            // boxed: the handling state is large, and is moved less this way
            let settlement = match Box::pin(dispatcher.dispatch(&incoming, &abandon)).await {
                Outcome::Settle(settlement) => settlement,
                Outcome::Abandoned if can_requeue => Settlement::Requeue,
                Outcome::Abandoned => {
                    // a stream reads it again from the stored offset
                    drop(acker);
                    counters.ended(Ended::Abandoned);
                    return;
                }
            };
            let ended = match &settlement {
                Settlement::Ack => Ended::Acked,
                Settlement::DeadLetter(_) => Ended::DeadLettered,
                Settlement::Requeue => Ended::Requeued,
                Settlement::Retry(_) => Ended::Retried,
            };
            match settle(acker, settlement).await {
                Ok(()) => counters.ended(ended),
                Err(error) => {
                    let id = &incoming.message.metadata.id;
                    tracing::error!(%id, %error, "could not settle the delivery; the broker will deliver it again");
                    counters.ended(Ended::SettleError);
                }
            }
        }
        .instrument(span)
    }

    async fn drain<D: Future<Output = ()>>(
        &self,
        mut consumer: Box<dyn Consumer>,
        mut in_flight: FuturesUnordered<D>,
        abandon: watch::Sender<bool>,
    ) {
        if let Err(error) = consumer.cancel().await {
            tracing::warn!(%error, "cancelling the consumer failed");
        }
        let count = in_flight.len();
        let deadline = self.inner.shutdown_timeout;
        let finish = async { while in_flight.next().await.is_some() {} };
        if tokio::time::timeout(deadline, finish).await.is_err() {
            tracing::warn!(
                remaining = in_flight.len(),
                ?deadline,
                "shutdown timeout: abandoning unfinished deliveries; they are requeued"
            );
            // Each remaining delivery aborts its handler task, waits for it (bounded), and
            // is settled with `Requeue` (or left to the stream's stored offset).
            abandon.send_replace(true);
            while in_flight.next().await.is_some() {}
        }
        if let Err(error) = consumer.close().await {
            tracing::warn!(%error, "closing the consumer failed");
        }
        tracing::info!(service = %self.service(), in_flight = count, "bus stopped");
    }
}

/// Settles through `acker`, bounded by [`SETTLE_WAIT`] (a settlement done on its first
/// poll, as most acks are, arms no timer).
async fn settle(acker: Box<dyn Acker>, settlement: Settlement) -> Result<(), TransportError> {
    crate::deadline::within(SETTLE_WAIT, acker.settle(settlement))
        .await
        .unwrap_or(Err(TransportError::TimedOut {
            operation: "settling a delivery",
            after: SETTLE_WAIT,
        }))
}

/// Completes once the flag is raised (or its sender is gone).
async fn raised(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|raised| *raised).await;
}

/// Clears the bus's running flag when its run ends.
struct RunningClaim(Arc<BusInner>);

impl Drop for RunningClaim {
    fn drop(&mut self) {
        self.0.running.send_replace(false);
    }
}
