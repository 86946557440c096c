//! What the fault tests share: a counted run (events published, confirmed, handled, and
//! duplicates), `rabbitmqctl` with the broker's state restored even when a test fails, one
//! test at a time, and the removal of what a test declared.

use std::collections::{BTreeSet, HashMap};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pubsub::amqp::{AmqpConfig, AmqpTransport};
use pubsub::prelude::*;
use pubsub::{Handler, HandlerSelection, RetryPolicy, Uuid};

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

/// The broker's config with an exchange of the test's own (so no queue of another run
/// receives its events), or `None` to skip without a broker.
pub(crate) fn config(ns: &str) -> Option<AmqpConfig> {
    if std::env::var_os("RABBITMQ_URL").is_none() {
        assert!(
            std::env::var_os("PUBSUB_REQUIRE_BROKER").is_none(),
            "PUBSUB_REQUIRE_BROKER is set but RABBITMQ_URL is not"
        );
        eprintln!("skipped: no RABBITMQ_URL");
        return None;
    }
    if std::env::var_os("PUBSUB_RABBITMQCTL").is_none() {
        assert!(
            std::env::var_os("PUBSUB_REQUIRE_BROKER").is_none(),
            "PUBSUB_REQUIRE_BROKER is set but PUBSUB_RABBITMQCTL is not: fault tests need it"
        );
        eprintln!("skipped: no PUBSUB_RABBITMQCTL");
        return None;
    }
    let config = AmqpConfig::from_env().expect("the broker's configuration");
    Some(
        config
            .exchange(format!("{ns}.events"))
            .backoff(Duration::from_millis(100), Duration::from_secs(1)),
    )
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

/// Deletes the queues and exchanges whose names start with `ns` when dropped.
pub(crate) struct Cleanup(pub(crate) String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let prefix = std::env::var("PUBSUB_RABBITMQCTL").unwrap_or_default();
        let ns = &self.0;
        let script = format!(
            "for q in $({prefix} -q list_queues name --no-table-headers | grep '^{ns}'); do {prefix} -q delete_queue \"$q\" >/dev/null; done"
        );
        if let Err(error) = Command::new("sh").arg("-c").arg(&script).status() {
            eprintln!("removing the queues of {ns} failed: {error}");
        }
    }
}

/// What every fault test starts with: its turn, a namespace (removed at the end), a
/// transport, and a bus of the namespace's service counting [`Tick`]s (not yet running).
pub(crate) struct Fixture {
    pub(crate) _one: tokio::sync::MutexGuard<'static, ()>,
    pub(crate) _cleanup: Cleanup,
    pub(crate) ns: String,
    pub(crate) config: AmqpConfig,
    pub(crate) transport: AmqpTransport,
    pub(crate) counts: Arc<Counts>,
    pub(crate) bus: Bus,
}

impl Fixture {
    /// `None` (skip) without a broker.
    pub(crate) async fn start(test: &str) -> Option<Self> {
        Self::start_with(test, |builder| builder).await
    }

    /// [`start`](Self::start), with the bus's builder changed by `configure`.
    pub(crate) async fn start_with(
        test: &str,
        configure: impl FnOnce(pubsub::BusBuilder) -> pubsub::BusBuilder,
    ) -> Option<Self> {
        let one = one_at_a_time().await;
        let ns = namespace(test);
        let config = config(&ns)?;
        let cleanup = Cleanup(ns.clone());
        let transport = AmqpTransport::new(config.clone());
        let counts = Arc::new(Counts::default());
        let bus = bus(&transport, &ns, vec![counting(&counts)], configure).await;
        Some(Self {
            _one: one,
            _cleanup: cleanup,
            ns,
            config,
            transport,
            counts,
            bus,
        })
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

/// A bus of `service` on `transport` running `handlers` (and nothing registered).
pub(crate) async fn bus(
    transport: &AmqpTransport,
    service: &str,
    handlers: Vec<Handler>,
    configure: impl FnOnce(pubsub::BusBuilder) -> pubsub::BusBuilder,
) -> Bus {
    let builder = Bus::builder()
        .service(service)
        .transport(transport.clone())
        .select_handlers(HandlerSelection::None)
        .prefetch(50)
        .retry(RetryPolicy::exponential(3, Duration::from_millis(20)))
        .shutdown_timeout(Duration::from_secs(5));
    let builder = handlers
        .into_iter()
        .fold(builder, pubsub::BusBuilder::handler);
    configure(builder).build().await.expect("building the bus")
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

/// A test of this binary run as a child process, the ticks it holds counted; killed
/// (SIGKILL) by [`kill`](Self::kill) or when dropped.
pub(crate) struct Child {
    process: Mutex<std::process::Child>,
    held: Arc<Mutex<BTreeSet<u64>>>,
}

impl Child {
    /// Runs the ignored test `test` with `PUBSUB_FAULT_CHILD=ns`; counts the ticks of the
    /// lines it prints that start with `prefix` (`"holding "`).
    pub(crate) fn spawn(test: &str, ns: &str, prefix: &'static str) -> Self {
        use std::io::BufRead;
        let exe = std::env::current_exe().expect("this test binary");
        let mut process = Command::new(exe)
            .args([
                test,
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("PUBSUB_FAULT_CHILD", ns)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("starting the child process");
        let stdout = process.stdout.take().expect("the child's stdout");
        let held = Arc::new(Mutex::new(BTreeSet::new()));
        let sink = Arc::clone(&held);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // a handler attempt that times out is retried: the same tick again
                // the harness writes `test name ... ` before the first line
                let tick = line
                    .find(prefix)
                    .map(|at| line[at + prefix.len()..].parse::<u64>());
                if let Some(Ok(n)) = tick {
                    lock(&sink).insert(n);
                }
            }
        });
        Self {
            process: Mutex::new(process),
            held,
        }
    }

    /// How many events the child said it holds.
    pub(crate) fn held(&self) -> u64 {
        lock(&self.held).len() as u64
    }

    /// The ticks counted.
    pub(crate) fn ticks(&self) -> BTreeSet<u64> {
        lock(&self.held).clone()
    }

    /// Whether the process has ended by itself.
    pub(crate) fn exited(&self) -> bool {
        matches!(lock(&self.process).try_wait(), Ok(Some(_)))
    }

    /// SIGKILL, and wait for it to be gone.
    pub(crate) fn kill(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let process = self.process.get_mut().unwrap_or_else(|p| p.into_inner());
        let _ = process.kill();
        let _ = process.wait();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.stop();
    }
}
