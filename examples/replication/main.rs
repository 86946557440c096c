//! A replication pipeline on a stream: a producer appends change events (`{id, operation,
//! data}`) to the stream `events.replication` (kept 16 MiB or a week, whichever is less); a
//! named consumer, `replicator`, applies them in order to an in-memory table and stores its
//! offset as it goes; a change marked to fail goes to its error stream
//! `events.errors.replicator`, with the reason and the offset it was read at, and the
//! consumer moves on. On the in-memory broker (no RabbitMQ needed), a short demo of it all:
//!
//! ```text
//! cargo run --example replication
//! ```
//!
//! It appends 8 changes, stops the consumer part-way and starts it again (it resumes after
//! its stored offset), shows the table and the error stream, then resets the consumer's
//! offset to 0 and replays everything. Over RabbitMQ Streams (`RABBITMQ_STREAM_HOST`/
//! `RABBITMQ_STREAM_PORT`...) the streams and the stored offset outlive the process, so the
//! steps can be processes of their own:
//!
//! ```text
//! PUBSUB_TRANSPORT=streams cargo run --example replication --features streams -- --produce 100
//! PUBSUB_TRANSPORT=streams cargo run --example replication --features streams -- --consume
//! PUBSUB_TRANSPORT=streams cargo run --example replication --features streams -- --reset-offset 0
//! ```
//!
//! Options: `--produce N` (append N changes), `--consume` (apply what is new, from after the
//! stored offset to the stream's end as it was at the start, then print the table and the
//! error stream and exit), `--reset-offset O` (reset the consumer to read from offset O,
//! then consume), `--fail-every K` (the producer marks every K-th change to fail, 4; 0:
//! none), `--apply-ms MS` (how long applying one change takes, 0), `--consumer NAME` (the
//! consumer's name, `replicator`) and `--prefix P` (the streams' prefix, `events`; another
//! keeps runs apart). Without `--produce`, `--consume` or `--reset-offset`: the demo.
//!
//! The consumer prints a line per change, `applied c-5 update users/u-1 (offset 4)` or
//! `failed c-4 ... (offset 3): marked to fail`. It stores its offset every 5 changes or
//! 200 ms and when it stops: killed in between, it applies the last few again when it
//! restarts. Applying is idempotent (a row is set or removed), so at least once is enough.

mod broker;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use pubsub::Bus;
use pubsub::prelude::*;
use pubsub::stream::{StartAt, StreamConsumption};
use tokio::sync::watch;

use broker::Broker;

/// One change at the source database, to apply to the replica.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "replication", action = "change")]
pub struct Change {
    /// The change's id (`c-1`, `c-2`...).
    pub id: String,
    /// What happened to the row.
    pub operation: Operation,
    /// The row.
    pub data: RowData,
    /// The producer marked it to fail: the consumer cannot apply it.
    #[serde(default)]
    pub should_fail: bool,
}

/// What a change does to its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// A new row.
    Insert,
    /// New values for a row.
    Update,
    /// The row is gone.
    Delete,
}

/// The row a change is about.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RowData {
    /// The table (`users`).
    pub table: String,
    /// The row's key (`u-1`).
    pub key: String,
    /// Its values after the change (empty for a delete).
    pub values: serde_json::Value,
}

/// How far the consumer got: changes handled (applied or failed) and the last offset.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    handled: u64,
    last_offset: Option<u64>,
}

/// The replica: the table, and the consumer's progress for `main` to wait on.
#[derive(Debug)]
struct Replica {
    /// `table/key` → the row's values and the change that set them.
    rows: Mutex<BTreeMap<String, (serde_json::Value, String)>>,
    progress: watch::Sender<Progress>,
    apply_time: Duration,
}

impl Replica {
    fn new(apply_time: Duration) -> Self {
        Self {
            rows: Mutex::new(BTreeMap::new()),
            progress: watch::Sender::new(Progress::default()),
            apply_time,
        }
    }

    /// Sets or removes the row: applying a change twice leaves the same table.
    fn apply(&self, change: &Change) {
        let row = format!("{}/{}", change.data.table, change.data.key);
        let mut rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        match change.operation {
            Operation::Insert | Operation::Update => {
                rows.insert(row, (change.data.values.clone(), change.id.clone()));
            }
            Operation::Delete => {
                rows.remove(&row);
            }
        }
    }

    fn handled(&self, offset: Option<u64>) {
        self.progress.send_modify(|p| {
            p.handled += 1;
            p.last_offset = p.last_offset.max(offset);
        });
    }

    /// One line: each row with the change that set it.
    fn table(&self) -> String {
        let rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        let each: Vec<String> = rows
            .iter()
            .map(|(row, (_, by))| format!("{row} ← {by}"))
            .collect();
        format!("table ({} rows): {}", rows.len(), each.join(", "))
    }
}

