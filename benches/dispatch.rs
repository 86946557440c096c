//! End-to-end dispatch throughput of the in-memory bus, against a hand-written floor.
//!
//! Run with `cargo bench --bench dispatch` (a plain `harness = false` binary; the whole run
//! takes well under a minute). It prints one table:
//!
//! * **floor** — what any design must pay: `serde_json` encode, one hop through a bounded
//!   `tokio::sync::mpsc` channel to another task, `serde_json` decode, per event. Like the
//!   framework runs, it encodes one pre-built event; the informational row "floor, building
//!   each event" also constructs a fresh event (5 `String`s) per message.
//! * **framework, 3 handlers** — `bus.publish(&e).await` on a [`MemoryTransport`] → broker
//!   routing → consumer with prefetch → dispatcher → three handlers (one typed, one
//!   `Handler::raw` on `bench.*`, one raw on `#`) → ack. Timed from the first publish until
//!   all 3·N handler invocations have completed.
//! * **3 handlers, Isolation::Inline** — the same with handlers run on the consumer task
//!   instead of a task per handler attempt (the default, `Isolation::Task`).
//! * **10 / 1000 patterns** — the same, with 7 / 997 extra raw handlers whose patterns never
//!   match the benchmark key (a mix of `other{i}.created`, `p{i}.*` and `q{i}.#`), showing
//!   whether routing cost grows with the number of registered patterns.
//! * **publish side only / dispatch side only** (diagnostic, 3 handlers) — N events published
//!   while the bus is not consuming yet, then the bus started and the drain of the full
//!   queue timed: where the end-to-end time goes.
//!
//! Every scenario runs on a multi-threaded tokio runtime with 2 workers (by default) and
//! `HandlerSelection::None` (no link-time handlers). Each one is warmed up, then timed
//! `REPS` times; the table shows the best and the median run. Publishing is done by
//! `PUBSUB_BENCH_PUBLISHERS` tasks (default 1) each calling `bus.publish(&e).await` in a
//! loop; the in-memory broker's queue is unbounded, so publishers never wait for consumers.
//!
//! Knobs (environment variables): `PUBSUB_BENCH_N` (events per timed run, default 100000),
//! `PUBSUB_BENCH_PREFETCH` (default 100: 32–300 measure alike, 1000 about 10 % slower,
//! 10000 about 30 % slower), `PUBSUB_BENCH_PUBLISHERS` (default 1),
//! `PUBSUB_BENCH_WORKERS` (runtime worker threads, default 2), and
//! `PUBSUB_BENCH_ONLY=3` (or `10`, `1000`, `inline`, `split`) to run only that scenario, without the
//! floor and without the summary, e.g. under a profiler; `PUBSUB_BENCH_COOP=1` makes the
//! publishing loop call `tokio::task::coop::consume_budget()` after every publish, so it
//! yields to the bus like a budget-aware (or back-pressured) transport would.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pubsub::{
    Bus, Context, Event, Handler, HandlerError, HandlerSelection, Isolation, MemoryTransport,
    RawEvent,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Timed runs per scenario.
const REPS: usize = 3;

/// Capacity of the floor's channel (100 and 1000 measure the same).
const FLOOR_CAPACITY: usize = 1000;

/// The benchmark event: about 200 bytes of JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(domain = "bench", action = "ordered")]
struct Ordered {
    order_id: String,
    customer_id: String,
    sku: String,
    quantity: u32,
    total_cents: u64,
    currency: String,
    express: bool,
    note: String,
}

fn sample(i: u64) -> Ordered {
    Ordered {
        order_id: format!("ord-{i:012}-7f3a9c2e"),
        customer_id: "cust-000000042-b81d".to_owned(),
        sku: "SKU-WIDGET-LARGE-BLUE-0042".to_owned(),
        quantity: 3,
        total_cents: 129_999 + i % 1000,
        currency: "EUR".to_owned(),
        express: i.is_multiple_of(2),
        note: "leave it at the back door".to_owned(),
    }
}

struct Config {
    n: u64,
    prefetch: u16,
    publishers: u64,
    only: Option<String>,
    coop: bool,
    workers: usize,
}

impl Config {
    fn from_env() -> Self {
        fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        }
        Self {
            n: var("PUBSUB_BENCH_N", 100_000),
            prefetch: var("PUBSUB_BENCH_PREFETCH", 100),
            publishers: var("PUBSUB_BENCH_PUBLISHERS", 1).max(1),
            only: std::env::var("PUBSUB_BENCH_ONLY").ok(),
            coop: var("PUBSUB_BENCH_COOP", 0) != 0,
            workers: var("PUBSUB_BENCH_WORKERS", 2).max(1),
        }
    }
}

