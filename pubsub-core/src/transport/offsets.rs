//! The contiguous prefix of settled stream offsets: what a stream consumer may commit, and
//! when it stores it.

use std::collections::BTreeSet;

use tokio::time::Instant;

use super::subscription::StoreOffsets;

/// Tracks which stream offsets were handed out and which are settled, and tells the highest
/// offset below which everything is settled: the only offset a stream consumer may commit,
/// since deliveries finish out of order and a restart resumes after the committed one.
///
/// Offsets must be handed out in increasing order; gaps (messages the consumer skipped or
/// filtered) are fine.
///
/// ```
/// use pubsub::transport::OffsetTracker;
/// let mut offsets = OffsetTracker::default();
/// for offset in [10, 11, 12] {
///     offsets.delivered(offset);
/// }
/// assert_eq!(offsets.settled(11), None); // 10 is still running
/// assert_eq!(offsets.settled(10), Some(11)); // 10 and 11 done: commit 11
/// assert_eq!(offsets.committable(), Some(11));
/// assert_eq!(offsets.settled(12), Some(12));
/// ```
#[derive(Debug, Clone, Default)]
pub struct OffsetTracker {
    outstanding: BTreeSet<u64>,
    settled: BTreeSet<u64>,
    committable: Option<u64>,
}

impl OffsetTracker {
    /// Records that `offset` was handed to the bus.
    pub fn delivered(&mut self, offset: u64) {
        self.outstanding.insert(offset);
    }

    /// Records that `offset` is settled; returns the new committable offset if it moved.
    pub fn settled(&mut self, offset: u64) -> Option<u64> {
        if !self.outstanding.remove(&offset) {
            return None;
        }
        self.settled.insert(offset);
        let bound = self.outstanding.first().copied();
        let mut moved = None;
        while let Some(&lowest) = self.settled.first() {
            if bound.is_some_and(|b| lowest > b) {
                break;
            }
            self.settled.pop_first();
            moved = Some(lowest);
        }
        if moved.is_some() {
            self.committable = moved;
        }
        moved
    }

    /// The highest offset below which every handed-out offset is settled.
    pub fn committable(&self) -> Option<u64> {
        self.committable
    }

    /// Offsets handed out and not settled yet.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }
}

/// The offset bookkeeping of one stream consumer, for transports: which offsets to hand to
/// the bus, and which offset to store when, by its [`StoreOffsets`] policy. Only the
/// contiguous prefix of settled deliveries is ever stored ([`OffsetTracker`]).
///
/// A transport calls [`admit`](Self::admit) for every message it reads,
/// [`settled`](Self::settled) when the bus settled one, [`due`](Self::due) on a timer of
/// the policy's interval, and [`closing`](Self::closing) when the consumer closes; each
/// answer `Some(offset)` is an offset to store now (under the consumer's name).
///
/// ```
/// use std::time::Duration;
/// use pubsub::{stream::StoreOffsets, transport::OffsetCommits};
/// use tokio::time::Instant;
///
/// // resuming after stored offset 9: 10 is the first wanted
/// let mut commits = OffsetCommits::new(StoreOffsets::every(2, Duration::from_secs(60)), 10);
/// assert!(!commits.admit(9)); // before the requested offset: skipped
/// assert!(commits.admit(10) && commits.admit(11) && commits.admit(12));
/// let now = Instant::now();
/// assert_eq!(commits.settled(11, now), None); // 10 still running
/// assert_eq!(commits.settled(10, now), Some(11)); // two settled: store 11
/// assert_eq!(commits.settled(12, now), None); // one since the last store
/// assert_eq!(commits.closing(), Some(12));
/// assert_eq!(commits.stored(), Some(12));
/// ```
#[derive(Debug, Clone)]
pub struct OffsetCommits {
    tracker: OffsetTracker,
    store: StoreOffsets,
    /// The next offset wanted: earlier ones are skipped.
    next: u64,
    stored: Option<u64>,
    settled_since_store: u32,
    last_store: Instant,
}

impl OffsetCommits {
    /// A consumer that wants offsets from `first` on (its stored offset + 1, or where its
    /// start position resolved to) and stores by `store`.
    pub fn new(store: StoreOffsets, first: u64) -> Self {
        Self {
            tracker: OffsetTracker::default(),
            store,
            next: first,
            stored: first.checked_sub(1),
            settled_since_store: 0,
            last_store: Instant::now(),
        }
    }

    /// Whether to hand the message at `offset` to the bus. `false` for an offset before
    /// the one requested (a chunk that starts earlier, a message read again after a
    /// reconnect); otherwise it is recorded as handed out.
    pub fn admit(&mut self, offset: u64) -> bool {
        if offset < self.next {
            return false;
        }
        self.next = offset + 1;
        self.tracker.delivered(offset);
        true
    }