/// The consumer's one handler: applies a change, or fails one marked to fail (a permanent
/// error: no retry, straight to the error stream).
#[handler]
async fn apply_change(change: Change, ctx: Context) -> Result<(), HandlerError> {
    let replica = ctx.state::<Arc<Replica>>()?;
    tokio::time::sleep(replica.apply_time).await;
    let offset = ctx.stream_offset();
    let at = offset.map_or_else(|| "-".to_owned(), |o| o.to_string());
    let what = format!(
        "{} {:?} {}/{} (offset {at})",
        change.id, change.operation, change.data.table, change.data.key
    )
    .to_lowercase();
    replica.handled(offset);
    if change.should_fail {
        println!("  failed  {what}: marked to fail, to the error stream");
        return Err(HandlerError::permanent(format!(
            "change {} is marked to fail",
            change.id
        )));
    }
    replica.apply(&change);
    println!("  applied {what}");
    Ok(())
}

/// The command line, with its defaults.
#[derive(Debug)]
struct Options {
    produce: Option<u64>,
    consume: bool,
    reset_offset: Option<u64>,
    fail_every: u64,
    apply_time: Duration,
    consumer: String,
    prefix: String,
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut options = Self {
            produce: None,
            consume: false,
            reset_offset: None,
            fail_every: 4,
            apply_time: Duration::ZERO,
            consumer: "replicator".into(),
            prefix: pubsub::stream::DEFAULT_STREAM_PREFIX.into(),
        };
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            if flag == "--consume" {
                options.consume = true;
                continue;
            }
            let value = args
                .next()
                .with_context(|| format!("{flag} needs a value"))?;
            let number = || -> anyhow::Result<u64> {
                value
                    .parse()
                    .with_context(|| format!("{flag} {value}: a number"))
            };
            match flag.as_str() {
                "--produce" => options.produce = Some(number()?),
                "--reset-offset" => options.reset_offset = Some(number()?),
                "--fail-every" => options.fail_every = number()?,
                "--apply-ms" => options.apply_time = Duration::from_millis(number()?),
                "--consumer" => options.consumer.clone_from(value),
                "--prefix" => options.prefix.clone_from(value),
                _ => anyhow::bail!("unknown option {flag} (see examples/replication/main.rs)"),
            }
        }
        Ok(options)
    }

    /// No step named: the demo.
    fn demo(&self) -> bool {
        self.produce.is_none() && !self.consume && self.reset_offset.is_none()
    }
}

/// When a consumer run stops.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// At the end of the stream as it was when the run started.
    AtEnd,
    /// After this many changes (the demo's stop before its restart).
    After(u64),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // the consumer prints each failure itself, and the stream client warns
                // "Stream closed" on every clean close
                .unwrap_or_else(|_| {
                    "warn,pubsub_core::dispatch=off,rabbitmq_stream_client=error".into()
                }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .compact()
        .init();
    let options = Options::parse(&std::env::args().skip(1).collect::<Vec<_>>())?;
    let broker = Broker::from_env(&options.prefix)?;
    let naming = broker.naming();
    let stream = naming.stream_of_key(Change::KEY);
    println!(
        "replication over {}: stream {stream}, consumer {}, error stream {}",
        broker.name(),
        options.consumer,
        naming.error_stream(&options.consumer)
    );
    let replica = Arc::new(Replica::new(options.apply_time));
    if options.demo() {
        demo(&broker, &options, &replica).await?;
    } else {
        if let Some(count) = options.produce {
            produce(&broker, &options, count).await?;
        }
        if let Some(next) = options.reset_offset {
            broker
                .reset_offset(&stream, &options.consumer, next)
                .await?;
            println!(
                "reset: {} reads {stream} from offset {next}",
                options.consumer
            );
        }
        if options.consume || options.reset_offset.is_some() {
            consume(&broker, &options, &replica, Stop::AtEnd).await?;
            report(&broker, &options, &replica).await?;
        }
    }
    broker.close().await
}

/// Everything in one process: produce, consume part, restart, report, reset and replay.
async fn demo(broker: &Broker, options: &Options, replica: &Arc<Replica>) -> anyhow::Result<()> {
    produce(broker, options, 8).await?;
    consume(broker, options, replica, Stop::After(3)).await?;
    println!("(the consumer stopped, as for a deploy; it starts again)");
    consume(broker, options, replica, Stop::AtEnd).await?;
    report(broker, options, replica).await?;
    let stream = broker.naming().stream_of_key(Change::KEY);
    broker.reset_offset(&stream, &options.consumer, 0).await?;
    println!(
        "\n--reset-offset 0: {} reads {stream} from offset 0 again",
        options.consumer
    );
    consume(broker, options, replica, Stop::AtEnd).await?;
    println!("{}", replica.table());
    Ok(())
}

