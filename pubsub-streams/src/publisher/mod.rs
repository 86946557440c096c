//! De-duplicating producers that come back: one per producer name and stream, publishing
//! ids from 1 resumed from the broker's last one + 1, every message kept until the broker
//! confirmed it. This file is the handle the transport calls ([`NamedProducer`]); the
//! producer's jobs are in its modules.
//!
//! The client neither reconnects nor notices a deleted stream. Each producer here keeps
//! its unconfirmed messages by publishing id ([`pending`]). A publish is queued under the
//! next id ([`queue`]), and the flush task hands the queue to the client in frames
//! ([`flush`]); the client's confirms answer the publishes ([`confirm`]). When its
//! connection closes (the client's `on_closed`), a send fails, or the broker answers that
//! the publisher or stream is gone (the stream was deleted), the recovery task
//! ([`recovery`](mod@recovery)) re-creates the stream with its retention if it is
//! missing, builds a new producer under the same name with capped, jittered backoff, and
//! re-sends every unconfirmed message under its own id, in order. The broker drops ids it
//! already has and confirms them all the same, so nothing is lost and nothing is stored
//! twice. Each message is sent at most [`MAX_SENDS`](recovery::MAX_SENDS) times, and a
//! publish waits at most [`StreamConfig::publish_timeout`](crate::StreamConfig) (the sweep
//! task of [`confirm`] fails it after that).
//!
//! The handle, the three tasks and the client's callbacks share one [`state::Inner`]. The
//! transport keeps its producers in a [`registry`].

mod confirm;
mod flush;
mod pending;
mod queue;
mod recovery;
mod registry;
mod state;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pubsub_core::{
    Message,
    health::{ConnectionHealth, ConnectionState},
    transport::{Confirmation, TransportError},
};
use rabbitmq_stream_client::Environment;
use tokio::sync::{Mutex, Notify};

use self::confirm::sweep;
use self::flush::flusher;
use self::pending::Pending;
use self::recovery::{build_producer, close_producer, recovery};
use self::state::{Inner, Lost, Queue, State};
use crate::config::StreamConfig;
use crate::connection::Admin;
use crate::error::StreamsError;
use crate::sync::lock;

pub(crate) use self::pending::check_size;
pub(crate) use self::registry::Producers;

/// One named producer on one stream.
pub(crate) struct NamedProducer {
    inner: Arc<Inner>,
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
