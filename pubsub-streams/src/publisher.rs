//! De-duplicating producers that come back: one per producer name and stream, publishing
//! ids from 1 resumed from the broker's last one + 1, every message kept until the broker
//! confirmed it.
//!
//! The client neither reconnects nor notices a deleted stream. Each producer here keeps
//! its unconfirmed messages by publishing id. When its connection closes (the client's
//! `on_closed`), a send fails, or the broker answers that the publisher or stream is gone
//! (the stream was deleted), a recovery task re-creates the stream with its retention if
//! it is missing, builds a new producer under the same name with capped, jittered
//! backoff, and re-sends every unconfirmed message under its own id, in order. The broker
//! drops ids it already has and confirms them all the same, so nothing is lost and
//! nothing is stored twice. Each message is sent at most [`MAX_SENDS`] times, and a
//! publish waits at most [`StreamConfig::publish_timeout`](crate::StreamConfig).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use pubsub_core::{Confirmation, ConnectionHealth, ConnectionState, Message, TransportError};
use rabbitmq_stream_client::error::ProducerCreateError;
use rabbitmq_stream_client::types::{Message as WireMessage, ResponseCode};
use rabbitmq_stream_client::{Dedup, Environment, OnClosed, Producer};
use tokio::sync::{Mutex, Notify, oneshot};

use crate::config::StreamConfig;
use crate::connection::{Admin, Backoff, bounded};
use crate::convert;
use crate::error::StreamsError;
use crate::sync::{lock, read, write};

/// How often one message is sent before its publish fails: the first send and the
/// re-sends after recoveries.
pub(crate) const MAX_SENDS: u32 = 5;
/// Closing a producer whose connection may be gone waits at most this long.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// How often a producer looks for publishes older than the publish timeout, at most
/// (one sweep per producer instead of a timer per message).
const SWEEP_EVERY: Duration = Duration::from_millis(250);

type Reply = oneshot::Sender<Result<(), TransportError>>;

/// A message sent and not yet confirmed.
struct Unconfirmed {
    wire: WireMessage,
    /// The producer generation it was last sent on.
    sent_in: u64,
    sends: u32,
    /// When it was first sent: the publish fails once this is older than the publish
    /// timeout.
    since: Instant,
    reply: Reply,
}

type UnconfirmedMap = std::sync::Mutex<BTreeMap<u64, Unconfirmed>>;

/// What the client's callbacks tell the producer: the generation of the newest producer
/// found lost, and a wake-up for the recovery task.
#[derive(Default)]
struct Lost {
    generation: AtomicU64,
    wake: Notify,
}

impl Lost {
    fn report(&self, generation: u64) {
        self.generation.fetch_max(generation, Ordering::SeqCst);
        self.wake.notify_one();
    }
}

/// Tells the producer its connection closed.
struct OnLost {
    lost: Arc<Lost>,
    generation: u64,
}

#[async_trait]
impl OnClosed for OnLost {
    async fn on_closed(&self, _unconfirmed: Vec<WireMessage>) {
        // the producer keeps its own unconfirmed messages, with their replies
        self.lost.report(self.generation);
    }
}

/// One named producer on one stream.
pub(crate) struct NamedProducer {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    stream: Arc<str>,
    environment: Environment,
    admin: Arc<Admin>,
    config: StreamConfig,
    state: Mutex<State>,
    unconfirmed: Arc<UnconfirmedMap>,
    lost: Arc<Lost>,
    health: std::sync::Mutex<ConnectionHealth>,
    closed: AtomicBool,
    /// Messages sent again after a recovery.
    resent: AtomicU64,
    /// Turns true at close: a recovery in progress gives up at once.
    closing: tokio::sync::watch::Sender<bool>,
}

struct State {
    producer: Option<Producer<Dedup>>,
    /// Counts the producers built; callbacks of older ones are told apart by it.
    generation: u64,
    /// The next publishing id: strictly increasing, never 0, never reused.
    next_id: u64,
}

