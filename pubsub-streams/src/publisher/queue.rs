//! A publish: its publishing id, its place in the queue and among the unconfirmed
//! messages, and its wait when the queue is long (back-pressure). The flush task
//! ([`super::flush`]) hands the queue to the client.

use std::sync::atomic::Ordering;
use std::time::Instant;

use pubsub_core::{
    Message,
    transport::{Confirmation, TransportError},
};
use tokio::sync::oneshot;

use super::pending::{Unconfirmed, message_size};
use super::state::{Inner, State};
use crate::config::MESSAGE_OVERHEAD;
use crate::convert;
use crate::sync::lock;

impl Inner {
    /// The state, once no recovery holds it; bounded by the publish timeout.
    async fn lock_state(&self) -> Result<tokio::sync::MutexGuard<'_, State>, TransportError> {
        let started = Instant::now();
        let state = tokio::time::timeout(self.config.publish_timeout, self.state.lock())
            .await
            .map_err(|_| {
                let waited = started.elapsed();
                let health = lock(&self.health);
                TransportError::unavailable(format!(
                    "the producer {} on {} is recovering: the publish waited {waited:.1?} for it; last error: {}",
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
    pub(super) async fn send(
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
}
