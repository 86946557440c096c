//! The Streams transport against raw rabbitmq-stream-client 0.11, on the same broker in
//! the same run, and against the framework's own AMQP publish.
//!
//! ```text
//! eval "$(scripts/broker.sh start)"
//! cargo bench --bench streams --features streams,amqp
//! ```
//!
//! * **publish**: confirmed appends to a fresh stream, `BATCH` messages per frame at most.
//!   Raw: a named (de-duplicating) producer, `send` with a callback, explicit publishing
//!   ids from 1, confirms counted until N; framework: `bus.begin_publish(&e)` with up to `WINDOW`
//!   confirmations in flight, and `CONCURRENT` tasks each awaiting `bus.publish(&e)`,
//!   against as many tasks awaiting the raw client's `send_with_confirm`. The producers
//!   are built before the clock starts. The raw message is the JSON body alone,
//!   encoded once; an extra raw row does the work any publisher of events does, encoding
//!   each event and writing the envelope the framework writes (message id, subject,
//!   content type and three application properties), to split the gap between that work
//!   and the framework's own code.
//! * **consume**: N enveloped events appended by the raw producer (full batches, so full
//!   chunks), read from the first offset: raw consumer + serde decode, against a bus with
//!   one typed handler (named consumer, offsets stored on the default interval), at
//!   prefetch 100 and 1000, and at 1000 with `Isolation::Inline` (handlers on the bus's
//!   task instead of a task per attempt). Then the same on the stream the framework's
//!   `bus.begin_publish` filled (smaller chunks: see the README), and the raw consumer on the plain
//!   messages.
//! * **stream / AMQP**: with the `amqp` feature and `RABBITMQ_URL`, the framework's
//!   pipelined, confirmed, persistent AMQP publish (as in `benches/amqp.rs`) on the same
//!   broker, N / 5 events, and the ratio of the stream publish to it.
//!
//! Every case runs in each of `PUBSUB_BENCH_ROUNDS` rounds (default 3) on fresh streams;
//! the summary gives each case's median rate with its range and each ratio as the median
//! of the rounds' own ratios. The broker shares the 2 cores with the bench, so single runs
//! swing; the ratios are what counts. `PUBSUB_BENCH_N` sets N (default 100 000),
//! `PUBSUB_BENCH_WINDOW` the stream
//! `bus.begin_publish` window; `PUBSUB_BENCH_ONLY=send|raw|consume|consume-inline` runs one case alone, for a
//! profiler. Without `RABBITMQ_STREAM_HOST` or `RABBITMQ_STREAM_PORT`, or with no broker
//! answering, it says so and exits. The streams, queues and exchanges it makes are deleted
//! at the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::stream::StreamExt;
use pubsub::streams::{StreamConfig, StreamTransport};
use pubsub::{
    Bus, Context, Event, Handler, HandlerError, HandlerSelection, Isolation,
    stream::{StartAt, StreamConsumption, StreamNaming},
};
use rabbitmq_stream_client::Environment;
use rabbitmq_stream_client::types::{Message as WireMessage, OffsetSpecification};
use tokio::sync::Notify;

mod common;
use common::{CONCURRENT, Ordered, WINDOW, framework_concurrent, framework_send, row, sample};

#[path = "streams/summary.rs"]
mod summary;
use summary::Round;

/// Messages per publish frame, raw and framework alike (the client's default).
const BATCH: usize = 100;
const PUBLISHER: &str = "bench-publisher";

/// A raw client environment for the broker `config` names (the password from the same
/// variable `StreamConfig::from_env` reads; it does not hand it out).
async fn raw_environment(config: &StreamConfig) -> Result<Environment, String> {
    let password = std::env::var(pubsub::streams::ENV_PASSWORD).unwrap_or_else(|_| "guest".into());
    let builder = Environment::builder()
        .host(&config.host)
        .port(config.port)
        .username(&config.username)
        .password(&password)
        .virtual_host(&config.vhost)
        .load_balancer_mode(config.load_balancer_mode)
        .client_provided_name("bench raw");
    match tokio::time::timeout(Duration::from_secs(10), builder.build()).await {
        Ok(Ok(environment)) => Ok(environment),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("timed out after 10 s".into()),
    }
}

/// Counts outcomes up to `n` and wakes the waiter at the last one.
struct Confirms {
    n: u64,
    settled: AtomicU64,
    refused: AtomicU64,
    all: Notify,
}

