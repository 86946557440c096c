//! What a bus has done: counters the bus writes as it settles deliveries.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

/// What a bus has done so far.
///
/// Every delivery the bus took ends in exactly one of `acked`, `dead_lettered`, `retried`,
/// `requeued`, `abandoned` or `settle_errors`, counted once the transport answered the
/// settlement; `in_flight` is how many have not ended yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct BusStats {
    /// Deliveries taken from the transport.
    pub deliveries: u64,
    /// Deliveries acked (all handlers succeeded, or none matched).
    pub acked: u64,
    /// Deliveries dead-lettered.
    pub dead_lettered: u64,
    /// Deliveries handed back to the transport to be delivered again after a delay.
    pub retried: u64,
    /// Deliveries given back to the queue unfinished (shutdown deadline).
    pub requeued: u64,
    /// Deliveries left unsettled at the shutdown deadline on a transport that cannot
    /// requeue (a stream reads them again from its stored offset).
    pub abandoned: u64,
    /// Settlements the transport refused (the broker delivers those again).
    pub settle_errors: u64,
    /// Deliveries no handler matched (also counted in `acked`).
    pub unhandled: u64,
    /// Deliveries dead-lettered because the broker delivered them too often (also
    /// counted in `dead_lettered`).
    pub poisoned: u64,
    /// Failed handler attempts (each retry counts).
    pub handler_failures: u64,
    /// Requests not started because their caller had given up (the deadline they carry
    /// had passed); also counted in `acked`.
    pub expired_requests: u64,
    /// Deliveries taken and not yet settled.
    pub in_flight: u64,
}

/// How a delivery ended, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    Acked,
    DeadLettered,
    Retried,
    Requeued,
    Abandoned,
    SettleError,
}

/// The live counters of one bus.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    deliveries: AtomicU64,
    acked: AtomicU64,
    dead_lettered: AtomicU64,
    retried: AtomicU64,
    requeued: AtomicU64,
    abandoned: AtomicU64,
    settle_errors: AtomicU64,
    unhandled: AtomicU64,
    poisoned: AtomicU64,
    handler_failures: AtomicU64,
    expired_requests: AtomicU64,
    in_flight: AtomicU64,
    /// Woken whenever a delivery ends.
    pub(crate) ended: Notify,
}

impl Counters {
    /// A delivery was taken from the transport.
    pub(crate) fn delivered(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.deliveries.fetch_add(1, Ordering::Relaxed);
    }

    /// A delivery ended; counted before it leaves `in_flight`, so that a reader who sees
    /// `in_flight == 0` sees every count.
    pub(crate) fn ended(&self, how: Ended) {
        let counter = match how {
            Ended::Acked => &self.acked,
            Ended::DeadLettered => &self.dead_lettered,
            Ended::Retried => &self.retried,
            Ended::Requeued => &self.requeued,
            Ended::Abandoned => &self.abandoned,
            Ended::SettleError => &self.settle_errors,
        };
        counter.fetch_add(1, Ordering::SeqCst);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.ended.notify_waiters();
    }

    pub(crate) fn unhandled(&self) {
        self.unhandled.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn poisoned(&self) {
        self.poisoned.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn request_expired(&self) {
        self.expired_requests.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn handler_failed(&self) {
        self.handler_failures.fetch_add(1, Ordering::SeqCst);
    }

    #[cfg(feature = "testing")]
    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub(crate) fn snapshot(&self) -> BusStats {
        // in_flight first: counts read after it include every delivery that left it
        let in_flight = self.in_flight.load(Ordering::SeqCst);
        let load = |c: &AtomicU64| c.load(Ordering::SeqCst);
        BusStats {
            in_flight,
            deliveries: load(&self.deliveries),
            acked: load(&self.acked),
            dead_lettered: load(&self.dead_lettered),
            retried: load(&self.retried),
            requeued: load(&self.requeued),
            abandoned: load(&self.abandoned),
            settle_errors: load(&self.settle_errors),
            unhandled: load(&self.unhandled),
            poisoned: load(&self.poisoned),
            handler_failures: load(&self.handler_failures),
            expired_requests: load(&self.expired_requests),
        }
    }
}
