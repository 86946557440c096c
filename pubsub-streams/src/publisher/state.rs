//! What one producer's handle, its three tasks (flush, recovery, timeout sweep) and the
//! client's callbacks share: the client's producer and its generation, the queue, the
//! unconfirmed messages, the health, and the flags and wake-ups between them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use pubsub_core::health::{ConnectionHealth, ConnectionState};
use rabbitmq_stream_client::types::Message as WireMessage;
use rabbitmq_stream_client::{Dedup, Environment, Producer};
use tokio::sync::{Mutex, Notify};

use super::pending::Pending;
use crate::config::StreamConfig;
use crate::connection::Admin;
use crate::sync::lock;

/// The unconfirmed messages, shared with the client's confirm callbacks.
pub(super) type UnconfirmedMap = std::sync::Mutex<Pending>;

/// What the client's callbacks tell the producer: the generation of the newest producer
/// found lost, and a wake-up for the recovery task.
#[derive(Default)]
pub(super) struct Lost {
    pub(super) generation: AtomicU64,
    pub(super) wake: Notify,
}

impl Lost {
    pub(super) fn report(&self, generation: u64) {
        self.generation.fetch_max(generation, Ordering::SeqCst);
        self.wake.notify_one();
    }
}

/// One producer's shared state.
pub(super) struct Inner {
    pub(super) name: String,
    pub(super) stream: Arc<str>,
    pub(super) environment: Environment,
    pub(super) admin: Arc<Admin>,
    pub(super) config: StreamConfig,
    pub(super) state: Mutex<State>,
    pub(super) unconfirmed: Arc<UnconfirmedMap>,
    pub(super) lost: Arc<Lost>,
    pub(super) health: std::sync::Mutex<ConnectionHealth>,
    /// Messages with an id, kept unconfirmed, not yet handed to the client.
    pub(super) queue: std::sync::Mutex<Queue>,
    /// How many messages the queue holds (read by the confirm callback, without the lock).
    pub(super) queued: Arc<AtomicUsize>,
    /// Wakes the flush task: the queue was empty and is not, or confirms made room.
    pub(super) flush: Arc<Notify>,
    /// The flush took messages from the queue (for sends waiting for room in it).
    pub(super) drained: Notify,
    /// A recovery holds the state: a send waits for it (bounded) instead of queueing.
    pub(super) recovering: AtomicBool,
    pub(super) closed: AtomicBool,
    /// Messages sent again after a recovery.
    pub(super) resent: AtomicU64,
    /// Turns true at close: a recovery in progress gives up at once.
    pub(super) closing: tokio::sync::watch::Sender<bool>,
}

pub(super) struct State {
    pub(super) producer: Option<Producer<Dedup>>,
    /// Counts the producers built; callbacks of older ones are told apart by it.
    pub(super) generation: u64,
}

/// Sends are queued, and the flush task hands the queue to the client in bursts (one
/// `batch_send`), so that the client's frames carry many messages: handed over one by
/// one, its batching task takes each as it comes. Ids are given in queue order, and the
/// queue is sent in order, under the state lock.
pub(super) struct Queue {
    /// The next publishing id: strictly increasing, never 0, never reused.
    pub(super) next_id: u64,
    /// Each with its size.
    pub(super) wires: VecDeque<(WireMessage, usize)>,
}

impl Inner {
    pub(super) fn note_error(&self, error: &str) {
        lock(&self.health).last_error = Some(error.to_owned());
    }

    pub(super) fn set_health(&self, state: ConnectionState, error: Option<String>) {
        lock(&self.health).transition(state, error);
    }
}

impl Drop for Inner {
    /// Dropped without [`NamedProducer::close`](super::NamedProducer::close) (a transport
    /// dropped unclosed, or a task holding the producer dropped at runtime shutdown): the
    /// client's own `Drop` would block this thread on a close that needs the runtime,
    /// which may be gone, and spin there. Starts that close instead (the client marks the
    /// producer closed on the first poll), and lets the connection go.
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