/// Counts handler invocations and wakes the timer once a target is reached.
#[derive(Default)]
struct Done {
    count: AtomicU64,
    target: AtomicU64,
    reached: Notify,
}

impl Done {
    fn hit(&self) {
        let now = self.count.fetch_add(1, Ordering::AcqRel) + 1;
        if now == self.target.load(Ordering::Acquire) {
            self.reached.notify_one();
        }
    }

    /// Arms for `more` further hits (call before publishing); returns the target.
    fn arm(&self, more: u64) -> u64 {
        let target = self.count.load(Ordering::Acquire) + more;
        self.target.store(target, Ordering::Release);
        target
    }

    /// Waits until `target` hits happened.
    async fn wait(&self, target: u64) {
        // The timeout covers a hit that passed the target before it was stored.
        while self.count.load(Ordering::Acquire) < target {
            let _ = tokio::time::timeout(Duration::from_millis(5), self.reached.notified()).await;
        }
    }
}

/// One timed run.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Seconds from the first publish until every handler invocation completed.
    total: f64,
    /// Seconds until the last publish returned.
    publish: f64,
    /// Messages still waiting in the broker queue when the last publish returned.
    backlog: usize,
}

/// Best (fastest) and median run.
fn summary(mut samples: Vec<Sample>) -> (Sample, Sample) {
    samples.sort_by(|a, b| a.total.total_cmp(&b.total));
    (samples[0], samples[samples.len() / 2])
}

/// encode → bounded mpsc → decode, producer and consumer on separate spawned tasks (like
/// the framework runs). The producer encodes one pre-built event, or builds a fresh one per
/// message when `build_each`.
async fn floor_once(n: u64, capacity: usize, build_each: bool) -> Sample {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(capacity);
    let start = Instant::now();
    let consumer = tokio::spawn(async move {
        let mut seen = 0u64;
        while let Some(bytes) = rx.recv().await {
            let event: Ordered = serde_json::from_slice(&bytes).expect("decodes");
            black_box(&event);
            seen += 1;
        }
        seen
    });
    let producer = tokio::spawn(async move {
        let event = sample(7);
        for i in 0..n {
            let bytes = if build_each {
                serde_json::to_vec(&sample(i))
            } else {
                serde_json::to_vec(&event)
            };
            tx.send(bytes.expect("encodes"))
                .await
                .expect("consumer alive");
        }
        let backlog = capacity - tx.capacity();
        (start.elapsed().as_secs_f64(), backlog)
    });
    let (publish, backlog) = producer.await.expect("producer task");
    let seen = consumer.await.expect("consumer task");
    assert_eq!(seen, n);
    Sample {
        total: start.elapsed().as_secs_f64(),
        publish,
        backlog,
    }
}

async fn floor(cfg: &Config, build_each: bool) -> Vec<Sample> {
    floor_once(cfg.n / 5, FLOOR_CAPACITY, build_each).await; // warm-up
    let mut samples = Vec::with_capacity(REPS);
    for _ in 0..REPS {
        samples.push(floor_once(cfg.n, FLOOR_CAPACITY, build_each).await);
    }
    samples
}

/// The extra, never-matching pattern number `i`.
fn extra_pattern(i: usize) -> String {
    match i % 3 {
        0 => format!("other{i}.created"),
        1 => format!("p{i}.*"),
        _ => format!("q{i}.#"),
    }
}

/// A bus on a fresh broker with the three counting handlers and `patterns - 3` extra raw
/// handlers that never match; the extras bump `stray` if they ever run.
async fn build_bus(
    cfg: &Config,
    patterns: usize,
    isolation: Isolation,
    done: &Arc<Done>,
    stray: &Arc<AtomicU64>,
) -> (Bus, MemoryTransport) {
    let typed = {
        let done = Arc::clone(done);
        Handler::typed("typed", move |event: Ordered, _ctx: Context| {
            let done = Arc::clone(&done);
            async move {
                black_box(&event);
                done.hit();
                Ok::<(), HandlerError>(())
            }
        })
    };
    let raw = |name: &'static str, pattern: &'static str| {
        let done = Arc::clone(done);
        Handler::raw(name, pattern, move |event: RawEvent, _ctx: Context| {
            let done = Arc::clone(&done);
            async move {
                black_box(event.key());
                done.hit();
                Ok::<(), HandlerError>(())
            }
        })
    };
    let transport = MemoryTransport::new();
    let mut builder = Bus::builder()
        .service("bench")
        .transport(transport.clone())
        .select_handlers(HandlerSelection::None)
        .prefetch(cfg.prefetch)
        .isolation(isolation)
        .handler(typed)
        .handler(raw("raw-domain", "bench.*"))
        .handler(raw("raw-all", "#"));
    for i in 0..patterns.saturating_sub(3) {
        let stray = Arc::clone(stray);
        builder = builder.handler(Handler::raw(
            format!("extra-{i}"),
            extra_pattern(i),
            move |_event: RawEvent, _ctx: Context| {
                stray.fetch_add(1, Ordering::Relaxed);
                async { Ok::<(), HandlerError>(()) }
            },
        ));
    }
    let bus = builder.build().await.expect("bus builds");
    assert_eq!(bus.handler_names().len(), patterns.max(3));
    (bus, transport)
}

