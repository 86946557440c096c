//! The [`Bus`]: publishes events and runs the handlers of one service. This file is the
//! handle (publishing, stats, health, shutdown); `run.rs` is the run loop that consumes,
//! dispatches and settles; `intake.rs` is what the bus consumes.

mod intake;
mod request;
mod run;
mod signal;
mod subscribe;

pub(crate) use intake::Intake;
pub use request::RequestCall;
pub use signal::{ShutdownSignal, StopSignal, shutdown_signal};
pub use subscribe::SubscribeCall;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use uuid::Uuid;

use crate::dispatch::Dispatcher;
use crate::error::Result;
use crate::event::Event;
use crate::health::Health;
use crate::metadata::Message;
use crate::publish::{PendingPublish, PublishOptions, Publisher};
use crate::request::Request;

use crate::stats::{BusStats, Counters};
use crate::transport::{Capabilities, DeadLetteredMessage, Transport};
use crate::unassigned::UnassignedClaim;

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
/// // consume until the signal: in a service `pubsub::shutdown_signal()` (Ctrl-C)
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
    pub(crate) intake: Option<Intake>,
    pub(crate) capabilities: Capabilities,
    pub(crate) counters: Arc<Counters>,
    /// Whether the bus is consuming now.
    pub(crate) running: watch::Sender<bool>,
    pub(crate) handler_names: Vec<String>,
    pub(crate) shutdown: watch::Sender<bool>,
    pub(crate) shutdown_timeout: Duration,
    /// Whether the bus still counts as a user of its transport ([`Transport::attach`]);
    /// cleared by the first [`Bus::close`], or when the bus is dropped.
    attached: AtomicBool,
    /// The bus's hold on the handlers that name no service, if it runs them by default;
    /// released when it is closed or dropped.
    unassigned: std::sync::Mutex<Option<UnassignedClaim>>,
}