/// Appends `count` changes, numbered on from those the stream has; every
/// `--fail-every`-th is marked to fail.
async fn produce(broker: &Broker, options: &Options, count: u64) -> anyhow::Result<()> {
    const PRODUCER: &str = "replication-producer";
    let stream = broker.naming().stream_of_key(Change::KEY);
    broker.ensure_stream(&stream, PRODUCER).await?;
    let before = broker
        .last_offset(&stream)
        .await?
        .map_or(0, |last| last + 1);
    let bus = Bus::publisher(PRODUCER, broker.connect());
    for n in before + 1..=before + count {
        bus.publish(&change(n, options.fail_every)).await?;
    }
    bus.close().await?;
    let marked = match options.fail_every {
        0 => "none marked to fail".to_owned(),
        k => format!("1 in {k} marked to fail"),
    };
    println!(
        "producer: appended c-{}..c-{} to {stream} ({marked})",
        before + 1,
        before + count
    );
    Ok(())
}

/// Change number `n`: rows `u-1`..`u-4` in turn, inserted first, then updated, every
/// 7th change a delete; marked to fail when `n` is a multiple of `fail_every`.
fn change(n: u64, fail_every: u64) -> Change {
    let row = (n - 1) % 4 + 1;
    let operation = match n {
        _ if n.is_multiple_of(7) => Operation::Delete,
        1..=4 => Operation::Insert,
        _ => Operation::Update,
    };
    let values = match operation {
        Operation::Delete => serde_json::Value::Null,
        _ => serde_json::json!({ "name": format!("user {row}"), "visits": n }),
    };
    Change {
        id: format!("c-{n}"),
        operation,
        data: RowData {
            table: "users".into(),
            key: format!("u-{row}"),
            values,
        },
        should_fail: fail_every > 0 && n.is_multiple_of(fail_every),
    }
}

/// Runs the named consumer from its stored offset (or the stream's first message) until
/// `stop`, then stops it (which stores its offset).
async fn consume(
    broker: &Broker,
    options: &Options,
    replica: &Arc<Replica>,
    stop: Stop,
) -> anyhow::Result<()> {
    let name = options.consumer.as_str();
    let stream = broker.naming().stream_of_key(Change::KEY);
    let bus = Bus::builder()
        .service(name)
        .shared_transport(broker.connect())
        .select_handlers(pubsub::handlers![apply_change])
        .state(Arc::clone(replica))
        // one change at a time, in the stream's order
        .prefetch(1)
        .stream_consumption(
            StreamConsumption::new()
                .start_at(StartAt::First) // a consumer without a stored offset reads all
                .store_every(5, Duration::from_millis(200)),
        )
        .build()
        .await?;
    let stored = broker.stored_offset(&stream, name).await?;
    let last = broker.last_offset(&stream).await?;
    let from = match stored {
        None => "nothing stored, reads from the first message".to_owned(),
        Some(u64::MAX) => "reads from offset 0".to_owned(), // reset to 0: "before 0"
        Some(offset) => format!("resumes after its stored offset {offset}"),
    };
    let next = stored.map_or(0, |o| o.wrapping_add(1));
    let Some(last) = last.filter(|last| *last >= next) else {
        println!("consumer {name}: {from}; nothing new");
        bus.close().await?;
        return Ok(());
    };
    println!("consumer {name}: {from}, to offset {last}");
    replica.progress.send_replace(Progress::default()); // this run's
    let mut progress = replica.progress.subscribe();
    let mut run = bus.spawn().await?;
    let reached = progress.wait_for(|p| match stop {
        Stop::AtEnd => p.last_offset >= Some(last),
        Stop::After(count) => p.handled >= count,
    });
    tokio::select! {
        reached = reached => {
            reached.context("the replica went away")?;
        }
        ended = &mut run => {
            bus.close().await?;
            anyhow::bail!("consumer {name} ended before offset {last}: {ended:?}");
        }
    }
    bus.close().await?; // in-flight changes finish, the offset is stored
    run.await??;
    let stored = broker.stored_offset(&stream, name).await?;
    let handled = replica.progress.borrow().handled;
    let stored = stored.map_or_else(|| "none".to_owned(), |o| o.to_string());
    println!("consumer {name}: stopped; {handled} handled, stored offset {stored}");
    Ok(())
}

/// The table and the error stream.
async fn report(broker: &Broker, options: &Options, replica: &Replica) -> anyhow::Result<()> {
    println!("{}", replica.table());
    let errors = broker.error_stream(&options.consumer).await?;
    let s = if errors.len() == 1 { "y" } else { "ies" };
    println!("error stream ({} entr{s}):", errors.len());
    const SHOWN: usize = 12;
    if errors.len() > SHOWN {
        println!("  ({} older entries not shown)", errors.len() - SHOWN);
    }
    for entry in errors.iter().skip(errors.len().saturating_sub(SHOWN)) {
        let id = Change::decode_message(&entry.message)
            .map_or_else(|_| "?".to_owned(), |change| change.id);
        let offset = entry
            .offset
            .map_or_else(|| "-".to_owned(), |o| o.to_string());
        println!("  {id} (offset {offset}): {}", entry.reason);
    }
    Ok(())
}