impl NamedProducer {
    /// Builds producer `name` on `stream`, resuming after the broker's last id.
    pub(crate) async fn build(
        environment: &Environment,
        admin: Arc<Admin>,
        config: &StreamConfig,
        name: &str,
        stream: &str,
    ) -> Result<Self, StreamsError> {
        // The broker answers 0 both for "unknown" and "last id 0"; ids start at 1, so 0
        // always means "none yet" here.
        let last = admin.publisher_sequence(name, stream).await?;
        let lost = Arc::new(Lost::default());
        let producer = build_producer(environment, config, name, stream, &lost, 1).await?;
        tracing::debug!(
            producer = name,
            stream,
            next_id = last + 1,
            "producer ready"
        );
        let inner = Arc::new(Inner {
            name: name.to_owned(),
            stream: Arc::from(stream),
            environment: environment.clone(),
            admin,
            config: config.clone(),
            state: Mutex::new(State {
                producer: Some(producer),
                generation: 1,
                next_id: last + 1,
            }),
            unconfirmed: Arc::default(),
            lost: Arc::clone(&lost),
            health: std::sync::Mutex::new(ConnectionHealth::new(name, ConnectionState::Up)),
            closed: AtomicBool::new(false),
            resent: AtomicU64::new(0),
            closing: tokio::sync::watch::Sender::new(false),
        });
        tokio::spawn(recovery(Arc::downgrade(&inner), lost));
        tokio::spawn(sweep(
            Arc::downgrade(&inner.unconfirmed),
            config.publish_timeout,
        ));
        Ok(Self { inner })
    }

    /// Hands `message` to the producer with the next id; the confirmation resolves when
    /// the broker confirmed it, or fails after the publish timeout.
    pub(crate) async fn send(&self, message: &Message) -> Result<Confirmation, TransportError> {
        let inner = &self.inner;
        let mut state = inner.lock_state().await?;
        let id = state.next_id;
        state.next_id += 1;
        inner
            .send_new(&mut state, convert::to_wire(message, id), id)
            .await
    }

    /// Sends `message` under an id chosen by the caller (re-sending a batch: the broker
    /// drops ids it already has, and still confirms them).
    pub(crate) async fn resend(
        &self,
        message: &Message,
        id: u64,
    ) -> Result<Confirmation, TransportError> {
        let inner = &self.inner;
        let mut state = inner.lock_state().await?;
        if id == 0 || lock(&inner.unconfirmed).contains_key(&id) {
            return Err(TransportError::other(format!(
                "publishing id {id} on {}: ids start at 1, and one id is never in flight twice",
                inner.stream
            )));
        }
        inner
            .send_new(&mut state, convert::to_wire(message, id), id)
            .await
    }

    /// The id the next [`send`](Self::send) uses.
    pub(crate) async fn next_id(&self) -> u64 {
        self.inner.state.lock().await.next_id
    }

    /// The producer's connection, for health.
    pub(crate) fn health(&self) -> ConnectionHealth {
        lock(&self.inner.health).clone()
    }

    /// How many messages were sent again after a recovery.
    pub(crate) fn resent(&self) -> u64 {
        self.inner.resent.load(Ordering::Relaxed)
    }

    /// Closes the producer (explicitly: its `Drop` blocks a runtime thread). Unconfirmed
    /// publishes fail with [`TransportError::Closed`].
    pub(crate) async fn close(&self) {
        let inner = &self.inner;
        inner.closed.store(true, Ordering::SeqCst);
        inner.closing.send_replace(true);
        inner.lost.wake.notify_one();
        let producer = inner.state.lock().await.producer.take();
        if let Some(producer) = producer {
            close_producer(producer).await;
        }
        let unconfirmed = std::mem::take(&mut *lock(&inner.unconfirmed));
        for (_, message) in unconfirmed {
            let _ = message.reply.send(Err(TransportError::Closed));
        }
        inner.set_health(ConnectionState::Closed, None);
    }
}