/// The JSON body alone (encoded once, before the clock), with publishing id `id`.
fn plain(body: &[u8], id: u64) -> WireMessage {
    WireMessage::builder()
        .body(body.to_vec())
        .publishing_id(id)
        .build()
}

/// The body with the envelope the framework writes (`pubsub-streams/src/convert.rs`): a
/// message id, subject and content type, and three application properties (version,
/// timestamp, publishing service); a fresh id and timestamp each, and the event encoded
/// anew each time, as any caller publishing events does (`_once`, encoded before the
/// clock, is not used: the body is the event's own).
fn enveloped(_once: &[u8], id: u64) -> WireMessage {
    let body = serde_json::to_vec(&sample()).expect("encodes");
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    WireMessage::builder()
        .body(body)
        .properties()
        .message_id(pubsub::Uuid::now_v7())
        .subject(Ordered::KEY)
        .content_type("application/json")
        .message_builder()
        .application_properties()
        .insert("x-event-version", 1u32)
        .insert("x-timestamp-ms", millis)
        .insert("app-id", PUBLISHER)
        .message_builder()
        .publishing_id(id)
        .build()
}

async fn raw_publish(
    environment: &Environment,
    stream: &str,
    n: u64,
    make: fn(&[u8], u64) -> WireMessage,
) -> Duration {
    let body = serde_json::to_vec(&sample()).expect("encodes");
    let mut producer = environment
        .producer()
        .name(&format!("bench-raw@{stream}"))
        .batch_size(BATCH)
        .build(stream)
        .await
        .expect("raw producer");
    let confirms = Arc::new(Confirms {
        n,
        settled: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        all: Notify::new(),
    });
    let start = Instant::now();
    for id in 1..=n {
        let message = make(&body, id);
        let confirms = Arc::clone(&confirms);
        producer
            .send(message, move |outcome| async move {
                if !outcome.is_ok_and(|status| status.confirmed()) {
                    confirms.refused.fetch_add(1, Ordering::Relaxed);
                }
                if confirms.settled.fetch_add(1, Ordering::AcqRel) + 1 == confirms.n {
                    confirms.all.notify_one();
                }
            })
            .await
            .expect("send");
    }
    confirms.all.notified().await;
    let took = start.elapsed();
    assert_eq!(confirms.refused.load(Ordering::Relaxed), 0, "all confirmed");
    let _ = producer.close().await;
    took
}

/// Confirmations in flight for the stream `bus.begin_publish` case: `PUBSUB_BENCH_WINDOW`, default
/// `WINDOW` (the AMQP one always uses `WINDOW`, as `benches/amqp.rs`).
fn stream_window() -> usize {
    std::env::var("PUBSUB_BENCH_WINDOW")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(WINDOW)
        .max(1)
}

