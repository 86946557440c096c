//! [`Health`]: whether a bus is connected and consuming, as a value a `/health` endpoint
//! can serve.
//!
//! The bus adds what it knows (is it consuming?) to what the transport reports
//! ([`Transport::health`](crate::transport::Transport::health)): the state of each connection, of each
//! consumer, how often they came back, and the last error. A consumer that is gone for good
//! shows as unhealthy instead of silently idle.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

/// How long a settlement (an ack, a reject, a dead-letter copy and its ack) may be under
/// way before the consumer's health reports it stuck ([`ConsumerHealth::stuck_settlements`]):
/// an ack is written at once, and a copy confirmed within a few milliseconds, unless the
/// broker or the network does not answer.
pub const SETTLEMENT_STUCK_AFTER: Duration = Duration::from_secs(5);

/// The state of a bus: its own and its transport's.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> pubsub_core::Result<()> {
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
/// assert!(!bus.health().is_healthy(), "built, not consuming yet");
/// let running = bus.spawn().await?;
/// let health = bus.health();
/// assert!(health.is_healthy(), "{health:?}");
/// // serve it: `axum::Json(bus.health())`, with status 503 unless `is_healthy()`
/// bus.shutdown();
/// running.await.expect("the bus task")?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Health {
    /// The service.
    pub service: String,
    /// Whether the bus consumes: it has handlers and its run has started and not ended.
    /// `false` also for a publisher-only bus, which is healthy without consuming.
    pub consuming: bool,
    /// Whether the bus has handlers to run (a bus with handlers must be consuming).
    pub has_handlers: bool,
    /// What the transport reports.
    pub transport: TransportHealth,
}

impl Health {
    /// Healthy: every connection up (a blocked one counts: publishing waits, nothing is
    /// lost), every consumer running with no settlement stuck, and a bus with handlers
    /// consuming.
    pub fn is_healthy(&self) -> bool {
        (self.consuming || !self.has_handlers) && self.transport.is_healthy()
    }
}

/// What a transport reports about its connections and consumers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TransportHealth {
    /// The transport's name (`amqp`, `memory`, …).
    pub transport: &'static str,
    /// Its connections.
    pub connections: Vec<ConnectionHealth>,
    /// Its consumers.
    pub consumers: Vec<ConsumerHealth>,
}

impl TransportHealth {
    /// A transport with nothing to report (no connection of its own).
    pub fn new(transport: &'static str) -> Self {
        Self {
            transport,
            connections: Vec::new(),
            consumers: Vec::new(),
        }
    }

    /// Every connection up or blocked and every consumer running, none with a settlement
    /// stuck ([`ConsumerHealth::stuck_settlements`]).
    pub fn is_healthy(&self) -> bool {
        self.connections
            .iter()
            .all(|c| matches!(c.state, ConnectionState::Up | ConnectionState::Blocked))
            && self
                .consumers
                .iter()
                .all(|c| c.state == ConsumerState::Running && c.stuck_settlements == 0)
    }
}

/// One connection to the broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ConnectionHealth {
    /// What it is for (`publisher`, `consumer`).
    pub name: String,
    /// Its state.
    pub state: ConnectionState,
    /// Since when it is in that state.
    pub since: SystemTime,
    /// How often it was lost and made again.
    pub reconnects: u64,
    /// The last error it had (connection lost, connecting failed), if any.
    pub last_error: Option<String>,
    /// Why the broker blocks it, while it does (`low on memory`).
    pub blocked_reason: Option<String>,
}

impl ConnectionHealth {
    /// A connection in `state` since now.
    pub fn new(name: impl Into<String>, state: ConnectionState) -> Self {
        Self {
            name: name.into(),
            state,
            since: SystemTime::now(),
            reconnects: 0,
            last_error: None,
            blocked_reason: None,
        }
    }

    /// Moves to `state` (`since` changes only if the state does), keeping `error` as the
    /// last one if given; returns the state it left.
    ///
    /// ```
    /// use pubsub::health::{ConnectionHealth, ConnectionState};
    /// let mut health = ConnectionHealth::new("orders", ConnectionState::Up);
    /// let from = health.transition(ConnectionState::Down, Some("reset".into()));
    /// assert_eq!((from, health.state), (ConnectionState::Up, ConnectionState::Down));
    /// assert_eq!(health.last_error.as_deref(), Some("reset"));
    /// ```
    pub fn transition(&mut self, state: ConnectionState, error: Option<String>) -> ConnectionState {
        transition(
            &mut self.state,
            &mut self.since,
            &mut self.last_error,
            state,
            error,
        )
    }
}

/// The state of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ConnectionState {
    /// Connecting (the first time, or again after a loss).
    Connecting,
    /// Connected.
    Up,
    /// Connected, but the broker blocks publishing (a memory or disk alarm).
    Blocked,
    /// Lost; reconnecting with backoff.
    Down,
    /// Closed on purpose; it will not come back.
    Closed,
}

