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

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

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
use crate::id_map::IdMap;
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

type UnconfirmedMap = std::sync::Mutex<IdMap<Unconfirmed>>;

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
    /// Messages with an id, kept unconfirmed, not yet handed to the client.
    queue: std::sync::Mutex<Queue>,
    /// Wakes the flush task: the queue was empty and is not.
    flush: Arc<Notify>,
    /// A recovery holds the state: a send waits for it (bounded) instead of queueing.
    recovering: AtomicBool,
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
}

/// Sends are queued, and the flush task hands the queue to the client in bursts (one
/// `batch_send`), so that the client's frames carry many messages: handed over one by
/// one, its batching task takes each as it comes. Ids are given in queue order, and the
/// queue is sent in order, under the state lock.
struct Queue {
    /// The next publishing id: strictly increasing, never 0, never reused.
    next_id: u64,
    wires: Vec<WireMessage>,
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
            }),
            queue: std::sync::Mutex::new(Queue {
                next_id: last + 1,
                wires: Vec::new(),
            }),
            flush: Arc::default(),
            recovering: AtomicBool::new(false),
            unconfirmed: Arc::default(),
            lost: Arc::clone(&lost),
            health: std::sync::Mutex::new(ConnectionHealth::new(name, ConnectionState::Up)),
            closed: AtomicBool::new(false),
            resent: AtomicU64::new(0),
            closing: tokio::sync::watch::Sender::new(false),
        });
        tokio::spawn(recovery(Arc::downgrade(&inner), lost));
        tokio::spawn(flusher(Arc::downgrade(&inner), Arc::clone(&inner.flush)));
        tokio::spawn(sweep(
            Arc::downgrade(&inner.unconfirmed),
            config.publish_timeout,
        ));
        Ok(Self { inner })
    }

    /// Hands `message` to the producer with the next id; the confirmation resolves when
    /// the broker confirmed it, or fails after the publish timeout.
    pub(crate) async fn send(&self, message: &Message) -> Result<Confirmation, TransportError> {
        self.inner.send(message, None).await
    }

    /// Sends `message` under an id chosen by the caller (re-sending a batch: the broker
    /// drops ids it already has, and still confirms them).
    pub(crate) async fn resend(
        &self,
        message: &Message,
        id: u64,
    ) -> Result<Confirmation, TransportError> {
        self.inner.send(message, Some(id)).await
    }

    /// Refuses a message over the configured largest ([`check_size`]).
    pub(crate) fn check_size(&self, message: &Message) -> Result<(), TransportError> {
        check_size(&self.inner.config, &self.inner.stream, message)
    }

    /// The id the next [`send`](Self::send) uses.
    pub(crate) async fn next_id(&self) -> u64 {
        lock(&self.inner.queue).next_id
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
        inner.flush.notify_one();
        let producer = inner.state.lock().await.producer.take();
        if let Some(producer) = producer {
            close_producer(producer).await;
        }
        let unconfirmed = {
            let mut queue = lock(&inner.queue);
            queue.wires.clear();
            std::mem::take(&mut *lock(&inner.unconfirmed))
        };
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

    /// Queues `message` under the next id (or `id`), kept unconfirmed until the broker
    /// confirms it; the flush task sends the queue. A send with an explicit id, one
    /// during a recovery (bounded by the publish timeout, as the recovery holds the
    /// state) and one that finds the queue long (back-pressure) send the queue at once.
    async fn send(
        &self,
        message: &Message,
        id: Option<u64>,
    ) -> Result<Confirmation, TransportError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(TransportError::Closed);
        }
        if id.is_none() && !self.recovering.load(Ordering::SeqCst) {
            // the common case: no await, unless the flush task is behind
            let (confirmation, queued) = self.enqueue(message, None)?;
            if queued == 1 {
                self.flush.notify_one();
            } else if queued > self.config.frame_batch() * 2 {
                // wait for the client's queue like the flush task; the message is
                // queued already, and its confirmation says how it ends
                Box::pin(async {
                    if let Ok(mut state) = self.lock_state().await {
                        self.flush_queue(&mut state).await;
                    }
                })
                .await;
            }
            return Ok(confirmation);
        }
        // boxed: the rare path does not make every send's future larger
        Box::pin(async {
            let mut state = self.lock_state().await?;
            let (confirmation, _) = self.enqueue(message, id)?;
            self.flush_queue(&mut state).await;
            Ok(confirmation)
        })
        .await
    }

    /// Gives `message` the next id (or `id`), keeps it unconfirmed and queues it; how
    /// many are queued now.
    fn enqueue(
        &self,
        message: &Message,
        id: Option<u64>,
    ) -> Result<(Confirmation, usize), TransportError> {
        let refused = |id: u64| {
            TransportError::other(format!(
                "publishing id {id} on {}: ids start at 1, and one id is never in flight twice",
                self.stream
            ))
        };
        let (reply, confirmed) = oneshot::channel();
        // ids are given and queued in one order, under the queue lock
        let mut queue = lock(&self.queue);
        let given = id.unwrap_or(queue.next_id);
        if given == 0 {
            return Err(refused(given));
        }
        let wire = convert::to_wire(message, given);
        {
            let mut unconfirmed = lock(&self.unconfirmed);
            if id.is_some() && unconfirmed.contains_key(&given) {
                return Err(refused(given));
            }
            unconfirmed.insert(
                given,
                Unconfirmed {
                    wire: wire.clone(),
                    // set when it is handed to a producer
                    sent_in: 0,
                    sends: 1,
                    since: Instant::now(),
                    reply,
                },
            );
        }
        if id.is_none() {
            queue.next_id += 1;
        }
        queue.wires.push(wire);
        let queued = queue.wires.len();
        drop(queue);
        // the producer's sweep fails it after the publish timeout
        let confirmation =
            Confirmation::new(
                async move { confirmed.await.unwrap_or(Err(TransportError::Closed)) },
            );
        Ok((confirmation, queued))
    }

    /// Hands every queued message to the current producer, in order.
    async fn flush_queue(&self, state: &mut State) {
        loop {
            let wires = std::mem::take(&mut lock(&self.queue).wires);
            if wires.is_empty() {
                return;
            }
            {
                let mut unconfirmed = lock(&self.unconfirmed);
                for wire in &wires {
                    let id = wire.publishing_id().copied().unwrap_or_default();
                    if let Some(message) = unconfirmed.get_mut(&id) {
                        message.sent_in = state.generation;
                    }
                }
            }
            self.write(state, wires).await;
        }
    }

    /// Hands `wires` to the current producer; a failure reports it lost (the messages
    /// stay unconfirmed, and the recovery sends them again).
    async fn write(&self, state: &mut State, wires: Vec<WireMessage>) {
        let generation = state.generation;
        let Some(producer) = state.producer.as_mut() else {
            self.lost.report(generation);
            return;
        };
        let unconfirmed = Arc::clone(&self.unconfirmed);
        let lost = Arc::clone(&self.lost);
        let stream = Arc::clone(&self.stream);
        let callback = move |outcome: Result<rabbitmq_stream_client::ConfirmationStatus, _>| {
            match outcome {
                // the connection failed under the message
                Err(_) => lost.report(generation),
                Ok(status) if status.confirmed() => {
                    confirm(&unconfirmed, status.publishing_id(), None, Ok(()));
                }
                Ok(status) => match status.status() {
                    // the stream was deleted (the broker drops its publishers) or moved
                    ResponseCode::PublisherDoesNotExist
                    | ResponseCode::StreamDoesNotExist
                    | ResponseCode::StreamNotAvailable => lost.report(generation),
                    code => {
                        let id = status.publishing_id();
                        confirm(
                            &unconfirmed,
                            id,
                            Some(generation),
                            Err(TransportError::Nacked {
                                reason: format!(
                                    "{stream}, publishing id {id}: the broker refused it: {code:?}"
                                ),
                            }),
                        );
                    }
                },
            }
            std::future::ready(())
        };
        let sent =
            tokio::time::timeout(self.config.timeout, producer.batch_send(wires, callback)).await;
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
        self.recovering.store(true, Ordering::SeqCst);
        self.rebuild_and_resend(&mut state).await;
        self.recovering.store(false, Ordering::SeqCst);
        // what was queued meanwhile is in the re-sent messages, or after them
        self.flush_queue(&mut state).await;
    }

    /// [`recover`](Self::recover) under the state lock.
    async fn rebuild_and_resend(&self, state: &mut State) {
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
        self.resend_unconfirmed(state).await;
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
        let again: Vec<WireMessage> = {
            // the queue is in the unconfirmed messages: sent here, so not again by a flush
            let mut queue = lock(&self.queue);
            queue.wires.clear();
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
                .map(|(_, message)| {
                    message.sends += 1;
                    message.sent_in = state.generation;
                    message.wire.clone()
                })
                .collect()
        };
        self.resent.fetch_add(again.len() as u64, Ordering::Relaxed);
        if !again.is_empty() {
            tracing::info!(producer = %self.name, stream = %self.stream, count = again.len(), "re-sending unconfirmed messages under their ids");
        }
        if !again.is_empty() {
            self.write(state, again).await;
        }
    }

    fn note_error(&self, error: &str) {
        lock(&self.health).last_error = Some(error.to_owned());
    }

    fn set_health(&self, state: ConnectionState, error: Option<String>) {
        lock(&self.health).transition(state, error);
    }
}