impl Drop for BusInner {
    /// A bus dropped without [`Bus::close`] stops counting as a user of its transport
    /// (without closing it), so that the last bus closed still closes the transport.
    fn drop(&mut self) {
        if self.attached.swap(false, Ordering::SeqCst) && self.publisher.transport.detach() {
            tracing::debug!(
                service = %self.publisher.service,
                "the last bus of the transport was dropped without close(); the transport stays open until closed"
            );
        }
    }
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
        let publisher = Publisher::new(
            service.into(),
            crate::transport::into_shared(transport),
            false,
        );
        Self::from_parts(publisher, None, None, Arc::default(), Duration::ZERO)
    }

    pub(crate) fn from_parts(
        publisher: Publisher,
        dispatcher: Option<Dispatcher>,
        intake: Option<Intake>,
        counters: Arc<Counters>,
        shutdown_timeout: Duration,
    ) -> Self {
        let handler_names = dispatcher
            .iter()
            .flat_map(|d| d.handlers.iter().map(|h| h.name.to_string()))
            .collect();
        let (shutdown, _) = watch::channel(false);
        let (running, _) = watch::channel(false);
        publisher.transport.attach();
        Self {
            inner: Arc::new(BusInner {
                capabilities: publisher.capabilities,
                publisher,
                dispatcher: dispatcher.map(Arc::new),
                intake,
                counters,
                running,
                handler_names,
                shutdown,
                shutdown_timeout,
                attached: AtomicBool::new(true),
                unassigned: std::sync::Mutex::new(None),
            }),
        }
    }

    /// The bus, holding `claim` on the handlers that name no service until it is closed.
    pub(crate) fn holding(self, claim: Option<UnassignedClaim>) -> Self {
        *self
            .inner
            .unassigned
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = claim;
        self
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
        self.check_open()?;
        self.inner
            .publisher
            .publish(event, PublishOptions::new())
            .await
    }

    /// Hands `event` to the transport and returns once it is on its way, with a
    /// [`PendingPublish`] that resolves to the event id when the broker confirmed it:
    /// pipelined publishing, many confirmations in flight from one task.
    /// [`publish`](Self::publish) is `begin_publish` followed by waiting.
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
    ///     pending.push(bus.begin_publish(&Sampled { value }).await?); // does not wait for the broker
    /// }
    /// for publish in pending {
    ///     publish.await?; // each confirmation on its own
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn begin_publish<E: Event>(&self, event: &E) -> Result<PendingPublish> {
        self.check_open()?;
        self.inner
            .publisher
            .send(event, PublishOptions::new())
            .await
    }

    /// Publishes `event` with explicit options (correlation and causation ids, headers,
    /// reply-to, partition key).
    pub async fn publish_with<E: Event>(&self, event: &E, options: PublishOptions) -> Result<Uuid> {
        self.check_open()?;
        self.inner.publisher.publish(event, options).await
    }

    /// Publishes an already encoded message as it is (gateways, bridges, tests of bad
    /// input); `app_id` defaults to this service. Returns the message's id.
    pub async fn publish_message(&self, message: Message) -> Result<Uuid> {
        self.check_open()?;
        self.inner.publisher.publish_message(message).await
    }

    /// Sends `request` and waits for its reply, typed by the request
    /// ([`Request`], `#[event(reply = T)]`): the reply of the handler that answered first,
    /// or why there is none ([`RequestError`](crate::RequestError)): no responder (at once),
    /// timed out, the responder's handler failed (its message and kind), the reply does not
    /// decode, the connection was lost while waiting. Waits [`DEFAULT_REQUEST_TIMEOUT`](crate::DEFAULT_REQUEST_TIMEOUT)
    /// unless `.timeout(..)` says otherwise; the request carries that deadline. Each request
    /// is matched to its reply by its correlation id, so thousands can be in flight on one
    /// bus. The transport must support it ([`Capabilities::request_reply`]): the in-memory
    /// transport and AMQP (over direct reply-to) do; Streams have no reply-to.
    ///
    /// A request starts a new conversation: its correlation id is its own id.
    ///
    /// On the responder's side a request handler is a handler like any other (isolated,
    /// timed out), with one difference in what retries mean: it is retried in process
    /// only while its caller still waits (a backoff that would end past the deadline is
    /// not waited for), never delivered again later nor dead-lettered; its last failure
    /// goes back to the caller as [`RequestError::HandlerFailed`](crate::RequestError::HandlerFailed).
    ///
    /// ```
    /// use std::time::Duration;
    /// use pubsub::prelude::*;
    ///
    /// #[derive(Debug, Clone, Serialize, Deserialize)]
    /// struct UserProfile { name: String }
    ///
    /// #[derive(Debug, Clone, Serialize, Deserialize, Event)]
    /// #[event(domain = "user", action = "profile_requested", reply = UserProfile)]
    /// struct GetUserProfile { user_id: String }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> pubsub::Result<()> {
    /// let profile = Handler::typed("profile", |req: GetUserProfile, _ctx: Context| async move {
    ///     Ok::<_, HandlerError>(UserProfile { name: format!("Ada ({})", req.user_id) })
    /// });
    /// let broker = MemoryTransport::new();
    /// let users = Bus::builder()
    ///     .service("users")
    ///     .transport(broker.clone())
    ///     .select_handlers(HandlerSelection::None)
    ///     .handler(profile)
    ///     .build()
    ///     .await?;
    /// let running = users.spawn().await?;
    ///
    /// let matching = Bus::publisher("matching", broker);
    /// let profile: UserProfile = matching
    ///     .request(&GetUserProfile { user_id: "u-1".into() })
    ///     .timeout(Duration::from_secs(2))
    ///     .await?;
    /// assert_eq!(profile.name, "Ada (u-1)");
    /// # users.shutdown();
    /// # running.await.expect("the bus task")?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn request<'a, R: Request>(&'a self, request: &'a R) -> RequestCall<'a, R> {
        RequestCall::new(self, request)
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
            has_handlers: self.inner.intake.is_some(),
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

    /// [`TransportError::Closed`](crate::transport::TransportError::Closed) once the bus
    /// was [closed](Self::close), whether or not its transport still is.
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.inner.attached.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(crate::transport::TransportError::Closed.into())
        }
    }

    /// The transport the bus publishes and consumes through.
    pub(crate) fn transport(&self) -> &Arc<dyn Transport> {
        &self.inner.publisher.transport
    }

    /// What the bus consumes (`None` for a bus without handlers).
    pub(crate) fn intake(&self) -> Option<&Intake> {
        self.inner.intake.as_ref()
    }

    /// Used by the test harness and the conformance suite (`testing` feature).
    #[cfg(feature = "testing")]
    pub(crate) fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// Asks a running bus to stop: no new deliveries, in-flight ones finish (up to the
    /// shutdown timeout) and are settled. Final: running the bus again fails with
    /// [`Error::ShutDown`]; publishing keeps working until [`close`](Self::close).
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Closes this bus: shuts it down, waits until its run has ended (every delivery
    /// settled or requeued, its consumers closed), and stops using its transport. Publishing
    /// through this bus fails afterwards. Idempotent.
    ///
    /// The transport closes (its connections flushed and closed) only when this was the
    /// last bus using it: a transport shared by several buses — clones of one
    /// `MemoryTransport`, `AmqpTransport` or `StreamTransport`, or one
    /// `Arc<dyn Transport>` — counts them ([`Transport::attach`] and
    /// [`Transport::detach`]), so closing one bus leaves the others publishing and
    /// consuming. A bus dropped without `close` stops counting too. To close a transport
    /// for every bus at once, call its own [`close`](Transport::close). A third-party
    /// transport that does not count its buses is never closed by a bus: close it yourself.
    ///
    /// ```
    /// use pubsub::prelude::*;
    /// use pubsub::{health::ConnectionState, transport::Transport};
    ///
    /// #[derive(Debug, Clone, Serialize, Deserialize, Event)]
    /// #[event(domain = "page", action = "viewed")]
    /// struct PageViewed { path: String }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> pubsub::Result<()> {
    /// let broker = MemoryTransport::new();
    /// let web = Bus::publisher("web", broker.clone());
    /// let admin = Bus::publisher("admin", broker.clone()); // one transport, two buses
    /// web.close().await?;
    /// admin.publish(&PageViewed { path: "/admin".into() }).await?; // still open
    /// admin.close().await?; // the last bus: the transport closes
    /// assert!(broker.health().connections[0].state == ConnectionState::Closed);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn close(&self) -> Result<()> {
        self.shutdown();
        let mut running = self.inner.running.subscribe();
        let _ = running.wait_for(|running| !*running).await;
        // another service's bus may run the handlers that name none now
        drop(
            self.inner
                .unassigned
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .take(),
        );
        let transport = &self.inner.publisher.transport;
        if self.inner.attached.swap(false, Ordering::SeqCst) && transport.detach() {
            transport.close().await?;
        }
        Ok(())
    }
}
