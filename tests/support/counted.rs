//! A counted run: the counted event, how often each was handled (and redelivered),
//! publishing a range of them from concurrent tasks, waiting for a count, and the line a
//! test prints (published / confirmed / handled / duplicates). The fault tests of every
//! transport and the super-stream test count with it.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pubsub::Handler;
use pubsub::prelude::*;

/// The counted event.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "faults", action = "tick")]
pub(crate) struct Tick {
    /// Its number in the run.
    pub(crate) n: u64,
    /// Free-form JSON, parsed (so nesting past the parser's limit is refused).
    #[serde(default)]
    pub(crate) note: Option<serde_json::Value>,
}

/// Every event of a run, counted.
#[derive(Default)]
pub(crate) struct Counts {
    /// Times each event was handled.
    pub(crate) handled: Mutex<HashMap<u64, u32>>,
    /// Deliveries flagged as redelivered.
    pub(crate) redelivered: Mutex<u64>,
}

impl Counts {
    /// How many distinct events were handled.
    pub(crate) fn distinct(&self) -> usize {
        lock(&self.handled).len()
    }

    /// Handled more than once: (events, extra deliveries).
    pub(crate) fn duplicates(&self) -> (usize, u64) {
        let handled = lock(&self.handled);
        let events = handled.values().filter(|n| **n > 1).count();
        let extra = handled.values().map(|n| u64::from(n - 1)).sum();
        (events, extra)
    }

    /// Which of `confirmed` were never handled.
    pub(crate) fn missing(&self, confirmed: &BTreeSet<u64>) -> Vec<u64> {
        let handled = lock(&self.handled);
        confirmed
            .iter()
            .filter(|n| !handled.contains_key(n))
            .copied()
            .collect()
    }
}

/// A handler counting each [`Tick`] it sees.
pub(crate) fn counting(counts: &Arc<Counts>) -> Handler {
    let counts = Arc::clone(counts);
    Handler::typed("count", move |tick: Tick, ctx: Context| {
        let counts = Arc::clone(&counts);
        async move {
            *lock(&counts.handled).entry(tick.n).or_default() += 1;
            if ctx.redelivered() {
                *lock(&counts.redelivered) += 1;
            }
            Ok::<_, HandlerError>(())
        }
    })
}

/// Publishes ticks `range` from `tasks` concurrent tasks (each awaiting its confirms);
/// returns the numbers the broker confirmed and the errors of the others.
pub(crate) async fn publish(
    publisher: &Bus,
    range: std::ops::Range<u64>,
    tasks: u64,
) -> (BTreeSet<u64>, Vec<String>) {
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let bus = publisher.clone();
        let range = range.clone();
        set.spawn(async move {
            let mut confirmed = Vec::new();
            let mut failed = Vec::new();
            for n in range.filter(|n| n % tasks == t) {
                match bus.publish(&Tick { n, note: None }).await {
                    Ok(_) => confirmed.push(n),
                    Err(error) => failed.push(format!("tick {n}: {error}")),
                }
            }
            (confirmed, failed)
        });
    }
    let mut confirmed = BTreeSet::new();
    let mut failed = Vec::new();
    while let Some(done) = set.join_next().await {
        let (c, f) = done.expect("a publishing task panicked");
        confirmed.extend(c);
        failed.extend(f);
    }
    (confirmed, failed)
}

/// Waits until `condition` holds, or panics after `timeout` saying `what`.
pub(crate) async fn wait_until(what: &str, timeout: Duration, condition: impl Fn() -> bool) {
    assert!(
        wait_for(timeout, condition).await,
        "timed out after {timeout:?}: {what}"
    );
}

/// Whether `condition` came to hold within `timeout`.
pub(crate) async fn wait_for(timeout: Duration, condition: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !condition() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// From now (the broker's port just reopened): how long until a publish issued now is
/// confirmed, and until `bus` is healthy; panics if the publish fails or health does not
/// come back within 30 s.
pub(crate) async fn time_to_recover(bus: &Bus) -> (Duration, Duration) {
    let restored = Instant::now();
    let publishing = {
        let bus = bus.clone();
        tokio::spawn(async move {
            let confirmed = bus
                .publish(&Tick {
                    n: u64::MAX,
                    note: None,
                })
                .await;
            (confirmed, restored.elapsed())
        })
    };
    wait_until("healthy again", Duration::from_secs(30), || {
        bus.health().is_healthy()
    })
    .await;
    let healthy = restored.elapsed();
    let (confirmed, confirm_took) = publishing.await.expect("the publishing task");
    confirmed.expect("confirmed after the outage");
    (confirm_took, healthy)
}

/// The line each test prints.
pub(crate) fn report(test: &str, published: usize, confirmed: usize, counts: &Counts, extra: &str) {
    use std::io::Write;
    let (dup_events, dup_deliveries) = counts.duplicates();
    // written to stderr directly, past the test harness's capture, so that CI shows it
    let _ = writeln!(
        std::io::stderr(),
        "{test}: published {published} / confirmed {confirmed} / handled {} / duplicates {dup_events} events ({dup_deliveries} extra deliveries) / redelivered {}{extra}",
        counts.distinct(),
        lock(&counts.redelivered),
    );
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