impl Inner {
    /// The state, once no recovery holds it; bounded by the publish timeout.
    async fn lock_state(&self) -> Result<tokio::sync::MutexGuard<'_, State>, TransportError> {
        let after = self.config.publish_timeout;
        let state = tokio::time::timeout(after, self.state.lock())
            .await
            .map_err(|_| {
                let health = lock(&self.health);
                TransportError::unavailable(format!(
                    "the producer {} on {} has been recovering for {after:?}; last error: {}",
                    self.name,
                    self.stream,
                    health.last_error.as_deref().unwrap_or("none")
                ))
            })?;
        if self.closed.load(Ordering::SeqCst) {
            return Err(TransportError::Closed);
        }
        Ok(state)
    }

    /// Keeps `wire` as unconfirmed under `id` and sends it.
    async fn send_new(
        &self,
        state: &mut State,
        wire: WireMessage,
        id: u64,
    ) -> Result<Confirmation, TransportError> {
        let (reply, confirmed) = oneshot::channel();
        lock(&self.unconfirmed).insert(
            id,
            Unconfirmed {
                wire: wire.clone(),
                sent_in: state.generation,
                sends: 1,
                since: Instant::now(),
                reply,
            },
        );
        self.write(state, wire, id).await;
        // the producer's sweep fails it after the publish timeout
        Ok(Confirmation::new(async move {
            confirmed.await.unwrap_or(Err(TransportError::Closed))
        }))
    }

    /// Hands `wire` to the current producer; a failure reports it lost (the message stays
    /// unconfirmed, and the recovery sends it again).
    async fn write(&self, state: &mut State, wire: WireMessage, id: u64) {
        let generation = state.generation;
        let Some(producer) = state.producer.as_mut() else {
            self.lost.report(generation);
            return;
        };
        let unconfirmed = Arc::clone(&self.unconfirmed);
        let lost = Arc::clone(&self.lost);
        let stream = Arc::clone(&self.stream);
        let callback = move |outcome: Result<_, _>| async move {
            let status: rabbitmq_stream_client::ConfirmationStatus = match outcome {
                Ok(status) => status,
                // the connection failed under the message
                Err(_) => return lost.report(generation),
            };
            if status.confirmed() {
                return confirm(&unconfirmed, id, None, Ok(()));
            }
            match status.status() {
                // the stream was deleted (the broker drops its publishers) or moved
                ResponseCode::PublisherDoesNotExist
                | ResponseCode::StreamDoesNotExist
                | ResponseCode::StreamNotAvailable => lost.report(generation),
                code => confirm(
                    &unconfirmed,
                    id,
                    Some(generation),
                    Err(TransportError::Nacked {
                        reason: format!(
                            "{stream}, publishing id {id}: the broker refused it: {code:?}"
                        ),
                    }),
                ),
            }
        };
        let sent = tokio::time::timeout(self.config.timeout, producer.send(wire, callback)).await;
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                self.note_error(&error.to_string());
                self.lost.report(generation);
            }
            Err(_) => {
                self.note_error("the producer's queue stayed full");
                self.lost.report(generation);
            }
        }
    }

    /// Builds a new producer once the current one is found lost, then re-sends what is
    /// unconfirmed. Holds the state meanwhile: new publishes wait (bounded).
    async fn recover(&self) {
        let mut state = self.state.lock().await;
        if self.lost.generation.load(Ordering::SeqCst) < state.generation
            || self.closed.load(Ordering::SeqCst)
        {
            // an older producer's news, or closing
            return;
        }
        tracing::warn!(producer = %self.name, stream = %self.stream, unconfirmed = lock(&self.unconfirmed).len(), "producer lost; rebuilding it");
        self.set_health(ConnectionState::Down, None);
        if let Some(old) = state.producer.take() {
            close_producer(old).await;
        }
        let mut backoff = Backoff::new(&self.config);
        let generation = state.generation + 1;
        let mut closing = self.closing.subscribe();
        let producer = loop {
            let rebuilt = tokio::select! {
                rebuilt = self.rebuild(generation) => rebuilt,
                _ = closing.wait_for(|closed| *closed) => return,
            };
            match rebuilt {
                Ok(producer) => break producer,
                Err(error) => {
                    let wait = backoff.next_wait();
                    tracing::warn!(producer = %self.name, stream = %self.stream, %error, ?wait, "rebuilding the producer failed; trying again");
                    self.note_error(&error.to_string());
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        _ = closing.wait_for(|closed| *closed) => return,
                    }
                }
            }
        };
        state.generation = generation;
        state.producer = Some(producer);
        {
            let mut health = lock(&self.health);
            health.reconnects += 1;
        }
        self.set_health(ConnectionState::Up, None);
        self.resend_unconfirmed(&mut state).await;
    }

    /// Re-creates the stream if it is gone, and builds the producer again.
    async fn rebuild(&self, generation: u64) -> Result<Producer<Dedup>, StreamsError> {
        self.admin.create_stream(&self.stream).await?;
        build_producer(
            &self.environment,
            &self.config,
            &self.name,
            &self.stream,
            &self.lost,
            generation,
        )
        .await
    }

    /// Sends every unconfirmed message again under its id, oldest first; one sent
    /// [`MAX_SENDS`] times fails instead.
    async fn resend_unconfirmed(&self, state: &mut State) {
        let again: Vec<(u64, WireMessage)> = {
            let mut unconfirmed = lock(&self.unconfirmed);
            let worn: Vec<u64> = unconfirmed
                .iter()
                .filter(|(_, m)| m.sends >= MAX_SENDS)
                .map(|(id, _)| *id)
                .collect();
            for id in worn {
                if let Some(message) = unconfirmed.remove(&id) {
                    let _ = message.reply.send(Err(TransportError::unavailable(format!(
                        "publishing id {id} on {} was sent {MAX_SENDS} times without a confirm",
                        self.stream
                    ))));
                }
            }
            unconfirmed
                .iter_mut()
                .map(|(id, message)| {
                    message.sends += 1;
                    message.sent_in = state.generation;
                    (*id, message.wire.clone())
                })
                .collect()
        };
        self.resent.fetch_add(again.len() as u64, Ordering::Relaxed);
        if !again.is_empty() {
            tracing::info!(producer = %self.name, stream = %self.stream, count = again.len(), "re-sending unconfirmed messages under their ids");
        }
        for (id, wire) in again {
            self.write(state, wire, id).await;
        }
    }

    fn note_error(&self, error: &str) {
        lock(&self.health).last_error = Some(error.to_owned());
    }

    fn set_health(&self, state: ConnectionState, error: Option<String>) {
        let mut health = lock(&self.health);
        if let Some(error) = error {
            health.last_error = Some(error);
        }
        if health.state != state {
            health.state = state;
            health.since = SystemTime::now();
        }
    }
}

