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
//!
//! The bytes a producer has handed to the client and not seen confirmed stay under one
//! frame (1 MiB): the client forms frames of what it holds, and the broker writes a chunk
//! of what it received and has not confirmed, so neither can pass the size a consumer
//! reads. Messages beyond wait in the queue until confirms make room.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pubsub_core::{Confirmation, ConnectionHealth, ConnectionState, Message, TransportError};
use rabbitmq_stream_client::error::ProducerCreateError;
use rabbitmq_stream_client::types::{Message as WireMessage, ResponseCode};
use rabbitmq_stream_client::{Dedup, Environment, OnClosed, Producer};
use tokio::sync::{Mutex, Notify, oneshot};

use crate::config::{FRAME_BUDGET, MESSAGE_OVERHEAD, StreamConfig};
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
    /// Its room in a frame: body, properties and encoding.
    size: usize,
    /// The producer generation it was last handed to; 0 while queued.
    sent_in: u64,
    /// How often it was handed to a producer.
    sends: u32,
    /// When it was first sent: the publish fails once this is older than the publish
    /// timeout.
    since: Instant,
    /// `None` once the publish was answered (confirmed by an older producer, or timed out)
    /// while the producer of `sent_in` still holds it: kept, with its room in the frame
    /// budget, until that producer answers or is replaced.
    reply: Option<Reply>,
}

/// The unconfirmed messages, queued or handed to the client.
struct Pending {
    messages: IdMap<Unconfirmed>,
    /// The size of the messages handed to the client: at most a frame's
    /// ([`fits`](Self::fits)).
    handed: usize,
    /// How many messages are handed to the client.
    handed_count: usize,
    /// Messages per frame (the configured batch size).
    batch: usize,
}

/// Whether queued messages should be handed to the client now, given what it holds
/// unconfirmed (`handed` bytes in `handed_count` messages) and how many are queued: once
/// half a frame is free again, so that a producer at its byte limit sends frames of many
/// messages instead of a few at every confirm; and, while a frame's worth of messages is
/// already in flight, only once a frame's worth is queued (as Nagle's algorithm holds
/// small segments while data is unacknowledged), so that a steady stream of publishes
/// makes full frames. The broker's cost is per frame as much as per message.
fn room(handed: usize, handed_count: usize, queued: usize, batch: usize) -> bool {
    handed <= FRAME_BUDGET / 2 && (handed_count < batch || queued >= batch)
}

impl Pending {
    fn new(batch: usize) -> Self {
        Self {
            messages: IdMap::default(),
            handed: 0,
            handed_count: 0,
            batch,
        }
    }

    /// Whether a message of `size` can be handed to the client now: always when it holds
    /// none (a single message fits a frame: [`check_size`]).
    fn fits(&self, size: usize) -> bool {
        self.handed == 0 || self.handed + size <= FRAME_BUDGET
    }

    /// Whether `queued` messages should be handed now ([`room`]).
    fn has_room(&self, queued: usize) -> bool {
        room(self.handed, self.handed_count, queued, self.batch)
    }

    /// Marks `id` handed to producer `generation`; false if it is no longer unconfirmed
    /// (confirmed by an older producer, or timed out, while it was queued).
    fn hand(&mut self, id: u64, generation: u64) -> bool {
        let Some(message) = self.messages.get_mut(&id) else {
            return false;
        };
        if message.sent_in == 0 {
            self.handed += message.size;
            self.handed_count += 1;
        }
        message.sent_in = generation;
        message.sends += 1;
        true
    }

    /// The answer of producer `from` for `id` (`ok`: confirmed); the reply to send it to,
    /// if the publish was not answered yet. A refusal counts only from the producer that
    /// last sent the message. A confirm from an older producer answers the publish, but
    /// the message stays counted while the current producer holds its copy (the broker
    /// drops that copy, and confirms it too).
    fn answer(&mut self, id: u64, from: u64, ok: bool) -> Option<Reply> {
        let message = self.messages.get_mut(&id)?;
        if message.sent_in == 0 || message.sent_in == from {
            return self.remove(id).and_then(|message| message.reply);
        }
        if ok { message.reply.take() } else { None }
    }

