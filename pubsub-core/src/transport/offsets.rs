//! The contiguous prefix of settled stream offsets: what a stream consumer may commit.

use std::collections::BTreeSet;

/// Tracks which stream offsets were handed out and which are settled, and tells the highest
/// offset below which everything is settled: the only offset a stream consumer may commit,
/// since deliveries finish out of order and a restart resumes after the committed one.
///
/// Offsets must be handed out in increasing order; gaps (messages the consumer skipped or
/// filtered) are fine.
///
/// ```
/// use pubsub::OffsetTracker;
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

#[cfg(test)]
mod tests {
    use super::OffsetTracker;

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
