//! The broker-wide signal that idle waits watch: every queue and stream bumps it on a change.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::Notify;

/// Broker-wide "something settled" signal for idle waits: a generation counter that
/// every state change bumps, and a notification sent only while someone waits.
#[derive(Debug, Default)]
pub(crate) struct BrokerSignal {
    generation: AtomicU64,
    waiters: AtomicUsize,
    pub(crate) notify: Notify,
}

impl BrokerSignal {
    /// Called after every state change. Without waiters it only reads a shared counter:
    /// a change made after a waiter registered is seen by this load (both `SeqCst`), and
    /// one made before is seen by the waiter's scan.
    pub(crate) fn bump(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.generation.fetch_add(1, Ordering::SeqCst);
            self.notify.notify_waiters();
        }
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Registers a waiter until the guard is dropped.
    pub(crate) fn waiting(&self) -> WaiterGuard<'_> {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        WaiterGuard(self)
    }
}

pub(crate) struct WaiterGuard<'a>(&'a BrokerSignal);

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.0.waiters.fetch_sub(1, Ordering::SeqCst);
    }
}