/// One consumer (a service queue or stream being consumed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ConsumerHealth {
    /// What it consumes (the queue or stream).
    pub source: String,
    /// Its state.
    pub state: ConsumerState,
    /// Since when it is in that state.
    pub since: SystemTime,
    /// How often it was resumed after its channel or connection was lost.
    pub resumed: u64,
    /// The last error that stopped it, if any.
    pub last_error: Option<String>,
    /// Settlements of its deliveries under way now (where the transport tracks them, see
    /// [`Settlements`]).
    pub settling: u64,
    /// Of those, how many have been under way longer than [`SETTLEMENT_STUCK_AFTER`]: the
    /// broker or the connection does not answer them, and their deliveries stay in flight.
    /// Any makes the consumer unhealthy.
    pub stuck_settlements: u64,
    /// When the oldest settlement under way started.
    pub oldest_settlement: Option<SystemTime>,
    /// Messages the broker sent it, for a stream consumer of some keys only
    /// ([`StreamSource::only_keys`](crate::transport::StreamSource::only_keys)) on the
    /// RabbitMQ Streams transport; 0 elsewhere.
    pub received: u64,
    /// Of those, how many it passed over because their key is not one it reads: what the
    /// broker's probabilistic filter let through, and chunks written without filter values
    /// (by other clients).
    pub passed_over: u64,
}

impl ConsumerHealth {
    /// A consumer of `source` in `state` since now.
    pub fn new(source: impl Into<String>, state: ConsumerState) -> Self {
        Self {
            source: source.into(),
            state,
            since: SystemTime::now(),
            resumed: 0,
            last_error: None,
            settling: 0,
            stuck_settlements: 0,
            oldest_settlement: None,
            received: 0,
            passed_over: 0,
        }
    }

    /// Moves to `state` (`since` changes only if the state does), keeping `error` as the
    /// last one if given; returns the state it left.
    ///
    /// ```
    /// use pubsub::health::{ConsumerHealth, ConsumerState};
    /// let mut health = ConsumerHealth::new("orders", ConsumerState::Running);
    /// let from = health.transition(ConsumerState::Recovering, Some("channel closed".into()));
    /// assert_eq!((from, health.state), (ConsumerState::Running, ConsumerState::Recovering));
    /// ```
    pub fn transition(&mut self, state: ConsumerState, error: Option<String>) -> ConsumerState {
        transition(
            &mut self.state,
            &mut self.since,
            &mut self.last_error,
            state,
            error,
        )
    }
}

/// The settlements of one consumer's deliveries under way, kept by its transport for its
/// health: each acker holds a [`Settling`] while it settles, and the transport's health
/// report calls [`report`](Self::report). Clones share the same count.
///
/// ```
/// use pubsub::health::{ConsumerHealth, ConsumerState, Settlements};
/// let settlements = Settlements::default();
/// let settling = settlements.start();
/// let mut health = ConsumerHealth::new("orders", ConsumerState::Running);
/// settlements.report(&mut health);
/// assert_eq!((health.settling, health.stuck_settlements), (1, 0));
/// drop(settling);
/// settlements.report(&mut health);
/// assert_eq!((health.settling, health.oldest_settlement), (0, None));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Settlements {
    inner: Arc<Mutex<Under>>,
}

/// The settlements under way, by a number of their own.
#[derive(Debug, Default)]
struct Under {
    next: u64,
    started: BTreeMap<u64, (Instant, SystemTime)>,
}

impl Settlements {
    /// A settlement starts now; it ends when the returned guard is dropped.
    pub fn start(&self) -> Settling {
        let mut under = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let id = under.next;
        under.next += 1;
        under
            .started
            .insert(id, (Instant::now(), SystemTime::now()));
        Settling {
            settlements: self.clone(),
            id,
        }
    }

    /// Writes the settlements under way into `health`: how many, how many are stuck
    /// (under way longer than [`SETTLEMENT_STUCK_AFTER`]), and when the oldest started.
    pub fn report(&self, health: &mut ConsumerHealth) {
        let under = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        health.settling = under.started.len() as u64;
        health.stuck_settlements = under
            .started
            .values()
            .filter(|(started, _)| started.elapsed() >= SETTLEMENT_STUCK_AFTER)
            .count() as u64;
        // numbered in start order: the first is the oldest
        health.oldest_settlement = under.started.values().next().map(|(_, at)| *at);
    }
}

/// One settlement under way (see [`Settlements`]); it ends when dropped.
#[derive(Debug)]
pub struct Settling {
    settlements: Settlements,
    id: u64,
}

impl Drop for Settling {
    fn drop(&mut self) {
        self.settlements
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .started
            .remove(&self.id);
    }
}

/// The state of a consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ConsumerState {
    /// Receiving deliveries.
    Running,
    /// Its channel or connection was lost; it resumes once it is back.
    Recovering,
    /// Cancelled or closed on purpose.
    Stopped,
}

/// The one state transition of connections and consumers: `since` changes only if the
/// state does, `error` (if given) becomes the last one; returns the state left.
fn transition<S: Copy + PartialEq>(
    current: &mut S,
    since: &mut SystemTime,
    last_error: &mut Option<String>,
    to: S,
    error: Option<String>,
) -> S {
    let from = *current;
    if let Some(error) = error {
        *last_error = Some(error);
    }
    if from != to {
        *current = to;
        *since = SystemTime::now();
    }
    from
}