    /// The replies of the publishes unanswered for `after`. A queued one is dropped; one a
    /// producer holds stays counted until that producer answers or is replaced.
    fn expire(&mut self, after: Duration) -> Vec<Reply> {
        let old: Vec<(u64, bool)> = self
            .messages
            .iter()
            .filter(|(_, m)| m.reply.is_some() && m.since.elapsed() >= after)
            .map(|(id, m)| (*id, m.sent_in == 0))
            .collect();
        old.into_iter()
            .filter_map(|(id, queued)| {
                if queued {
                    self.remove(id).and_then(|message| message.reply)
                } else {
                    self.messages.get_mut(&id).and_then(|m| m.reply.take())
                }
            })
            .collect()
    }

    fn remove(&mut self, id: u64) -> Option<Unconfirmed> {
        let message = self.messages.remove(&id)?;
        if message.sent_in != 0 {
            self.handed = self.handed.saturating_sub(message.size);
            self.handed_count = self.handed_count.saturating_sub(1);
        }
        Some(message)
    }

    /// Every unanswered message back to queued (a new producer sends them all again), the
    /// answered ones dropped; the ids of those that had been handed to the old producer
    /// are counted.
    fn requeue_all(&mut self) -> (Vec<(WireMessage, usize)>, u64) {
        self.handed = 0;
        self.handed_count = 0;
        let answered: Vec<u64> = self
            .messages
            .iter()
            .filter(|(_, m)| m.reply.is_none())
            .map(|(id, _)| *id)
            .collect();
        for id in answered {
            self.messages.remove(&id);
        }
        let mut handed_before = 0;
        let wires = self
            .messages
            .iter_mut()
            .map(|(_, message)| {
                if message.sent_in != 0 {
                    handed_before += 1;
                    message.sent_in = 0;
                }
                (message.wire.clone(), message.size)
            })
            .collect();
        (wires, handed_before)
    }
}

