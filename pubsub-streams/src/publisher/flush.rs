//! Handing the queue to the client's producer: the flush task, woken when messages are
//! queued or confirms made room, sends what fits beside what the client holds
//! unconfirmed ([`Pending::fits`](super::pending::Pending::fits)), in one `batch_send`.
//! A send that fails reports the producer lost, for the recovery task.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use rabbitmq_stream_client::types::Message as WireMessage;
use tokio::sync::Notify;

use super::confirm::on_confirm;
use super::state::{Inner, State};
use crate::sync::lock;

/// The flush task of one producer: sends the queue when woken; ends when the producer
/// is dropped or closed.
pub(super) async fn flusher(producer: Weak<Inner>, wake: Arc<Notify>) {
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

impl Inner {
    /// Hands the queued messages to the current producer, in order, as far as they fit
    /// beside those it holds unconfirmed
    /// ([`Pending::fits`](super::pending::Pending::fits)); confirms wake the flush task
    /// for the rest.
    pub(super) async fn flush_queue(&self, state: &mut State) {
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
        let callback = on_confirm(self, generation);
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
}