/// Stops `bus` and checks that every delivery was acked and no extra handler ran.
async fn finish(bus: Bus, running: JoinHandle<pubsub::Result<()>>, stray: &AtomicU64) {
    bus.shutdown();
    running.await.expect("bus task").expect("bus ran");
    let stats = bus.stats();
    assert_eq!(stats.acked, stats.deliveries, "every delivery acked");
    assert_eq!(stats.handler_failures, 0);
    assert_eq!(stray.load(Ordering::Relaxed), 0, "an extra pattern matched");
}

/// Diagnostic split of the 3-handler scenario: publish `n` events while the bus is not
/// consuming yet (publish side alone), then start it and time the drain (consume side alone).
async fn split_once(cfg: &Config, n: u64) -> (Sample, Sample) {
    let done = Arc::new(Done::default());
    let stray = Arc::new(AtomicU64::new(0));
    let (bus, transport) = build_bus(cfg, 3, Isolation::Task, &done, &stray).await;
    let start = Instant::now();
    let publisher = bus.clone();
    tokio::spawn(async move {
        let event = sample(7);
        for _ in 0..n {
            publisher.publish(&event).await.expect("publish");
        }
    })
    .await
    .expect("publisher task");
    let publish = start.elapsed().as_secs_f64();
    let backlog = transport.queue_depth("bench").map_or(0, |d| d.ready);
    let target = done.arm(3 * n);
    let start = Instant::now();
    let running = bus.spawn().await.expect("bus starts consuming");
    done.wait(target).await;
    let drain = start.elapsed().as_secs_f64();
    finish(bus, running, &stray).await;
    let publish = Sample {
        total: publish,
        publish,
        backlog,
    };
    let drain = Sample {
        total: drain,
        publish: 0.0,
        backlog,
    };
    (publish, drain)
}

async fn split(cfg: &Config) -> (Vec<Sample>, Vec<Sample>) {
    split_once(cfg, cfg.n / 5).await; // warm-up
    let mut publish = Vec::with_capacity(REPS);
    let mut drain = Vec::with_capacity(REPS);
    for _ in 0..REPS {
        let (p, d) = split_once(cfg, cfg.n).await;
        publish.push(p);
        drain.push(d);
    }
    (publish, drain)
}