impl Drop for Inner {
    /// Dropped without [`NamedProducer::close`] (a transport dropped unclosed, or a task
    /// holding the producer dropped at runtime shutdown): the client's own `Drop` would
    /// block this thread on a close that needs the runtime, which may be gone, and spin
    /// there. Starts that close instead (the client marks the producer closed on the
    /// first poll), and lets the connection go.
    fn drop(&mut self) {
        let Some(producer) = self.state.get_mut().producer.take() else {
            return;
        };
        let mut close = Box::pin(producer.close());
        let _ = close
            .as_mut()
            .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
    }
}

/// Refuses a message larger than [`StreamConfig::max_message_size`] (publishes of the
/// application; error stream copies are not held to it): frames of such messages stay
/// under the frame size.
pub(crate) fn check_size(
    config: &StreamConfig,
    stream: &str,
    message: &Message,
) -> Result<(), TransportError> {
    let m = &message.metadata;
    let properties: usize = m
        .headers
        .iter()
        .map(|(name, value)| name.len() + value.len())
        .sum::<usize>()
        + m.key.len()
        + m.content_type.len();
    let size = message.body.len() + properties;
    let limit = config.max_message_size;
    if size > limit {
        return Err(TransportError::other(format!(
            "a message of {size} bytes to {} exceeds StreamConfig::max_message_size ({limit} bytes): publish frames must fit RabbitMQ's 1 MiB frame size",
            stream
        )));
    }
    Ok(())
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

/// The flush task of one producer: sends the queue when woken; ends when the producer
/// is dropped or closed.
async fn flusher(producer: Weak<Inner>, wake: Arc<Notify>) {
    loop {
        wake.notified().await;
        let Some(inner) = producer.upgrade() else {
            return;
        };
        if inner.closed.load(Ordering::SeqCst) {
            return;
        }
        let mut state = inner.state.lock().await;
        inner.flush_queue(&mut state).await;
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
            .batch_size(config.frame_batch())
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
    pub(crate) fn get(&self, service: &str, stream: &str) -> Option<Arc<NamedProducer>> {
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
