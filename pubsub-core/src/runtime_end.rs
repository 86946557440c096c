//! Telling the end of the Tokio runtime (`main` returned while a bus ran) from a failure,
//! so that it is reported once, as what it is, instead of as failed handlers and a lost
//! consumer.

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the runtime is shutting down: a task spawned then is cancelled before it runs.
/// Only asked where something ended unexpectedly (a handler's task cancelled, the consumer
/// gone), so the spawn costs nothing on the normal path.
pub(crate) async fn runtime_is_ending() -> bool {
    matches!(tokio::spawn(async {}).await, Err(join) if join.is_cancelled())
}

/// Says once per process that the runtime ended under a running bus.
pub(crate) fn report_runtime_end(service: &str) {
    static REPORTED: AtomicBool = AtomicBool::new(false);
    if !REPORTED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            service,
            "the runtime shut down while the bus ran (main returned without `bus.close().await`): \
             deliveries in flight were not acked, and the broker delivers them again"
        );
    }
}
