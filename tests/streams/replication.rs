//! The replication example (`examples/replication`) over RabbitMQ Streams, run as the
//! processes a user runs (the binary `cargo test` builds, see `support::example`): a
//! producer appends changes, a consumer is SIGKILLed mid-run and started again, and its
//! output shows every change applied at least once, each failing one in the error stream
//! with its reason and original offset, and `--reset-offset 0` replaying them all. Its
//! streams are named under a prefix of this run's, and deleted at the end.

use std::collections::{BTreeMap, BTreeSet};

use pubsub::streams::{StreamConfig, StreamTransport};

use crate::support::{self, example::Example};

/// Changes the producer appends.
const CHANGES: u64 = 40;
/// Every 5th change is marked to fail.
const FAIL_EVERY: u64 = 5;

/// What one consumer run printed, by change number.
#[derive(Debug, Default)]
struct Run {
    /// `applied c-N ... (offset O)`: N → the offsets it was applied at.
    applied: BTreeMap<u64, Vec<u64>>,
    /// `failed c-N ... (offset O)`: N → the offsets it failed at.
    failed: BTreeMap<u64, Vec<u64>>,
    /// The error stream as the run listed it: (N, original offset, reason).
    errors: Vec<(u64, u64, String)>,
}

impl Run {
    fn parse(output: &str) -> Self {
        let number = |id: &str| id.strip_prefix("c-").and_then(|n| n.parse::<u64>().ok());
        let offset = |o: &str| o.trim_end_matches([')', ':']).parse::<u64>().ok();
        let mut run = Self::default();
        for line in output.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words[..] {
                ["applied", id, _, _, "(offset", at] => {
                    let (n, at) = (number(id), offset(at));
                    let (Some(n), Some(at)) = (n, at) else {
                        panic!("an applied line with a change and an offset: {line}")
                    };
                    run.applied.entry(n).or_default().push(at);
                }
                ["failed", id, _, _, "(offset", at, ..] => {
                    let (Some(n), Some(at)) = (number(id), offset(at)) else {
                        panic!("a failed line with a change and an offset: {line}")
                    };
                    run.failed.entry(n).or_default().push(at);
                }
                [id, "(offset", at, ..] if id.starts_with("c-") => {
                    let (Some(n), Some(at)) = (number(id), offset(at)) else {
                        panic!("an error-stream line with a change and an offset: {line}")
                    };
                    let reason = line.split_once("): ").map_or("", |(_, r)| r);
                    run.errors.push((n, at, reason.to_owned()));
                }
                _ => {}
            }
        }
        run
    }
}

/// Whether change `n` is marked to fail.
fn fails(n: u64) -> bool {
    n.is_multiple_of(FAIL_EVERY)
}

/// Runs the example to its end with `args`; what it printed, after checking it succeeded.
async fn run_to_end(prefix: &str, args: &[&str]) -> String {
    let args: Vec<&str> = ["--prefix", prefix].iter().chain(args).copied().collect();
    let example = Example::spawn("replication", "streams", &args, &[]);
    let (status, output) = tokio::task::spawn_blocking(move || example.finish())
        .await
        .expect("waited for the example");
    assert!(status.success(), "{args:?} failed ({status}):\n{output}");
    output
}

/// Deletes the run's streams when dropped, so that a failing test leaves none behind.
struct DeleteStreams(StreamConfig, Vec<String>);

impl Drop for DeleteStreams {
    fn drop(&mut self) {
        let (config, streams) = (self.0.clone(), std::mem::take(&mut self.1));
        // its own runtime: the test's may be gone or blocked
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let transport = StreamTransport::new(config);
                for stream in &streams {
                    if let Err(error) = transport.delete_stream(stream).await {
                        eprintln!("deleting {stream}: {error}");
                    }
                }
                let _ = pubsub::transport::Transport::close(&transport).await;
            });
        });
        let _ = deleted.join();
    }
}

#[tokio::test]
async fn the_replication_example_killed_mid_run_applies_every_change_and_its_reset_replays_all() {
    let Some(config) = support::stream_config() else {
        return;
    };
    let prefix = support::namespace("replication");
    let _cleanup = DeleteStreams(
        config,
        vec![
            format!("{prefix}.replication"),
            format!("{prefix}.errors.replicator"),
        ],
    );
    let produced = run_to_end(
        &prefix,
        &["--produce", &CHANGES.to_string(), "--fail-every", "5"],
    )
    .await;
    assert!(
        produced.contains(&format!(
            "appended c-1..c-{CHANGES} to {prefix}.replication"
        )),
        "{produced}"
    );

    // 50 ms a change: killed after 8 of 40, mid-run
    let args = ["--prefix", &prefix, "--consume", "--apply-ms", "50"];
    let mut consumer = Example::spawn("replication", "streams", &args, &[]);
    for _ in 0..8 {
        consumer.wait_for("  applied ").await;
    }
    let killed = consumer.kill();
    assert!(!killed.contains("stopped;"), "killed mid-run: {killed}");
    let before = Run::parse(&killed);

    let restarted = run_to_end(&prefix, &["--consume"]).await;
    let stored: u64 = restarted
        .split_once("resumes after its stored offset ")
        .and_then(|(_, rest)| rest.split(',').next()?.parse().ok())
        .unwrap_or_else(|| panic!("resumes after the offset the killed run stored: {restarted}"));
    let after = Run::parse(&restarted);
    let first = after
        .applied
        .values()
        .chain(after.failed.values())
        .flatten()
        .min();
    assert_eq!(
        first,
        Some(&(stored + 1)),
        "read on right after it:\n{restarted}"
    );
    assert!(
        stored < CHANGES - 1,
        "the kill came before the end: {stored}"
    );

    for n in 1..=CHANGES {
        let offset = n - 1; // a new stream: change n at offset n - 1
        let applied: Vec<u64> = [&before, &after]
            .iter()
            .filter_map(|run| run.applied.get(&n))
            .flatten()
            .copied()
            .collect();
        if fails(n) {
            assert!(applied.is_empty(), "c-{n} is never applied: {applied:?}");
            let entries: BTreeSet<(u64, &str)> = after
                .errors
                .iter()
                .filter(|(change, ..)| *change == n)
                .map(|(_, at, reason)| (*at, reason.as_str()))
                .collect();
            assert!(
                !entries.is_empty()
                    && entries.iter().all(|(at, reason)| {
                        *at == offset && reason.contains(&format!("change c-{n} is marked to fail"))
                    }),
                "c-{n} in the error stream at offset {offset} with its reason: {entries:?}\n{restarted}"
            );
        } else {
            assert!(
                !applied.is_empty() && applied.iter().all(|at| *at == offset),
                "c-{n} applied at least once, at offset {offset}: {applied:?}"
            );
        }
    }

    let replayed = run_to_end(&prefix, &["--reset-offset", "0"]).await;
    assert!(
        replayed.contains("reads from offset 0, to offset"),
        "{replayed}"
    );
    let replay = Run::parse(&replayed);
    let expected = |failing: bool| -> BTreeMap<u64, Vec<u64>> {
        (1..=CHANGES)
            .filter(|n| fails(*n) == failing)
            .map(|n| (n, vec![n - 1]))
            .collect()
    };
    assert_eq!(replay.applied, expected(false), "{replayed}");
    assert_eq!(replay.failed, expected(true), "{replayed}");
}