type UnconfirmedMap = std::sync::Mutex<Pending>;

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
    /// How many messages the queue holds (read by the confirm callback, without the lock).
    queued: Arc<AtomicUsize>,
    /// Wakes the flush task: the queue was empty and is not, or confirms made room.
    flush: Arc<Notify>,
    /// The flush took messages from the queue (for sends waiting for room in it).
    drained: Notify,
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
    /// Each with its size.
    wires: VecDeque<(WireMessage, usize)>,
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
                wires: VecDeque::new(),
            }),
            queued: Arc::default(),
            flush: Arc::default(),
            drained: Notify::new(),
            recovering: AtomicBool::new(false),
            unconfirmed: Arc::new(std::sync::Mutex::new(Pending::new(config.frame_messages()))),
            lost: Arc::clone(&lost),
            health: std::sync::Mutex::new(ConnectionHealth::new(name, ConnectionState::Up)),
            closed: AtomicBool::new(false),
            resent: AtomicU64::new(0),
            closing: tokio::sync::watch::Sender::new(false),
        });
        tokio::spawn(recovery(Arc::downgrade(&inner), lost));
        tokio::spawn(flusher(Arc::downgrade(&inner), Arc::clone(&inner.flush)));
        tokio::spawn(sweep(Arc::downgrade(&inner), config.publish_timeout));
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
            inner.queued.store(0, Ordering::SeqCst);
            let mut unconfirmed = lock(&inner.unconfirmed);
            let batch = unconfirmed.batch;
            std::mem::replace(&mut *unconfirmed, Pending::new(batch))
        };
        inner.drained.notify_waiters();
        for reply in unconfirmed
            .messages
            .into_iter()
            .filter_map(|(_, m)| m.reply)
        {
            let _ = reply.send(Err(TransportError::Closed));
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
            // the first queued, or a frame's worth (see `room`)
            if queued == 1 || queued == self.config.frame_messages() {
                self.flush.notify_one();
            } else if queued > self.queue_limit() {
                // wait for the client's queue like the flush task, and for room in the
                // queue; the message is queued already, and its confirmation says how it
                // ends
                Box::pin(async {
                    if let Ok(mut state) = self.lock_state().await {
                        self.flush_queue(&mut state).await;
                    }
                    self.room_in_queue().await;
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

    /// Queued messages past which a send waits: twice a frame's worth.
    fn queue_limit(&self) -> usize {
        self.config.frame_messages() * 2
    }

    /// Waits until the queue is down to [`queue_limit`](Self::queue_limit), at most the
    /// publish timeout.
    async fn room_in_queue(&self) {
        let deadline = tokio::time::Instant::now() + self.config.publish_timeout;
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.queued.load(Ordering::SeqCst) <= self.queue_limit()
                || self.closed.load(Ordering::SeqCst)
            {
                return;
            }
            if tokio::time::timeout_at(deadline, drained).await.is_err() {
                return;
            }
        }
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
        let size = message_size(message) + MESSAGE_OVERHEAD;
        {
            let mut unconfirmed = lock(&self.unconfirmed);
            if id.is_some() && unconfirmed.messages.contains_key(&given) {
                return Err(refused(given));
            }
            unconfirmed.messages.insert(
                given,
                Unconfirmed {
                    wire: wire.clone(),
                    size,
                    // set when it is handed to a producer
                    sent_in: 0,
                    sends: 0,
                    since: Instant::now(),
                    reply: Some(reply),
                },
            );
        }
        // the next id is past every id given, so that a send never takes an explicit one
        queue.next_id = queue.next_id.max(given + 1);
        queue.wires.push_back((wire, size));
        let queued = queue.wires.len();
        self.queued.store(queued, Ordering::SeqCst);
        drop(queue);
        // the producer's sweep fails it after the publish timeout
        let confirmation = Confirmation::new(async move {
            tokio::task::unconstrained(confirmed)
                .await
                .unwrap_or(Err(TransportError::Closed))
        });
        Ok((confirmation, queued))
    }

    /// Hands the queued messages to the current producer, in order, as far as they fit
    /// beside those it holds unconfirmed ([`Pending::fits`]); confirms wake the flush
    /// task for the rest.
    async fn flush_queue(&self, state: &mut State) {
        loop {
            let wires = self.take_fitting(state.generation);
            if wires.is_empty() {
                return;
            }
            self.write(state, wires).await;
        }
    }

    /// Takes the queued messages that fit, oldest first, marked handed to `generation`.
    fn take_fitting(&self, generation: u64) -> Vec<WireMessage> {
        let mut queue = lock(&self.queue);
        let mut unconfirmed = lock(&self.unconfirmed);
        let mut wires = Vec::new();
        while let Some(&(_, size)) = queue.wires.front() {
            if wires.is_empty() && !unconfirmed.has_room(queue.wires.len())
                || !unconfirmed.fits(size)
            {
                break;
            }
            let Some((wire, _)) = queue.wires.pop_front() else {
                break;
            };
            let id = wire.publishing_id().copied().unwrap_or_default();
            if unconfirmed.hand(id, generation) {
                wires.push(wire);
            }
        }
        self.queued.store(queue.wires.len(), Ordering::SeqCst);
        drop(unconfirmed);
        drop(queue);
        self.drained.notify_waiters();
        wires
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
        let (queued, flush) = (Arc::clone(&self.queued), Arc::clone(&self.flush));
        let batch = self.config.frame_messages();
        let callback = move |outcome: Result<rabbitmq_stream_client::ConfirmationStatus, _>| {
            match outcome {
                // the connection failed under the message
                Err(_) => lost.report(generation),
                Ok(status) if status.confirmed() => {
                    let handed = confirm(&unconfirmed, status.publishing_id(), generation, Ok(()));
                    wake_for_room(handed, &queued, batch, &flush);
                }
                Ok(status) => match status.status() {
                    // the stream was deleted (the broker drops its publishers) or moved
                    ResponseCode::PublisherDoesNotExist
                    | ResponseCode::StreamDoesNotExist
                    | ResponseCode::StreamNotAvailable => lost.report(generation),
                    code => {
                        let id = status.publishing_id();
                        let handed = confirm(
                            &unconfirmed,
                            id,
                            generation,
                            Err(TransportError::Nacked {
                                reason: format!(
                                    "{stream}, publishing id {id}: the broker refused it: {code:?}"
                                ),
                            }),
                        );
                        wake_for_room(handed, &queued, batch, &flush);
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
        tracing::warn!(producer = %self.name, stream = %self.stream, unconfirmed = lock(&self.unconfirmed).messages.len(), "producer lost; rebuilding it");
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

    /// Queues every unconfirmed message again under its id, oldest first, and sends
    /// what fits; one sent [`MAX_SENDS`] times fails instead.
    async fn resend_unconfirmed(&self, state: &mut State) {
        let resent = {
            // the queue is in the unconfirmed messages: queued again here, in id order
            let mut queue = lock(&self.queue);
            let mut unconfirmed = lock(&self.unconfirmed);
            let worn: Vec<u64> = unconfirmed
                .messages
                .iter()
                .filter(|(_, m)| m.sends >= MAX_SENDS)
                .map(|(id, _)| *id)
                .collect();
            for id in worn {
                if let Some(reply) = unconfirmed.remove(id).and_then(|m| m.reply) {
                    let _ = reply.send(Err(TransportError::unavailable(format!(
                        "publishing id {id} on {} was sent {MAX_SENDS} times without a confirm",
                        self.stream
                    ))));
                }
            }
            let (wires, resent) = unconfirmed.requeue_all();
            queue.wires = wires.into();
            self.queued.store(queue.wires.len(), Ordering::SeqCst);
            resent
        };
        self.resent.fetch_add(resent, Ordering::Relaxed);
        if resent > 0 {
            tracing::info!(producer = %self.name, stream = %self.stream, count = resent, "re-sending unconfirmed messages under their ids");
        }
        self.flush_queue(state).await;
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
    let size = message_size(message);
    let limit = config.max_message_size;
    if size > limit {
        return Err(TransportError::other(format!(
            "a message of {size} bytes to {} exceeds StreamConfig::max_message_size ({limit} bytes): publish frames must fit RabbitMQ's 1 MiB frame size",
            stream
        )));
    }
    Ok(())
}

/// The body and the variable part of the properties of `message`.
fn message_size(message: &Message) -> usize {
    let m = &message.metadata;
    let text = |value: &Option<String>| value.as_ref().map_or(0, String::len);
    let headers: usize = m
        .headers
        .iter()
        .map(|(name, value)| name.len() + value.len())
        .sum();
    message.body.len()
        + headers
        + m.key.len()
        + m.content_type.len()
        + text(&m.correlation_id)
        + text(&m.causation_id)
        + text(&m.reply_to)
        + text(&m.app_id)
}

/// Resolves the publish of `id` with the answer of producer `from` ([`Pending::answer`]).
/// Returns the bytes and the count of the messages the client still holds.
fn confirm(
    unconfirmed: &UnconfirmedMap,
    id: u64,
    from: u64,
    outcome: Result<(), TransportError>,
) -> (usize, usize) {
    let mut unconfirmed = lock(unconfirmed);
    let reply = unconfirmed.answer(id, from, outcome.is_ok());
    let handed = (unconfirmed.handed, unconfirmed.handed_count);
    drop(unconfirmed);
    if let Some(reply) = reply {
        let _ = reply.send(outcome);
    }
    handed
}

/// Wakes the flush task if a confirm that left `handed` (bytes, count) with the client
/// makes room for the queued messages ([`room`]).
fn wake_for_room(handed: (usize, usize), queued: &AtomicUsize, batch: usize, flush: &Notify) {
    let queued = queued.load(Ordering::Relaxed);
    if queued > 0 && room(handed.0, handed.1, queued, batch) {
        flush.notify_one();
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
/// [`TransportError::TimedOut`], and wakes the flush task if messages are queued (should
/// a wake-up have been missed); ends when the producer is dropped.
async fn sweep(producer: Weak<Inner>, after: Duration) {
    let every = (after / 4).clamp(Duration::from_millis(1), SWEEP_EVERY);
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(inner) = producer.upgrade() else {
            return;
        };
        let expired = lock(&inner.unconfirmed).expire(after);
        if inner.queued.load(Ordering::SeqCst) > 0 {
            inner.flush.notify_one();
        }
        drop(inner);
        for reply in expired {
            let _ = reply.send(Err(TransportError::TimedOut {
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
            .batch_size(config.frame_messages())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pending_with(
        sizes: &[usize],
    ) -> (Pending, Vec<oneshot::Receiver<Result<(), TransportError>>>) {
        let mut pending = Pending::new(100);
        let mut replies = Vec::new();
        for (n, size) in sizes.iter().enumerate() {
            let (reply, confirmed) = oneshot::channel();
            replies.push(confirmed);
            let id = n as u64 + 1;
            pending.messages.insert(
                id,
                Unconfirmed {
                    wire: WireMessage::builder()
                        .body(vec![0; 1])
                        .publishing_id(id)
                        .build(),
                    size: *size,
                    sent_in: 0,
                    sends: 0,
                    since: Instant::now(),
                    reply: Some(reply),
                },
            );
        }
        (pending, replies)
    }

    #[test]
    fn the_bytes_handed_stay_under_a_frame_and_come_back_with_confirms() {
        let big = FRAME_BUDGET / 3;
        let (mut pending, _replies) = pending_with(&[big, big, big, big]);
        assert!(
            pending.fits(FRAME_BUDGET * 2),
            "an empty client takes any one message"
        );
        for id in 1..=3 {
            assert!(pending.fits(big));
            assert!(pending.hand(id, 1));
        }
        assert_eq!(pending.handed, big * 3);
        assert!(!pending.fits(big), "a fourth would pass the frame size");
        assert!(!pending.has_room(1));
        assert!(pending.remove(1).is_some(), "confirmed");
        assert_eq!(pending.handed, big * 2);
        assert!(pending.fits(big), "the confirm made room");
        assert!(!pending.has_room(1), "but less than half a frame");
        // a message no longer unconfirmed is not handed, nor counted
        assert!(!pending.hand(1, 1));
        assert_eq!(pending.handed, big * 2);
        // removing a queued message changes nothing handed
        assert!(pending.remove(4).is_some());
        assert_eq!(pending.handed, big * 2);
        assert!(pending.remove(2).is_some());
        assert!(pending.has_room(1), "half a frame free: hand the queue");
    }

    #[test]
    fn with_a_frame_of_messages_in_flight_the_queue_waits_for_a_frame_of_its_own() {
        let (mut pending, _replies) = pending_with(&[100; 200]);
        for id in 1..=99 {
            assert!(pending.hand(id, 1));
        }
        assert!(pending.has_room(1), "99 in flight: one more goes at once");
        assert!(pending.hand(100, 1));
        assert!(!pending.has_room(1), "a frame's worth in flight: wait");
        assert!(!pending.has_room(99));
        assert!(pending.has_room(100), "a frame's worth queued: send it");
        assert!(pending.remove(1).is_some());
        assert!(
            pending.has_room(1),
            "a confirm: below a frame's worth in flight again"
        );
    }

    #[test]
    fn a_recovery_queues_everything_again_and_counts_what_was_handed() {
        let (mut pending, _replies) = pending_with(&[10, 20, 30]);
        assert!(pending.hand(1, 1));
        assert!(pending.hand(2, 1));
        let (wires, handed_before) = pending.requeue_all();
        assert_eq!(handed_before, 2);
        assert_eq!(pending.handed, 0);
        let ids: Vec<u64> = wires
            .iter()
            .map(|(wire, _)| wire.publishing_id().copied().unwrap_or_default())
            .collect();
        assert_eq!(ids, [1, 2, 3], "in id order");
        assert_eq!(wires.iter().map(|(_, size)| *size).sum::<usize>(), 60);
        let sends: Vec<u32> = pending.messages.iter().map(|(_, m)| m.sends).collect();
        assert_eq!(
            sends,
            [1, 1, 0],
            "sends count the handings, not the queueings"
        );
        assert!(pending.messages.iter().all(|(_, m)| m.sent_in == 0));
        assert!(pending.hand(1, 2));
        assert_eq!(
            pending.messages.iter().next().map(|(_, m)| m.sends),
            Some(2)
        );
    }

    #[test]
    fn an_older_producers_confirm_answers_but_keeps_the_copy_counted() {
        let (mut pending, mut replies) = pending_with(&[10, 20]);
        assert!(pending.hand(1, 1));
        assert!(pending.hand(2, 1));
        pending.requeue_all();
        assert!(pending.hand(1, 2), "re-sent on producer 2");
        // producer 1's confirms come late: 1 is held by producer 2, 2 only queued
        let reply = pending.answer(1, 1, true).expect("unanswered");
        let _ = reply.send(Ok(()));
        assert!(matches!(replies[0].try_recv(), Ok(Ok(()))));
        assert_eq!(
            (pending.handed, pending.handed_count),
            (10, 1),
            "producer 2 holds the copy"
        );
        assert!(pending.answer(1, 2, true).is_none(), "answered already");
        assert_eq!((pending.handed, pending.handed_count), (0, 0));
        assert!(pending.answer(2, 1, true).is_some());
        assert!(pending.messages.len() == 0, "the queued one is gone");
        assert!(!pending.hand(2, 2), "and is not sent again");
    }

    #[test]
    fn a_refusal_counts_only_from_the_producer_that_last_sent_it() {
        let (mut pending, _replies) = pending_with(&[10]);
        assert!(pending.hand(1, 1));
        pending.requeue_all();
        assert!(pending.hand(1, 2));
        assert!(pending.answer(1, 1, false).is_none(), "producer 1 is gone");
        assert_eq!(pending.handed_count, 1);
        assert!(pending.answer(1, 2, false).is_some());
        assert_eq!((pending.handed, pending.handed_count), (0, 0));
    }

    #[test]
    fn an_expired_publish_fails_but_stays_counted_while_a_producer_holds_it() {
        let (mut pending, mut replies) = pending_with(&[10, 20]);
        assert!(pending.hand(1, 1));
        let expired = pending.expire(Duration::ZERO);
        assert_eq!(expired.len(), 2, "both publishes fail");
        for reply in expired {
            let _ = reply.send(Err(TransportError::Closed));
        }
        assert!(
            replies
                .iter_mut()
                .all(|r| matches!(r.try_recv(), Ok(Err(_))))
        );
        assert_eq!(
            (pending.handed, pending.handed_count),
            (10, 1),
            "the handed one still takes its room"
        );
        assert_eq!(pending.messages.len(), 1, "the queued one is dropped");
        assert!(
            pending.expire(Duration::ZERO).is_empty(),
            "failed once only"
        );
        assert!(pending.answer(1, 1, true).is_none(), "its late confirm");
        assert_eq!((pending.handed, pending.handed_count), (0, 0));
        // a recovery drops what was answered instead of sending it again
        let (mut pending, _replies) = pending_with(&[10, 20]);
        assert!(pending.hand(1, 1));
        drop(pending.expire(Duration::ZERO));
        let (wires, handed_before) = pending.requeue_all();
        assert!(wires.is_empty() && handed_before == 0 && pending.messages.len() == 0);
    }
}
