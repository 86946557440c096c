//! What the fault tests share: one test at a time, the poison they append, and for the
//! AMQP ones the broker's configuration, a fixture with a counting bus, the removal of
//! what a test declared, and child processes. The counted run itself is in
//! `support::counted`, shared with the super-stream test.
// the AMQP and the Streams fault tests each use a part
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) use crate::support::broker::{DeleteQueues, Restore, ctl};
pub(crate) use crate::support::counted::*;
pub(crate) use crate::support::one_at_a_time;
#[cfg(feature = "amqp")]
use pubsub::amqp::{AmqpConfig, AmqpTransport};
#[cfg(feature = "amqp")]
use pubsub::prelude::*;
#[cfg(feature = "amqp")]
use pubsub::{Handler, HandlerSelection, RetryPolicy};

use crate::support::{self, broker};

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

/// A name of the test's own (`faults-{test}-…`, removed by `scripts/test.sh` if left).
pub(crate) fn namespace(test: &str) -> String {
    support::namespace(&format!("faults-{test}"))
}

/// The broker's config with an exchange of the test's own (so no queue of another run
/// receives its events), or `None` to skip without a broker (or without `rabbitmqctl`).
#[cfg(feature = "amqp")]
pub(crate) fn config(ns: &str) -> Option<AmqpConfig> {
    let config = support::amqp_config()?;
    if !broker::has_rabbitmqctl() {
        return None;
    }
    Some(
        config
            .exchange(format!("{ns}.events"))
            .backoff(Duration::from_millis(100), Duration::from_secs(1)),
    )
}

#[cfg(feature = "amqp")]
/// What every fault test starts with: its turn, a namespace (removed at the end), a
/// transport, and a bus of the namespace's service counting [`Tick`]s (not yet running).
pub(crate) struct Fixture {
    pub(crate) _one: tokio::sync::MutexGuard<'static, ()>,
    pub(crate) _cleanup: DeleteQueues,
    pub(crate) ns: String,
    pub(crate) config: AmqpConfig,
    pub(crate) transport: AmqpTransport,
    pub(crate) counts: Arc<Counts>,
    pub(crate) bus: Bus,
}

#[cfg(feature = "amqp")]
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
        Self::start_with_config(test, |c| c, configure).await
    }

    /// [`start_with`](Self::start_with), with the transport's configuration changed by
    /// `transport`.
    pub(crate) async fn start_with_config(
        test: &str,
        transport: impl FnOnce(AmqpConfig) -> AmqpConfig,
        configure: impl FnOnce(pubsub::BusBuilder) -> pubsub::BusBuilder,
    ) -> Option<Self> {
        let one = one_at_a_time().await;
        let ns = namespace(test);
        let config = transport(config(&ns)?);
        let cleanup = DeleteQueues(ns.clone());
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

#[cfg(feature = "amqp")]
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

/// A test of this binary run as a child process, the ticks it holds counted; killed
/// (SIGKILL) by [`kill`](Self::kill) or when dropped.
pub(crate) struct Child {
    process: Mutex<std::process::Child>,
    held: Arc<Mutex<BTreeSet<u64>>>,
}

impl Child {
    /// Runs the ignored test `test` (its path as `module_path!()` names it, then `::` and
    /// its name: `faults::amqp::child_…`) with `PUBSUB_FAULT_CHILD=ns`; counts the ticks of
    /// the lines it prints that start with `prefix` (`"holding "`).
    pub(crate) fn spawn(test: &str, ns: &str, prefix: &'static str) -> Self {
        use std::io::BufRead;
        // the test harness names tests by their path within the binary's crate
        let (_crate, test) = test.split_once("::").expect("a test's path");
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
