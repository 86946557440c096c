//! What the fault tests of every transport share: the counted event, a counted run
//! (events published, confirmed, handled, and duplicates), `rabbitmqctl` with the
//! broker's state restored even when a test fails, and one test at a time.
// shared by the fault tests of each transport; each uses most, not all
#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pubsub::prelude::*;
use pubsub::{Handler, Uuid};

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

/// Tests that change the broker's global state run one at a time.
pub(crate) async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static ONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    ONE.lock().await
}

/// Whether environment variable `name` is set; without it the test is skipped, or fails
/// if `PUBSUB_REQUIRE_BROKER` is set.
pub(crate) fn required(name: &str) -> bool {
    if std::env::var_os(name).is_some() {
        return true;
    }
    assert!(
        std::env::var_os("PUBSUB_REQUIRE_BROKER").is_none(),
        "PUBSUB_REQUIRE_BROKER is set but {name} is not"
    );
    eprintln!("skipped: no {name}");
    false
}

/// What the six kinds of poison the fault tests append are dead-lettered for: invalid
/// JSON, content type `text/csv`, no type, version 99, 100 KiB over a 64 KiB limit, JSON
/// nested 200 deep.
pub(crate) const POISON_REASONS: [&str; 6] = [
    "EOF while parsing",
    "content type \"text/csv\"",
    "no routing key or type",
    "unknown version 99",
    "exceeds the limit of 65536 bytes",
    "recursion limit exceeded",
];

/// Asserts that each of [`POISON_REASONS`] is the reason of one of `reasons`.
pub(crate) fn assert_poison_reasons<'a>(reasons: impl Iterator<Item = &'a str> + Clone) {
    for expected in POISON_REASONS {
        assert!(
            reasons.clone().any(|reason| reason.contains(expected)),
            "no dead letter says {expected:?}: {:?}",
            reasons.clone().collect::<Vec<_>>()
        );
    }
}

/// A name of the test's own.
pub(crate) fn namespace(test: &str) -> String {
    format!(
        "faults-{test}-{}",
        &Uuid::now_v7().simple().to_string()[20..]
    )
}

/// Runs `rabbitmqctl args` on the broker under test; panics if it fails.
pub(crate) fn ctl(args: &[&str]) -> String {
    let prefix = std::env::var("PUBSUB_RABBITMQCTL").expect("PUBSUB_RABBITMQCTL");
    let line = format!("{prefix} {}", args.join(" "));
    let out = Command::new("sh")
        .arg("-c")
        .arg(&line)
        .output()
        .unwrap_or_else(|e| panic!("running `{line}`: {e}"));
    assert!(
        out.status.success(),
        "`{line}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a `rabbitmqctl` command when dropped: restores the broker even when the test fails.
pub(crate) struct Restore(pub(crate) &'static [&'static str]);

impl Drop for Restore {
    fn drop(&mut self) {
        let prefix = std::env::var("PUBSUB_RABBITMQCTL").unwrap_or_default();
        let line = format!("{prefix} {}", self.0.join(" "));
        match Command::new("sh").arg("-c").arg(&line).status() {
            Ok(status) if status.success() => {}
            other => eprintln!("restoring the broker with `{line}` failed: {other:?}"),
        }
    }
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