async fn framework(cfg: &Config, patterns: usize, isolation: Isolation) -> Vec<Sample> {
    let done = Arc::new(Done::default());
    let stray = Arc::new(AtomicU64::new(0));
    let (bus, transport) = build_bus(cfg, patterns, isolation, &done, &stray).await;
    let running = bus.spawn().await.expect("bus starts consuming");

    let event = sample(7);
    let run = |n: u64| {
        let bus = bus.clone();
        let transport = transport.clone();
        let done = Arc::clone(&done);
        let event = event.clone();
        let publishers = cfg.publishers;
        let coop = cfg.coop;
        async move {
            let target = done.arm(3 * n);
            let start = Instant::now();
            let tasks: Vec<_> = (0..publishers)
                .map(|p| {
                    let bus = bus.clone();
                    let event = event.clone();
                    let share = n / publishers + u64::from(p < n % publishers);
                    tokio::spawn(async move {
                        for _ in 0..share {
                            bus.publish(&event).await.expect("publish");
                            if coop {
                                tokio::task::coop::consume_budget().await;
                            }
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.expect("publisher task");
            }
            let publish = start.elapsed().as_secs_f64();
            let backlog = transport.queue_depth("bench").map_or(0, |d| d.ready);
            done.wait(target).await;
            Sample {
                total: start.elapsed().as_secs_f64(),
                publish,
                backlog,
            }
        }
    };
    run(cfg.n / 5).await; // warm-up
    let mut samples = Vec::with_capacity(REPS);
    for _ in 0..REPS {
        samples.push(run(cfg.n).await);
    }
    finish(bus, running, &stray).await;
    samples
}

struct Row {
    name: String,
    best: Sample,
    median: Sample,
}

fn main() {
    let cfg = Config::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.workers)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let body_bytes = serde_json::to_vec(&sample(7)).expect("encodes").len();

    println!("pubsub dispatch benchmark");
    println!(
        "  N = {} events per run, {body_bytes}-byte JSON event, tokio multi-thread runtime with {} workers",
        cfg.n, cfg.workers
    );
    println!(
        "  each scenario: 1 warm-up run of N/5, then {REPS} timed runs; best and median (by total time) shown"
    );
    println!(
        "  framework: MemoryTransport, prefetch {}, HandlerSelection::None, {} publishing task(s) looping `bus.publish(&e).await`",
        cfg.prefetch, cfg.publishers
    );
    if cfg.coop {
        println!(
            "  PUBSUB_BENCH_COOP: publishers call tokio::task::coop::consume_budget() after each publish"
        );
    }
    println!(
        "  floor: serde_json encode of the same pre-built event -> tokio mpsc (bounded {}) -> serde_json decode, 1 producer + 1 consumer task (both spawned)",
        FLOOR_CAPACITY
    );
    println!(
        "  publish µs/ev: when the last publish returned, of the best run; backlog: messages still queued then"
    );
    println!();

    // Isolation::Task (the default): every handler attempt in its own task.
    let scenarios = [
        (3, Isolation::Task, "3", "framework, 3 handlers"),
        (10, Isolation::Task, "10", "framework, 10 patterns"),
        (1000, Isolation::Task, "1000", "framework, 1000 patterns"),
        (
            3,
            Isolation::Inline,
            "inline",
            "  3 handlers, Isolation::Inline",
        ),
    ];
    let mut rows = Vec::new();
    if cfg.only.is_none() {
        for (build_each, name) in [
            (false, "floor (encode + mpsc + decode)"),
            (true, "  floor, building each event"),
        ] {
            let (best, median) = summary(runtime.block_on(floor(&cfg, build_each)));
            rows.push(Row {
                name: name.into(),
                best,
                median,
            });
        }
    }
    for (patterns, isolation, key, name) in scenarios {
        if cfg.only.as_ref().is_some_and(|only| only != key) {
            continue;
        }
        let (best, median) = summary(runtime.block_on(framework(&cfg, patterns, isolation)));
        rows.push(Row {
            name: name.into(),
            best,
            median,
        });
    }

    if cfg.only.as_deref().is_none_or(|only| only == "split") {
        let (publish, drain) = runtime.block_on(split(&cfg));
        for (name, samples) in [
            ("  3 handlers: publish side only", publish),
            ("  3 handlers: dispatch side only", drain),
        ] {
            let (best, median) = summary(samples);
            rows.push(Row {
                name: name.into(),
                best,
                median,
            });
        }
    }

    let n = cfg.n as f64;
    let floor_best = (cfg.only.is_none()).then(|| rows[0].best.total);
    println!(
        "{:<31} {:>10} {:>9} {:>11} {:>9} {:>8} {:>13} {:>8}",
        "scenario",
        "events/s",
        "µs/event",
        "median ev/s",
        "median µs",
        "× floor",
        "publish µs/ev",
        "backlog"
    );
    println!("{}", "-".repeat(107));
    for row in &rows {
        let ratio =
            floor_best.map_or_else(|| "-".to_owned(), |f| format!("{:.2}", f / row.best.total));
        let publish = if row.best.publish > 0.0 {
            format!("{:.3}", row.best.publish * 1e6 / n)
        } else {
            "-".to_owned()
        };
        println!(
            "{:<31} {:>10.0} {:>9.3} {:>11.0} {:>9.3} {:>8} {:>13} {:>8}",
            row.name,
            n / row.best.total,
            row.best.total * 1e6 / n,
            n / row.median.total,
            row.median.total * 1e6 / n,
            ratio,
            publish,
            row.best.backlog,
        );
    }
    let Some(floor_best) = floor_best else {
        return;
    };
    println!();
    let (three, ten, thousand, inline) = (
        rows[2].best.total,
        rows[3].best.total,
        rows[4].best.total,
        rows[5].best.total,
    );
    println!(
        "framework (3 handlers) / floor rate: {:.2}×  (goal ≥ 0.50×)  {}",
        floor_best / three,
        verdict(floor_best / three >= 0.5)
    );
    println!(
        "  the same, Isolation::Inline:       {:.2}×",
        floor_best / inline
    );
    println!(
        "1000-pattern / 10-pattern time:      {:.2}×  (goal ≤ 1.20×; median {:.2}×)  {}",
        thousand / ten,
        rows[4].median.total / rows[3].median.total,
        verdict(thousand / ten <= 1.2)
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}