/// Resolves the publish of `id`: a confirm from any producer generation, a refusal only
/// from the generation that last sent it.
fn confirm(
    unconfirmed: &UnconfirmedMap,
    id: u64,
    from: Option<u64>,
    outcome: Result<(), TransportError>,
) {
    let mut unconfirmed = lock(unconfirmed);
    let current = unconfirmed
        .get(&id)
        .is_some_and(|m| from.is_none_or(|generation| m.sent_in == generation));
    if current && let Some(message) = unconfirmed.remove(&id) {
        let _ = message.reply.send(outcome);
    }
}

/// The recovery task of one producer: ends when the producer is dropped or closed.
async fn recovery(producer: Weak<Inner>, lost: Arc<Lost>) {
    loop {
        lost.wake.notified().await;
        let Some(inner) = producer.upgrade() else {
            return;
        };
        if inner.closed.load(Ordering::SeqCst) {
            return;
        }
        inner.recover().await;
    }
}

/// The timeout sweep of one producer: every [`SWEEP_EVERY`] (or a quarter of a shorter
/// publish timeout), fails the publishes older than `after` with
/// [`TransportError::TimedOut`]; ends when the producer is dropped.
async fn sweep(unconfirmed: Weak<UnconfirmedMap>, after: Duration) {
    let every = (after / 4).clamp(Duration::from_millis(1), SWEEP_EVERY);
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(unconfirmed) = unconfirmed.upgrade() else {
            return;
        };
        let expired: Vec<Unconfirmed> = {
            let mut unconfirmed = lock(&unconfirmed);
            let old: Vec<u64> = unconfirmed
                .iter()
                .filter(|(_, m)| m.since.elapsed() >= after)
                .map(|(id, _)| *id)
                .collect();
            old.iter().filter_map(|id| unconfirmed.remove(id)).collect()
        };
        for message in expired {
            let _ = message.reply.send(Err(TransportError::TimedOut {
                operation: "stream publish confirm",
                after,
            }));
        }
    }
}