    /// Records that the bus settled `offset`; `Some` is the offset to store now.
    pub fn settled(&mut self, offset: u64, now: Instant) -> Option<u64> {
        self.tracker.settled(offset);
        self.settled_since_store = self.settled_since_store.saturating_add(1);
        match self.store {
            StoreOffsets::Never => None,
            StoreOffsets::Every { events, interval } => {
                let due = self.settled_since_store >= events.max(1)
                    || now.saturating_duration_since(self.last_store) >= interval;
                if due { self.take(now) } else { None }
            }
        }
    }

    /// On the policy's timer: `Some` offset to store if the interval passed since the
    /// last store and something new is committable.
    pub fn due(&mut self, now: Instant) -> Option<u64> {
        match self.store {
            StoreOffsets::Every { interval, .. }
                if now.saturating_duration_since(self.last_store) >= interval =>
            {
                self.take(now)
            }
            _ => None,
        }
    }

    /// When the consumer closes: `Some` offset to store if something committable was not
    /// stored yet.
    pub fn closing(&mut self) -> Option<u64> {
        match self.store {
            StoreOffsets::Never => None,
            StoreOffsets::Every { .. } => self.take(Instant::now()),
        }
    }

    /// The offset last stored (or the one this consumer resumed after).
    pub fn stored(&self) -> Option<u64> {
        self.stored
    }

    /// The next offset wanted.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Offsets handed out and not settled yet.
    pub fn outstanding(&self) -> usize {
        self.tracker.outstanding()
    }

    fn take(&mut self, now: Instant) -> Option<u64> {
        let committable = self.tracker.committable()?;
        if self.stored.is_some_and(|stored| stored >= committable) {
            return None;
        }
        self.stored = Some(committable);
        self.settled_since_store = 0;
        self.last_store = now;
        Some(committable)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{OffsetCommits, OffsetTracker, StoreOffsets};
    use tokio::time::Instant;

    #[test]
    fn stores_by_count_by_time_and_at_close_never_past_a_running_delivery() {
        let policy = StoreOffsets::every(3, Duration::from_millis(100));
        let mut c = OffsetCommits::new(policy, 0);
        assert_eq!(c.stored(), None);
        for o in 0..6 {
            assert!(c.admit(o));
        }
        assert!(!c.admit(3), "offsets are handed out once, in order");
        let t0 = Instant::now();
        assert_eq!(c.settled(1, t0), None);
        assert_eq!(c.settled(2, t0), None);
        assert_eq!(c.settled(4, t0), None);
        assert_eq!(c.due(t0 + Duration::from_secs(1)), None, "0 still runs");
        assert_eq!(c.settled(0, t0), Some(2), "fourth settle: by count");
        assert_eq!(c.due(t0 + Duration::from_millis(50)), None);
        assert_eq!(
            c.settled(3, t0 + Duration::from_millis(150)),
            Some(4),
            "by time"
        );
        assert_eq!(c.closing(), None, "5 runs: nothing new");
        assert_eq!(c.outstanding(), 1);
        assert_eq!(c.next(), 6);
    }

    #[test]
    fn an_anonymous_reader_stores_nothing() {
        let mut c = OffsetCommits::new(StoreOffsets::Never, 5);
        assert_eq!(c.stored(), Some(4));
        assert!(c.admit(5));
        assert_eq!(c.settled(5, Instant::now()), None);
        assert_eq!(c.due(Instant::now() + Duration::from_secs(9)), None);
        assert_eq!(c.closing(), None);
    }

    #[test]
    fn commits_only_the_contiguous_settled_prefix() {
        let mut t = OffsetTracker::default();
        for o in [0, 1, 2, 5, 9] {
            t.delivered(o);
        }
        assert_eq!(t.settled(2), None);
        assert_eq!(t.settled(9), None);
        assert_eq!(t.committable(), None);
        assert_eq!(t.settled(0), Some(0));
        assert_eq!(t.settled(1), Some(2));
        assert_eq!(t.settled(5), Some(9));
        assert_eq!(t.outstanding(), 0);
        // an offset never handed out, or settled twice, moves nothing
        assert_eq!(t.settled(9), None);
        assert_eq!(t.settled(42), None);
        assert_eq!(t.committable(), Some(9));
    }

    #[test]
    fn random_orders_never_commit_past_an_unsettled_offset() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..200 {
            let mut t = OffsetTracker::default();
            let offsets: Vec<u64> = (0..50).map(|i| i * 2).collect();
            for &o in &offsets {
                t.delivered(o);
            }
            let mut order = offsets.clone();
            rng.shuffle(&mut order);
            let mut done = std::collections::BTreeSet::new();
            for o in order {
                done.insert(o);
                t.settled(o);
                if let Some(c) = t.committable() {
                    assert!(
                        offsets
                            .iter()
                            .filter(|&&x| x <= c)
                            .all(|x| done.contains(x))
                    );
                }
            }
            assert_eq!(t.committable(), Some(98));
        }
    }
}
