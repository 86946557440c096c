//! A consumer's offsets: which deliveries are settled, per generation of its stream, and
//! storing the offset of the settled prefix on the broker, on the store timer among
//! other times. Shared by the consumer, its store timer and the acker of each delivery.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pubsub_core::{stream::StoreOffsets, transport::OffsetCommits};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::session::Session;
use crate::sync::lock;

/// The offsets of the stream being read; a new generation for each new stream of the
/// same name (deleted and re-created).
pub(super) struct Commits {
    pub(super) generation: u64,
    pub(super) commits: OffsetCommits,
}

/// What the consumer, its timer and its ackers share.
pub(super) struct Offsets {
    pub(super) session: Arc<Session>,
    /// The consumer name (the service); `None` for an anonymous reader.
    pub(super) name: Option<String>,
    pub(super) service: String,
    pub(super) stream: String,
    pub(super) store: StoreOffsets,
    pub(super) commits: Mutex<Commits>,
}

impl Offsets {
    pub(super) fn commits(&self) -> std::sync::MutexGuard<'_, Commits> {
        lock(&self.commits)
    }

    /// The delivery at `offset` of stream generation `generation` was settled.
    pub(super) fn settled(&self, generation: u64, offset: u64) -> Option<u64> {
        let mut commits = self.commits();
        (commits.generation == generation)
            .then(|| commits.commits.settled(offset, Instant::now()))
            .flatten()
    }

    /// Reads a new stream of the same name: from offset 0, nothing stored.
    pub(super) fn new_generation(&self) -> u64 {
        let mut commits = self.commits();
        commits.generation += 1;
        commits.commits = OffsetCommits::new(self.store, 0);
        commits.generation
    }

    pub(super) async fn store(&self, offset: Option<u64>) {
        let (Some(offset), Some(name)) = (offset, &self.name) else {
            return;
        };
        if let Err(error) = self
            .session
            .admin
            .store_offset(name, &self.stream, offset)
            .await
        {
            // not fatal: a later store covers it; a restart reads a little more again
            tracing::warn!(stream = %self.stream, consumer = %name, offset, error = %pubsub_core::Report::new(&error), "storing the offset failed");
        }
    }
}

/// Stores the due offset on the store interval, if there is one.
pub(super) fn store_timer(offsets: &Arc<Offsets>) -> Option<JoinHandle<()>> {
    let StoreOffsets::Every { interval, .. } = offsets.store else {
        return None;
    };
    let offsets = Arc::clone(offsets);
    let period = interval.max(Duration::from_millis(10));
    Some(tokio::spawn(async move {
        let mut timer = tokio::time::interval(period);
        timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            timer.tick().await;
            let due = offsets.commits().commits.due(Instant::now());
            offsets.store(due).await;
        }
    }))
}