async fn build_producer(
    environment: &Environment,
    config: &StreamConfig,
    name: &str,
    stream: &str,
    lost: &Arc<Lost>,
    generation: u64,
) -> Result<Producer<Dedup>, StreamsError> {
    let on_closed = OnLost {
        lost: Arc::clone(lost),
        generation,
    };
    bounded("build a producer", config.timeout, async {
        environment
            .producer()
            .name(name)
            .batch_size(config.batch_size)
            .client_provided_name(name)
            .on_closed(Box::new(on_closed))
            .build(stream)
            .await
            .map_err(|e: ProducerCreateError| {
                StreamsError::client(format!("build producer {name} on {stream}"), e)
            })
    })
    .await
}

/// Closes `producer`, bounded: on a lost connection it cannot answer.
async fn close_producer(producer: Producer<Dedup>) {
    let _ = tokio::time::timeout(CLOSE_WAIT, producer.close()).await;
}

/// The producers of a transport, by service and stream, built on first use.
#[derive(Default)]
pub(crate) struct Producers {
    /// By service, then stream: a publish finds its producer without allocating or
    /// waiting.
    by_service: std::sync::RwLock<HashMap<String, HashMap<String, Arc<NamedProducer>>>>,
    /// Held while building, so that one service and stream get one producer.
    building: Mutex<()>,
    /// The same producers, for health (which cannot wait for a build).
    all: std::sync::Mutex<Vec<Arc<NamedProducer>>>,
}

impl Producers {
    /// The producer of `service` on `stream`, if built.
    fn get(&self, service: &str, stream: &str) -> Option<Arc<NamedProducer>> {
        read(&self.by_service)
            .get(service)
            .and_then(|streams| streams.get(stream))
            .map(Arc::clone)
    }

    /// The producer of `service` on `stream`, built with `build` if there is none.
    pub(crate) async fn get_or_build<F, Fut>(
        &self,
        service: &str,
        stream: &str,
        build: F,
    ) -> Result<Arc<NamedProducer>, StreamsError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<NamedProducer, StreamsError>>,
    {
        if let Some(producer) = self.get(service, stream) {
            return Ok(producer);
        }
        let _building = self.building.lock().await;
        if let Some(producer) = self.get(service, stream) {
            return Ok(producer);
        }
        let producer = Arc::new(build().await?);
        write(&self.by_service)
            .entry(service.to_owned())
            .or_default()
            .insert(stream.to_owned(), Arc::clone(&producer));
        lock(&self.all).push(Arc::clone(&producer));
        Ok(producer)
    }

    /// Messages every producer sent again after a recovery.
    pub(crate) fn resent(&self) -> u64 {
        lock(&self.all).iter().map(|p| p.resent()).sum()
    }

    /// The health of every producer, by name.
    pub(crate) fn health(&self) -> Vec<ConnectionHealth> {
        let mut health: Vec<ConnectionHealth> =
            lock(&self.all).iter().map(|p| p.health()).collect();
        health.sort_by(|a, b| a.name.cmp(&b.name));
        health
    }

    /// Closes every producer.
    pub(crate) async fn close(&self) {
        {
            let _building = self.building.lock().await;
            write(&self.by_service).clear();
        }
        let producers = std::mem::take(&mut *lock(&self.all));
        for producer in producers {
            producer.close().await;
        }
    }
}
