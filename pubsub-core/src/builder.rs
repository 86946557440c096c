//! [`BusBuilder`]: configuring a [`Bus`] and resolving its handlers.

use std::collections::{BTreeSet, HashMap, hash_map};
use std::sync::Arc;
use std::time::Duration;

use crate::bus::Bus;
use crate::bus::Intake;
use crate::dispatch::{Dispatcher, Isolation, Observer, ResolvedHandler, RetrySettings};
use crate::error::{Error, Result};
use crate::handler::{Handler, RetrySpecOwned};
use crate::memory::MemoryTransport;
use crate::pattern::Pattern;
use crate::publish::Publisher;
use crate::retry::RetryPolicy;
use crate::router::Router;
use crate::selection::HandlerSelection;
use crate::state::StateMap;
use crate::stream::StreamConsumption;
use crate::transport::TransportError;
use crate::transport::{DelayedRedelivery, Subscription, Transport};

impl Bus {
    /// Starts configuring a bus that runs handlers (and publishes).
    ///
    /// Defined here beside [`BusBuilder`] rather than in `bus.rs`, so that the builder
    /// depends on the bus it builds and the bus knows nothing of how it was configured.
    pub fn builder() -> BusBuilder {
        BusBuilder::default()
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
///     .define_retry_policy("patient", RetryPolicy::exponential(10, Duration::from_secs(1)))
///     .handler_timeout(Duration::from_secs(10))
///     .prefetch(32)
///     .build()
///     .await?;
/// # let _ = bus;
/// # Ok(())
/// # }
/// ```
///
#[doc = include_str!("../docs/which_bus_runs_a_handler.md")]
#[must_use = "a builder does nothing until `.build().await`"]
pub struct BusBuilder {
    service: Option<String>,
    transport: Option<Arc<dyn Transport>>,
    /// `None`: the default, [`HandlerSelection::ForService`], with the unassigned handlers
    /// claimed for this service in the process.
    selection: Option<HandlerSelection>,
    /// Whether a default selection claims the unassigned handlers (not for the harness,
    /// whose buses each run on a private broker).
    claims_unassigned: bool,
    handlers: Vec<Handler>,
    state: StateMap,
    retry: RetryPolicy,
    policies: HashMap<String, RetryPolicy>,
    handler_timeout: Duration,
    prefetch: u16,
    max_message_size: usize,
    shutdown_timeout: Duration,
    isolation: Isolation,
    max_deliveries: Option<u32>,
    in_process_retry_limit: Duration,
    unroutable_is_error: bool,
    consume_dead_letters: bool,
    streams: Option<StreamConsumption>,
    observer: Option<Arc<dyn Observer>>,
}

impl Default for BusBuilder {
    fn default() -> Self {
        Self {
            service: None,
            transport: None,
            selection: None,
            claims_unassigned: true,
            handlers: Vec::new(),
            state: StateMap::default(),
            retry: RetryPolicy::default(),
            policies: HashMap::new(),
            handler_timeout: Duration::from_secs(30),
            prefetch: 100,
            max_message_size: 4 * 1024 * 1024,
            shutdown_timeout: Duration::from_secs(10),
            isolation: Isolation::default(),
            max_deliveries: Some(10),
            in_process_retry_limit: Duration::from_secs(1),
            unroutable_is_error: false,
            consume_dead_letters: false,
            streams: None,
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
        self.transport = Some(crate::transport::into_shared(transport));
        self
    }

    /// A transport already shared behind an `Arc`.
    pub fn shared_transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Which `#[handler]` functions this bus runs. By default, those reserved for its
    /// service with `#[handler(service = "..")]` and those that name no service — the
    /// latter on one service per process: see [Which bus runs a handler](Self#which-bus-runs-a-handler).
    /// Any selection given here is taken as it is, [`HandlerSelection::ForService`]
    /// included (which runs the handlers without a service on this bus whatever other
    /// bus runs them).
    pub fn select_handlers(mut self, selection: HandlerSelection) -> Self {
        self.selection = Some(selection);
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

    /// Defines a named retry policy, which handlers select with
    /// `#[handler(retry = "name")]` or [`Handler::use_retry_policy`]. Defining a name again
    /// replaces its policy.
    pub fn define_retry_policy(mut self, name: impl Into<String>, policy: RetryPolicy) -> Self {
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

    /// How long shutdown waits for in-flight deliveries (default 10 s). Then the handlers
    /// still running are aborted and their deliveries requeued; the whole shutdown ends
    /// within this timeout plus 3 s, whatever the broker does (what is still unsettled
    /// then is left to the broker, which delivers it again).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// How handlers run (default [`Isolation::Task`]: each attempt in its own task, its
    /// timeout enforced from outside). [`Isolation::Inline`] is cheaper and unguarded.
    pub fn isolation(mut self, isolation: Isolation) -> Self {
        self.isolation = isolation;
        self
    }

    /// Dead-letters, instead of handling again, a message the broker has delivered more
    /// than `limit` times (default 10): its handling keeps dying with the process or the
    /// connection. Needs a transport that counts deliveries (quorum queues, memory);
    /// `None` turns the limit off.
    pub fn max_deliveries(mut self, limit: Option<u32>) -> Self {
        self.max_deliveries = limit;
        self
    }

    /// Retries whose backoff is longer than `limit` (default 1 s) leave the prefetch window:
    /// the delivery is settled and the transport delivers the message again after the
    /// backoff (a timer in memory, a delay queue on AMQP), carrying the attempts spent.
    /// Shorter backoffs wait in process, holding the delivery. Transports that cannot
    /// delay always retry in process.
    pub fn in_process_retry_limit(mut self, limit: Duration) -> Self {
        self.in_process_retry_limit = limit;
        self
    }

    /// Makes this bus consume its service's dead-letter queue instead of its queue: its
    /// handlers (matched by key as usual) see what the service's handlers gave up on, with
    /// the reason and failed handlers in the headers `x-death-reason` and
    /// `x-failed-handlers` — to repair, alert or archive. A failure here does not
    /// dead-letter the message a second time: it stays in the dead-letter queue and comes
    /// back after the default policy's `max_backoff`. Acking removes it.
    ///
    /// ```
    /// use pubsub::prelude::*;
    /// use pubsub::{Bus, Handler, HandlerSelection, MemoryTransport};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> pubsub::Result<()> {
    /// let broker = MemoryTransport::new();
    /// let alert = Handler::raw("alert", "#", |dead: RawEvent, ctx: Context| async move {
    ///     tracing::error!(key = dead.key(), reason = ?ctx.header("x-death-reason"), "gave up");
    ///     Ok::<_, HandlerError>(())
    /// });
    /// let repair = Bus::builder()
    ///     .service("billing") // the dead letters of billing
    ///     .transport(broker.clone())
    ///     .select_handlers(HandlerSelection::None)
    ///     .handler(alert)
    ///     .consume_dead_letters()
    ///     .build()
    ///     .await?;
    /// # let _ = repair;
    /// # Ok(())
    /// # }
    /// ```
    pub fn consume_dead_letters(mut self) -> Self {
        self.consume_dead_letters = true;
        self
    }

    /// Reads streams instead of a queue, as `consumption` says: the stream of each domain
    /// the handlers' patterns name, one consumer per stream named after the service, its
    /// offset stored only after handling (see [`StreamConsumption`]). Needs a
    /// stream-backed transport ([`Transport::stream_naming`]), on which a bus reads
    /// streams anyway, with [`StreamConsumption::default`] unless this says otherwise;
    /// on a queue transport, [`build`](Self::build) fails.
    ///
    /// ```
    /// use pubsub::prelude::*;
    /// use pubsub::{Bus, Handler, HandlerSelection, MemoryTransport, stream::{StartAt, StreamConsumption}};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> pubsub::Result<()> {
    /// let broker = MemoryTransport::stream_backed();
    /// let audit = Handler::raw("audit", "order.#", |_: RawEvent, _: Context| async { Ok::<_, HandlerError>(()) });
    /// let bus = Bus::builder()
    ///     .service("audit")
    ///     .transport(broker.clone())
    ///     .select_handlers(HandlerSelection::None)
    ///     .handler(audit)
    ///     .stream_consumption(StreamConsumption::new().start_at(StartAt::First))
    ///     .build()
    ///     .await?;
    /// assert_eq!(broker.stream_names(), ["events.errors.audit", "events.order"]);
    /// # let _ = bus;
    /// # Ok(())
    /// # }
    /// ```
    pub fn stream_consumption(mut self, consumption: StreamConsumption) -> Self {
        self.streams = Some(consumption);
        self
    }

    /// Makes publishing an event that no queue is bound for an error
    /// ([`TransportError::Unroutable`](crate::transport::TransportError::Unroutable)); by default it is
    /// a warning, since nobody may listen yet.
    pub fn unroutable_is_error(mut self, enabled: bool) -> Self {
        self.unroutable_is_error = enabled;
        self
    }

    /// Used by the test harness (`testing` feature).
    #[cfg(feature = "testing")]
    pub(crate) fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Used by the test harness, whose buses each run on a broker of their own.
    #[cfg(feature = "testing")]
    pub(crate) fn private_to_test(mut self) -> Self {
        self.claims_unassigned = false;
        self
    }

    #[cfg(feature = "testing")]
    pub(crate) fn has_service(&self) -> bool {
        self.service.is_some()
    }

    #[cfg(feature = "testing")]
    pub(crate) fn reads_streams(&self) -> bool {
        self.streams.is_some()
    }

    /// Checks the configuration, declares the service's queue and bindings with the
    /// transport (so events published from now on wait for it), and returns the bus, not
    /// yet consuming: see [`Bus::run_until`] and [`Bus::spawn`].
    pub async fn build(mut self) -> Result<Bus> {
        let service = match self.service.as_deref().map(str::trim) {
            Some(s) if !s.is_empty() => s.to_owned(),
            _ => return Err(Error::MissingService),
        };
        let by_default = self.selection.is_none() && self.claims_unassigned;
        let (resolved, patterns) = self.resolve_handlers(&service)?;
        // before declaring: a bus refused here binds its queue to nothing
        let unassigned = if by_default {
            crate::unassigned::claim(&service)?
        } else {
            None
        };
        let transport = self.transport_for(&service, !resolved.is_empty());
        let capabilities = transport.capabilities();
        let publisher = Publisher::new(
            service.clone(),
            Arc::clone(&transport),
            self.unroutable_is_error,
        );
        let intake = if resolved.is_empty() {
            None
        } else {
            let intake = self.intake(&service, &*transport, &patterns)?;
            intake.declare(&*transport).await?;
            Some(intake)
        };
        let counters = Arc::default();
        let dispatcher = Dispatcher {
            handlers: resolved,
            router: Router::new(patterns),
            publisher: publisher.clone(),
            state: Arc::new(self.state),
            max_message_size: self.max_message_size,
            max_deliveries: self.max_deliveries,
            retry: RetrySettings {
                in_process_limit: self.in_process_retry_limit,
                delayed_redelivery: capabilities.delayed_redelivery != DelayedRedelivery::None,
            },
            isolation: self.isolation,
            dead_letter_source: self.consume_dead_letters.then_some(self.retry.max_backoff),
            observer: self.observer,
            counters: Arc::clone(&counters),
            sequence: Default::default(),
        };
        Ok(Bus::from_parts(
            publisher,
            Some(dispatcher),
            intake,
            counters,
            self.shutdown_timeout,
        )
        .holding(unassigned))
    }

    /// The bus's handlers (selected and added), checked: names plain and distinct, patterns
    /// valid, retry policies defined; with their patterns, in the same order.
    fn resolve_handlers(&mut self, service: &str) -> Result<(Vec<ResolvedHandler>, Vec<Pattern>)> {
        let selection = self.selection.take().unwrap_or_default();
        let mut handlers = crate::selection::select(&selection, service)?;
        handlers.append(&mut self.handlers);
        crate::stray_pattern::warn_about_stray_patterns(service, &handlers);
        let mut names = HashMap::with_capacity(handlers.len());
        let mut patterns = Vec::with_capacity(handlers.len());
        let mut resolved = Vec::with_capacity(handlers.len());
        for handler in handlers {
            crate::handler::check_name(&handler)?;
            match names.entry(Arc::clone(&handler.name)) {
                hash_map::Entry::Occupied(first) => {
                    return Err(Error::DuplicateHandler {
                        name: handler.name.to_string(),
                        first: *first.get(),
                        second: handler.origin,
                    });
                }
                hash_map::Entry::Vacant(slot) => {
                    slot.insert(handler.origin);
                }
            }
            patterns.push(Pattern::new(handler.pattern.as_str())?);
            let policy = match &handler.retry {
                RetrySpecOwned::Default => self.retry,
                RetrySpecOwned::Retries(n) => self.retry.retries(*n),
                RetrySpecOwned::Named(name) => {
                    *self
                        .policies
                        .get(name)
                        .ok_or_else(|| Error::UnknownRetryPolicy {
                            handler: handler.name.to_string(),
                            policy: name.clone(),
                        })?
                }
            };
            resolved.push(ResolvedHandler {
                name: handler.name,
                decoder: handler.decoder,
                timeout: handler.timeout.unwrap_or(self.handler_timeout),
                policy,
                call: handler.call,
                running: Default::default(),
            });
        }
        Ok((resolved, patterns))
    }

    /// The transport given, or a private in-memory broker (a warning if the bus consumes).
    fn transport_for(&mut self, service: &str, consumes: bool) -> Arc<dyn Transport> {
        self.transport.take().unwrap_or_else(|| {
            if consumes {
                tracing::warn!(
                    %service,
                    "no transport given: this bus consumes from a private in-memory broker that no other bus reaches; pass .transport(..)"
                );
            }
            Arc::new(MemoryTransport::new())
        })
    }

    /// What the bus consumes: its service queue bound to the handlers' patterns (or its
    /// dead-letter queue), or the streams those patterns map to on a stream transport.
    fn intake(
        &mut self,
        service: &str,
        transport: &dyn Transport,
        patterns: &[Pattern],
    ) -> Result<Intake> {
        let bindings: Vec<String> = patterns
            .iter()
            .map(|p| p.to_string())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        Ok(match (transport.stream_naming(), self.streams.take()) {
            (Some(_), _) if self.consume_dead_letters => {
                return Err(TransportError::Unsupported {
                    what: "consume_dead_letters on streams (failures go to the service's error stream, StreamNaming::error_stream)",
                    transport: transport.name(),
                }
                .into());
            }
            (Some(naming), streams) => Intake::Streams(streams.unwrap_or_default().subscriptions(
                service,
                &naming,
                &bindings,
                self.prefetch,
            )?),
            (None, Some(_)) => {
                return Err(TransportError::Unsupported {
                    what: "reading streams (BusBuilder::stream_consumption needs a stream-backed transport)",
                    transport: transport.name(),
                }
                .into());
            }
            (None, None) if self.consume_dead_letters => Intake::Queue(
                Subscription::dead_letters(service.to_owned()).prefetch(self.prefetch),
            ),
            (None, None) => Intake::Queue(
                Subscription::queue(service.to_owned(), bindings).prefetch(self.prefetch),
            ),
        })
    }
}