/// `CONCURRENT` tasks each awaiting `send_with_confirm` of the plain body on one unnamed
/// producer (the named one's takes `&mut self`), built before the clock.
async fn raw_concurrent(environment: &Environment, stream: &str, n: u64) -> Duration {
    let body = serde_json::to_vec(&sample()).expect("encodes");
    let producer = environment
        .producer()
        .batch_size(BATCH)
        .build(stream)
        .await
        .expect("raw producer");
    let start = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENT)
        .map(|t| {
            let (producer, body) = (producer.clone(), body.clone());
            let share = n / CONCURRENT + u64::from(t < n % CONCURRENT);
            tokio::spawn(async move {
                for _ in 0..share {
                    let message = WireMessage::builder().body(body.clone()).build();
                    let status = producer.send_with_confirm(message).await.expect("send");
                    assert!(status.confirmed(), "confirmed");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("publisher task");
    }
    let took = start.elapsed();
    let _ = producer.close().await;
    took
}

/// A publisher bus on streams named under `prefix`, its producer built before the clock.
async fn stream_publisher(config: &StreamConfig, prefix: &str) -> (Bus, String) {
    let config = config.clone().naming(StreamNaming::new(prefix));
    let stream = config.naming.stream_of_key(Ordered::KEY);
    let transport = StreamTransport::new(config);
    transport
        .producer(PUBLISHER, &stream)
        .await
        .expect("framework producer");
    (Bus::publisher(PUBLISHER, transport), stream)
}

async fn raw_consume(environment: &Environment, stream: &str, n: u64) -> Duration {
    let start = Instant::now();
    let mut consumer = environment
        .consumer()
        .offset(OffsetSpecification::First)
        .build(stream)
        .await
        .expect("raw consumer");
    for _ in 0..n {
        let delivery = consumer
            .next()
            .await
            .expect("a delivery")
            .expect("delivered");
        let body = delivery.message().data().expect("a body");
        let event: Ordered = serde_json::from_slice(body).expect("decodes");
        std::hint::black_box(event);
    }
    let took = start.elapsed();
    let _ = consumer.handle().close().await;
    took
}

async fn framework_consume(
    config: &StreamConfig,
    service: &str,
    n: u64,
    prefetch: u16,
    isolation: Isolation,
) -> Duration {
    let handled = Arc::new(AtomicU64::new(0));
    let done = Arc::new(Notify::new());
    let (count, all) = (Arc::clone(&handled), Arc::clone(&done));
    let handler = Handler::typed("count", move |event: Ordered, _ctx: Context| {
        let (count, all) = (Arc::clone(&count), Arc::clone(&all));
        async move {
            std::hint::black_box(event);
            if count.fetch_add(1, Ordering::Relaxed) + 1 == n {
                all.notify_one();
            }
            Ok::<_, HandlerError>(())
        }
    });
    let bus = Bus::builder()
        .service(service)
        .transport(StreamTransport::new(config.clone()))
        .select_handlers(HandlerSelection::None)
        .prefetch(prefetch)
        .isolation(isolation)
        .stream_consumption(StreamConsumption::new().start_at(StartAt::First))
        .handler(handler)
        .build()
        .await
        .expect("bus");
    let start = Instant::now();
    let task = bus.spawn().await.expect("consumes");
    done.notified().await;
    let took = start.elapsed();
    bus.close().await.expect("closes");
    task.await.expect("bus task").expect("bus ran");
    took
}

/// The framework's pipelined AMQP publish rate on the same broker (`benches/amqp.rs`'s
/// `framework_send`, with a sink queue so that publishes route), or why not.
#[cfg(feature = "amqp")]
async fn amqp_send_rate(ns: &str, n: u64) -> Result<f64, String> {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    use pubsub::amqp::{AmqpConfig, AmqpTransport, connect};

    if std::env::var_os("RABBITMQ_URL").is_none() {
        return Err("no RABBITMQ_URL".into());
    }
    let exchange = format!("{ns}.events");
    let config = AmqpConfig::from_env()
        .map_err(|e| e.to_string())?
        .exchange(exchange.clone());
    let sink_queue = format!("{ns}-sink");
    let sink = Bus::builder()
        .service(sink_queue.clone())
        .transport(AmqpTransport::new(config.clone()))
        .select_handlers(HandlerSelection::None)
        .handler(Handler::typed("never", |_e: Ordered, _c: Context| async {
            Ok::<_, HandlerError>(())
        }))
        .build()
        .await
        .map_err(|e| format!("AMQP broker: {e}"))?;
    let publisher = Bus::publisher(PUBLISHER, AmqpTransport::new(config.clone()));
    framework_send(&publisher, (n / 10).max(1), WINDOW).await; // warm-up, as benches/amqp.rs
    let r = row(
        &format!("  framework AMQP, bus.send with {WINDOW} in flight"),
        n,
        framework_send(&publisher, n, WINDOW).await,
    );
    let _ = publisher.close().await;
    let _ = sink.close().await;
    let connection = connect(&config, "bench cleanup")
        .await
        .map_err(|e| e.to_string())?;
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| e.to_string())?;
    // the sink's queue, its dead-letter queue and exchange, and the events exchange
    for queue in [sink_queue.clone(), format!("{sink_queue}.dead-letters")] {
        let _ = channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    for exchange in [format!("{sink_queue}.dlx"), exchange] {
        let _ = channel
            .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(r)
}

#[cfg(not(feature = "amqp"))]
async fn amqp_send_rate(_ns: &str, _n: u64) -> Result<f64, String> {
    Err("built without the amqp feature (--features streams,amqp)".into())
}

fn main() {
    if std::env::var_os("RABBITMQ_STREAM_HOST").is_none()
        && std::env::var_os("RABBITMQ_STREAM_PORT").is_none()
    {
        println!(
            "no RABBITMQ_STREAM_HOST / RABBITMQ_STREAM_PORT: start a broker (eval \"$(scripts/broker.sh start)\") and run again"
        );
        return;
    }
    let n: u64 = std::env::var("PUBSUB_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
        .max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // on a worker, as a service's code runs: `block_on`'s own thread is outside the pool,
    // and every wake-up of it (a confirm, a delivery) would cross threads
    runtime
        .block_on(runtime.spawn(run(n)))
        .expect("the bench task");
}

/// `PUBSUB_BENCH_ONLY`: `send` (the framework's `bus.begin_publish` alone), `raw` (the raw
/// client's publish alone) or `consume` / `consume-inline` (fill with `bus.begin_publish`, then
/// the framework's consume at prefetch 1000 alone, with handlers in tasks or inline),
/// for profiling.
fn only() -> Option<String> {
    std::env::var("PUBSUB_BENCH_ONLY").ok()
}

async fn run(n: u64) {
    let config = StreamConfig::from_env()
        .expect("config")
        .batch_size(BATCH)
        .max_message_size(8 * 1024);
    let environment = match raw_environment(&config).await {
        Ok(environment) => environment,
        Err(error) => {
            println!("no stream broker answers at {}: {error}", config.address());
            return;
        }
    };
    let ns = format!(
        "bench{}",
        &pubsub::Uuid::now_v7().simple().to_string()[20..]
    );
    println!(
        "pubsub Streams benchmark: N = {n}, {}-byte JSON event, RabbitMQ at {}",
        serde_json::to_vec(&sample()).map_or(0, |b| b.len()),
        config.address()
    );
    let mut streams = Vec::new();
    match only().as_deref() {
        Some("send") => {
            let (publisher, stream) = stream_publisher(&config, &ns).await;
            streams.push(stream);
            row(
                "framework, bus.send",
                n,
                framework_send(&publisher, n, stream_window()).await,
            );
            let _ = publisher.close().await;
        }
        Some("raw") => {
            let stream = format!("{ns}.raw");
            let mut creator = environment.stream_creator();
            creator.options.clear();
            creator
                .create(&stream)
                .await
                .expect("create the raw stream");
            streams.push(stream.clone());
            row(
                "raw client, send + callback",
                n,
                raw_publish(&environment, &stream, n, plain).await,
            );
        }
        Some(mode @ ("consume" | "consume-inline")) => {
            let isolation = if mode == "consume" {
                Isolation::default()
            } else {
                Isolation::Inline
            };
            let (publisher, stream) = stream_publisher(&config, &ns).await;
            streams.push(stream);
            framework_send(&publisher, n, stream_window()).await;
            let _ = publisher.close().await;
            let reader = config.clone().naming(StreamNaming::new(&ns));
            let service = format!("{ns}-bus");
            streams.push(reader.naming.error_stream(&service));
            row(
                &format!("framework, consume, prefetch 1000, {isolation:?}"),
                n,
                framework_consume(&reader, &service, n, 1000, isolation).await,
            );
        }
        _ => compare(&config, &environment, &ns, n, &mut streams).await,
    }
    for stream in &streams {
        if let Err(error) = environment.delete_stream(stream).await {
            println!("could not delete {stream}: {error}");
        }
    }
}

/// Rounds of every case (`PUBSUB_BENCH_ROUNDS`, default 3), then the AMQP publish once,
/// then the summary; the streams made are added to `streams`.
async fn compare(
    config: &StreamConfig,
    environment: &Environment,
    ns: &str,
    n: u64,
    streams: &mut Vec<String>,
) {
    let count = rounds();
    let mut all = Vec::with_capacity(count);
    for i in 1..=count {
        println!();
        println!("round {i} of {count}");
        all.push(round(config, environment, &format!("{ns}r{i}"), n, streams).await);
    }
    println!();
    println!("stream publish against the framework's AMQP publish (N / 5 events)");
    let amqp = amqp_send_rate(ns, (n / 5).max(1)).await;
    if let Err(why) = &amqp {
        println!("  skipped: {why}");
    }
    summary::print(&all, &amqp);
}

/// How many rounds: `PUBSUB_BENCH_ROUNDS`, default 3.
fn rounds() -> usize {
    std::env::var("PUBSUB_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1)
}

/// Every case once, raw then framework, on streams named under `ns` (fresh each round:
/// the raw producers' ids start at 1 again).
async fn round(
    config: &StreamConfig,
    environment: &Environment,
    ns: &str,
    n: u64,
    streams: &mut Vec<String>,
) -> Round {
    let mut r = Round::default();
    println!("publish (confirmed; batch size {BATCH})");
    // the enveloped stream is named as the framework names the event's stream under its
    // own prefix, so that a bus can read it
    let envelope_prefix = format!("{ns}-e");
    let plain_stream = format!("{ns}.raw");
    let concurrent_stream = format!("{ns}.raw-concurrent");
    let enveloped_stream = StreamNaming::new(&envelope_prefix).stream_of_key(Ordered::KEY);
    for stream in [&plain_stream, &concurrent_stream, &enveloped_stream] {
        // without the creator's default leader locator: the transport creates its streams
        // with no arguments, and the broker refuses (PreconditionFailed) a create whose
        // arguments differ from the existing stream's
        let mut creator = environment.stream_creator();
        creator.options.clear();
        creator.create(stream).await.expect("create a raw stream");
        streams.push(stream.clone());
    }
    r.raw_publish = row(
        "  raw client, named producer, send + callback",
        n,
        raw_publish(environment, &plain_stream, n, plain).await,
    );
    r.raw_enveloped_publish = row(
        "  (raw client, same, encoding each event, with the envelope)",
        n,
        raw_publish(environment, &enveloped_stream, n, enveloped).await,
    );
    let (publisher, filled) = stream_publisher(config, ns).await;
    streams.push(filled.clone());
    r.send = row(
        &format!("  framework, bus.send with {} in flight", stream_window()),
        n,
        framework_send(&publisher, n, stream_window()).await,
    );
    let _ = publisher.close().await;
    r.raw_concurrent = row(
        &format!("  (raw client, {CONCURRENT} tasks awaiting send_with_confirm)"),
        n,
        raw_concurrent(environment, &concurrent_stream, n).await,
    );
    let (concurrent_bus, framework_concurrent_stream) =
        stream_publisher(config, &format!("{ns}-c")).await;
    streams.push(framework_concurrent_stream);
    r.concurrent = row(
        &format!("  framework, {CONCURRENT} tasks awaiting bus.publish"),
        n,
        framework_concurrent(&concurrent_bus, n).await,
    );
    let _ = concurrent_bus.close().await;

    println!("consume + decode (+ handle + store offsets), from the first offset");
    r.raw_consume_plain = row(
        "  (raw client, the raw producer's plain messages)",
        n,
        raw_consume(environment, &plain_stream, n).await,
    );
    println!("  the N enveloped events the raw producer appended (full chunks):");
    r.raw_consume = row(
        "    raw client",
        n,
        raw_consume(environment, &enveloped_stream, n).await,
    );
    let reader = config.clone().naming(StreamNaming::new(&envelope_prefix));
    type Slot = fn(&mut Round) -> &mut f64;
    let cases: [(&str, u16, Isolation, Slot); 3] = [
        ("100", 100, Isolation::default(), |r| &mut r.consume_100),
        ("1000", 1000, Isolation::default(), |r| &mut r.consume_1000),
        ("inline", 1000, Isolation::Inline, |r| &mut r.consume_inline),
    ];
    for (name, prefetch, isolation, slot) in cases {
        let service = format!("{ns}-bus-{name}");
        streams.push(reader.naming.error_stream(&service));
        let label = if isolation == Isolation::Inline {
            format!("    (framework, prefetch {prefetch}, Isolation::Inline)")
        } else {
            format!("    framework, typed handler, prefetch {prefetch}")
        };
        *slot(&mut r) = row(
            &label,
            n,
            framework_consume(&reader, &service, n, prefetch, isolation).await,
        );
    }
    println!("  the N events the framework's bus.send appended (its chunks):");
    r.raw_consume_sent = row(
        "    raw client",
        n,
        raw_consume(environment, &filled, n).await,
    );
    let reader = config.clone().naming(StreamNaming::new(ns));
    let service = format!("{ns}-bus-sent");
    streams.push(reader.naming.error_stream(&service));
    r.consume_sent = row(
        "    framework, typed handler, prefetch 1000",
        n,
        framework_consume(&reader, &service, n, 1000, Isolation::default()).await,
    );
    r
}
