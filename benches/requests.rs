//! Request/reply: `bus.request` against raw lapin direct reply-to, on the same broker in the
//! same run, and `bus.request` on the in-memory transport.
//!
//! ```text
//! eval "$(scripts/broker.sh start)"
//! cargo bench --bench requests --features amqp
//! ```
//!
//! * **memory** (no broker, run first): `bus.request(&q)` from a publisher bus to a bus with
//!   one typed handler on a `MemoryTransport`: p50 / p99 of M round trips one at a time,
//!   and round trips per second with `WINDOW` in flight.
//! * **raw lapin**: a requester on one channel consuming `amq.rabbitmq.reply-to` (no-ack),
//!   publishing each request persistent and `mandatory` with `reply_to` and a correlation id,
//!   awaiting its publisher confirm and then its reply, matched by correlation id in a map
//!   its reply task hands out from (what the framework's requester does). The responder, on
//!   a connection of its own: a durable classic queue bound to the key, prefetch `PREFETCH`,
//!   each request decoded, its reply encoded and published persistent to the default
//!   exchange with routing key = `reply_to` and the correlation id, and the request acked
//!   once the reply is confirmed (what the framework's responder does). An informational
//!   row: the same requester without confirms or `mandatory`.
//! * **framework**: `bus.request(&q).timeout(..)` from a publisher bus to a bus with one
//!   typed handler returning the reply, each on an `AmqpTransport` of its own, through an
//!   exchange of the benchmark's own (`bench….requests`).
//!
//! Each case: N round trips with `WINDOW` in flight (one task drives them all), then M one at
//! a time, each timed; after a warm-up of its own. The cases run on a runtime worker, as a
//! service's code does. The ratio is what counts: the broker shares the 2 cores.
//!
//! Knobs: `PUBSUB_BENCH_N` (N, 20 000), `PUBSUB_BENCH_M` (M, 2 000), `PUBSUB_BENCH_WINDOW`
//! (1 000), `PUBSUB_BENCH_PREFETCH` (the responders' prefetch, 100),
//! `PUBSUB_BENCH_ONLY=memory|raw|framework` (one part alone, for a profiler),
//! `PUBSUB_BENCH_CROSS=1` (two diagnostic rows: the raw requester against the framework's
//! responder, and the framework's requester against the raw responder). Without
//! `RABBITMQ_URL` it runs the memory part, says so and exits. The queues and exchanges it
//! makes are deleted at the end.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ExchangeDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use pubsub::amqp::{AmqpConfig, AmqpTransport, connect};
use pubsub::transport::Transport;
use pubsub::{Bus, Context, Event, Handler, HandlerError, MemoryTransport};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

#[path = "common/broker.rs"]
mod broker;
use broker::{bound_queue, confirm_channel, handling_bus, remove_service};

/// The reply address of direct reply-to.
const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";
/// How long a framework request may wait (never reached in a healthy run).
const TIMEOUT: Duration = Duration::from_secs(60);

/// The request every case sends (82 bytes of JSON).
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "bench", action = "quote_requested", reply = Quote)]
struct QuoteRequested {
    customer_id: String,
    sku: String,
    quantity: u32,
    unit_cents: u64,
}

/// Its reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Quote {
    sku: String,
    total_cents: u64,
}

fn request() -> QuoteRequested {
    QuoteRequested {
        customer_id: "customer-4242".into(),
        sku: "KB-01-BLACK".into(),
        quantity: 2,
        unit_cents: 9_999,
    }
}

/// What both responders answer.
fn quote(request: &QuoteRequested) -> Quote {
    Quote {
        sku: request.sku.clone(),
        total_cents: u64::from(request.quantity) * request.unit_cents,
    }
}

/// Checks a reply (a mixed-up correlation would show here).
fn check(reply: &Quote) {
    assert_eq!(reply.total_cents, 19_998, "the reply of another request");
}

/// The bench's sizes, from the environment.
struct Knobs {
    n: u64,
    m: u64,
    window: usize,
    prefetch: u16,
    only: Option<String>,
    cross: bool,
}

fn knob<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Knobs {
    fn from_env() -> Self {
        Self {
            n: knob("PUBSUB_BENCH_N", 20_000u64).max(1),
            m: knob("PUBSUB_BENCH_M", 2_000u64).max(1),
            window: knob("PUBSUB_BENCH_WINDOW", 1_000usize).max(1),
            prefetch: knob("PUBSUB_BENCH_PREFETCH", 100u16).max(1),
            only: std::env::var("PUBSUB_BENCH_ONLY").ok(),
            cross: knob("PUBSUB_BENCH_CROSS", 0u8) == 1,
        }
    }

    fn runs(&self, part: &str) -> bool {
        self.only.as_deref().is_none_or(|only| only == part)
    }
}

/// A case's figures: round trips per second with the window in flight, and the latency
/// one at a time.
#[derive(Debug, Clone, Copy)]
struct Figures {
    rate: f64,
    /// The whole process' CPU time (requester and responder) per pipelined round trip.
    cpu: Duration,
    p50: Duration,
    p99: Duration,
}

/// `n` round trips with at most `window` in flight, driven by one task.
async fn pipelined<F, Fut>(n: u64, window: usize, ask: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    let start = Instant::now();
    let mut pending = FuturesUnordered::new();
    for _ in 0..n {
        if pending.len() >= window {
            pending.next().await;
        }
        pending.push(ask());
    }
    while pending.next().await.is_some() {}
    start.elapsed()
}

/// `m` round trips one at a time: their p50 and p99.
async fn one_at_a_time<F, Fut>(m: u64, ask: F) -> (Duration, Duration)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut took = Vec::with_capacity(m as usize);
    for _ in 0..m {
        let start = Instant::now();
        ask().await;
        took.push(start.elapsed());
    }
    took.sort_unstable();
    let at = |q: f64| took[((took.len() - 1) as f64 * q).round() as usize];
    (at(0.50), at(0.99))
}

/// Warms `ask` up, then measures it; prints its row.
async fn measure<F, Fut>(name: &str, knobs: &Knobs, ask: F) -> Figures
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    pipelined((knobs.n / 10).max(100), knobs.window, &ask).await;
    let cpu = process_cpu();
    let took = pipelined(knobs.n, knobs.window, &ask).await;
    let cpu = process_cpu().saturating_sub(cpu) / u32::try_from(knobs.n).unwrap_or(u32::MAX);
    let rate = knobs.n as f64 / took.as_secs_f64();
    let (p50, p99) = one_at_a_time(knobs.m, &ask).await;
    println!(
        "  {name:<44} {rate:>9.0} /s   CPU {:>8} each   p50 {:>8}   p99 {:>8}",
        micros(cpu),
        micros(p50),
        micros(p99)
    );
    Figures {
        rate,
        cpu,
        p50,
        p99,
    }
}

/// The CPU time this process used so far (user + system, from `/proc/self/stat`, in
/// ticks of 10 ms; zero where there is no such file).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // the fields after the command's closing parenthesis; utime and stime are 14 and 15
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// A bus of `service` on `transport` answering `QuoteRequested`, consuming.
async fn responder(transport: impl Transport, service: &str, prefetch: u16) -> Bus {
    let handler = Handler::typed(
        "quote",
        |request: QuoteRequested, _ctx: Context| async move { Ok::<_, HandlerError>(quote(&request)) },
    );
    let bus = handling_bus(transport, service, prefetch, handler).await;
    bus.spawn().await.expect("the responder runs");
    bus
}

/// One framework round trip.
async fn framework_ask(caller: &Bus, request: &QuoteRequested) {
    let reply = caller
        .request(request)
        .timeout(TIMEOUT)
        .await
        .expect("a reply");
    check(&reply);
}

/// `bus.request` on the in-memory transport.
async fn memory(knobs: &Knobs) -> Figures {
    let broker = MemoryTransport::new();
    let quotes = responder(broker.clone(), "bench-quotes", knobs.prefetch).await;
    let caller = Bus::publisher("bench-caller", broker);
    let request = request();
    println!("memory transport (no broker)");
    let figures = measure("bus.request", knobs, || framework_ask(&caller, &request)).await;
    caller.close().await.expect("the caller closes");
    quotes.close().await.expect("the responder closes");
    figures
}

/// The requests waiting for their replies on a raw requester's channel, by correlation id.
type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<Delivery>>>>;

/// A raw lapin requester over direct reply-to (see the module docs).
struct RawRequester {
    channel: Channel,
    exchange: String,
    key: String,
    confirms: bool,
    next: AtomicU64,
    waiting: Waiting,
}

impl RawRequester {
    async fn open(connection: &Connection, exchange: &str, key: &str, confirms: bool) -> Self {
        let channel = connection.create_channel().await.expect("channel");
        if confirms {
            channel
                .confirm_select(Default::default())
                .await
                .expect("confirms");
        }
        let replies = channel
            .basic_consume(
                DIRECT_REPLY_TO.into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("consumes its replies");
        let waiting = Waiting::default();
        tokio::spawn(hand_out(replies, Arc::clone(&waiting)));
        Self {
            channel,
            exchange: exchange.to_owned(),
            key: key.to_owned(),
            confirms,
            next: AtomicU64::new(0),
            waiting,
        }
    }

    async fn ask(&self, request: &QuoteRequested) {
        let id = self.next.fetch_add(1, Ordering::Relaxed).to_string();
        let (reply, replied) = oneshot::channel();
        self.waiting.lock().expect("lock").insert(id.clone(), reply);
        let body = serde_json::to_vec(request).expect("encodes");
        let properties = BasicProperties::default()
            .with_reply_to(DIRECT_REPLY_TO.into())
            .with_correlation_id(id.into())
            .with_content_type("application/json".into())
            .with_delivery_mode(2);
        let options = BasicPublishOptions {
            mandatory: self.confirms,
            ..BasicPublishOptions::default()
        };
        let confirm = self
            .channel
            .basic_publish(
                self.exchange.as_str().into(),
                self.key.as_str().into(),
                options,
                &body,
                properties,
            )
            .await
            .expect("publish");
        if self.confirms {
            match confirm.await.expect("confirmed") {
                Confirmation::Ack(None) => {}
                other => panic!("the request was not taken: {other:?}"),
            }
        }
        let delivery = replied.await.expect("a reply");
        let reply: Quote = serde_json::from_slice(&delivery.data).expect("decodes");
        check(&reply);
    }
}

/// Hands each reply to the request waiting for it.
async fn hand_out(mut replies: lapin::Consumer, waiting: Waiting) {
    while let Some(Ok(delivery)) = replies.next().await {
        let Some(id) = delivery.properties.correlation_id() else {
            continue;
        };
        let waiter = waiting.lock().expect("lock").remove(id.as_str());
        if let Some(waiter) = waiter {
            let _ = waiter.send(delivery);
        }
    }
}

/// The raw responder on `channel` (confirm mode): answers each request of `queue`, acking
/// it once its reply is confirmed, until the channel closes.
async fn raw_respond(channel: Channel, queue: String, prefetch: u16) {
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut requests = channel
        .basic_consume(
            queue.as_str().into(),
            "bench responder".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut settling = FuturesUnordered::new();
    loop {
        tokio::select! {
            next = requests.next() => {
                let Some(Ok(delivery)) = next else { break };
                let request: QuoteRequested = serde_json::from_slice(&delivery.data).expect("decodes");
                let body = serde_json::to_vec(&quote(&request)).expect("encodes");
                let (Some(reply_to), Some(correlation_id)) =
                    (delivery.properties.reply_to(), delivery.properties.correlation_id())
                else {
                    panic!("a request without reply_to or correlation id");
                };
                let properties = BasicProperties::default()
                    .with_correlation_id(correlation_id.clone())
                    .with_content_type("application/json".into())
                    .with_delivery_mode(2);
                let Ok(confirm) = channel
                    .basic_publish("".into(), reply_to.as_str().into(), BasicPublishOptions::default(), &body, properties)
                    .await
                else {
                    break;
                };
                settling.push(async move {
                    if confirm.await.is_ok() {
                        let _ = delivery.acker.ack(BasicAckOptions::default()).await;
                    }
                });
            }
            Some(()) = settling.next(), if !settling.is_empty() => {}
        }
    }
}

/// The AMQP part; `None` if a part was left out by `PUBSUB_BENCH_ONLY`.
struct Amqp {
    raw: Option<Figures>,
    raw_unconfirmed: Option<Figures>,
    framework: Option<Figures>,
    /// With `PUBSUB_BENCH_CROSS=1`: raw requester → framework responder, and framework
    /// requester → raw responder.
    cross: Vec<(&'static str, Figures)>,
}

async fn amqp(knobs: &Knobs) -> Amqp {
    let ns = format!(
        "bench{}",
        &pubsub::Uuid::now_v7().simple().to_string()[20..]
    );
    let config = AmqpConfig::from_env()
        .expect("config")
        .exchange(format!("{ns}.requests"))
        .prefetch(knobs.prefetch);
    println!();
    println!("AMQP, RabbitMQ at {}", config.url());
    // the framework's responder declares the exchange the raw one binds to
    let service = format!("{ns}-quotes");
    let quotes = responder(AmqpTransport::new(config.clone()), &service, knobs.prefetch).await;
    let caller = Bus::publisher("bench-caller", AmqpTransport::new(config.clone()));

    let (responding, channel) = confirm_channel(&config, "bench raw responder").await;
    let raw_queue = format!("{ns}-raw-quotes");
    let raw_key = "bench.raw_quote_requested";
    bound_queue(&channel, &config.exchange, &raw_queue, raw_key, true).await;
    let responder_channel = responding.create_channel().await.expect("channel");
    responder_channel
        .confirm_select(Default::default())
        .await
        .expect("confirms");
    let raw_responder = tokio::spawn(raw_respond(
        responder_channel.clone(),
        raw_queue.clone(),
        knobs.prefetch,
    ));
    let requesting = connect(&config, "bench raw requester")
        .await
        .expect("connects");

    let request = request();
    let mut figures = Amqp {
        raw: None,
        raw_unconfirmed: None,
        framework: None,
        cross: Vec::new(),
    };
    if knobs.runs("raw") {
        let raw = RawRequester::open(&requesting, &config.exchange, raw_key, true).await;
        figures.raw = Some(
            measure("raw lapin, confirmed + mandatory", knobs, || {
                raw.ask(&request)
            })
            .await,
        );
    }
    if knobs.runs("framework") {
        figures.framework = Some(
            measure("framework, bus.request", knobs, || {
                framework_ask(&caller, &request)
            })
            .await,
        );
    }
    if knobs.only.is_none() {
        let raw = RawRequester::open(&requesting, &config.exchange, raw_key, false).await;
        figures.raw_unconfirmed = Some(
            measure("(raw lapin, no confirms, not mandatory)", knobs, || {
                raw.ask(&request)
            })
            .await,
        );
    }

    if knobs.cross {
        let name = "(raw requester → framework responder)";
        let raw =
            RawRequester::open(&requesting, &config.exchange, QuoteRequested::KEY, true).await;
        let f = measure(name, knobs, || raw.ask(&request)).await;
        figures.cross.push((name, f));
        // the framework's requests to the raw responder, through an exchange of their own
        let exchange = format!("{ns}.raw-requests");
        channel
            .exchange_declare(
                exchange.as_str().into(),
                lapin::ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("declare");
        channel
            .queue_bind(
                raw_queue.as_str().into(),
                exchange.as_str().into(),
                QuoteRequested::KEY.into(),
                Default::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind");
        let to_raw = Bus::publisher(
            "bench-caller",
            AmqpTransport::new(config.clone().exchange(exchange.clone())),
        );
        let name = "(framework requester → raw responder)";
        let f = measure(name, knobs, || framework_ask(&to_raw, &request)).await;
        figures.cross.push((name, f));
        to_raw.close().await.expect("the caller closes");
        channel
            .exchange_delete(exchange.as_str().into(), Default::default())
            .await
            .expect("delete");
    }
    caller.close().await.expect("the caller closes");
    quotes.close().await.expect("the responder closes");
    let _ = requesting.close(200, "done".into()).await;
    let _ = responder_channel.close(200, "done".into()).await;
    let _ = raw_responder.await;
    channel
        .queue_delete(raw_queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("delete");
    remove_service(&channel, &service).await;
    channel
        .exchange_delete(config.exchange.as_str().into(), Default::default())
        .await
        .expect("delete");
    let _ = responding.close(200, "done".into()).await;
    figures
}

fn ratio(framework: f64, raw: f64) -> String {
    format!("{:.2}", framework / raw)
}

fn summary(memory: Option<Figures>, amqp: Option<&Amqp>, knobs: &Knobs) {
    println!();
    println!("| case | raw lapin | framework | framework / raw | goal |");
    println!("|---|---|---|---|---|");
    if let Some(f) = memory {
        println!(
            "| memory: round trips/s (CPU each), {} in flight | | {:.0} ({}) | | |",
            knobs.window,
            f.rate,
            micros(f.cpu)
        );
        println!(
            "| memory: p50 / p99, one in flight | | {} / {} | | p50 < 20 µs: {} |",
            micros(f.p50),
            micros(f.p99),
            if f.p50 < Duration::from_micros(20) {
                "met"
            } else {
                "missed"
            }
        );
    }
    let Some(Amqp {
        raw: Some(raw),
        framework: Some(framework),
        raw_unconfirmed,
        cross,
    }) = amqp
    else {
        return;
    };
    let throughput = framework.rate / raw.rate;
    let p50 = framework.p50.as_secs_f64() / raw.p50.as_secs_f64();
    println!(
        "| AMQP: round trips/s, {} in flight | {:.0} | {:.0} | {} | ≥ 0.8: {} |",
        knobs.window,
        raw.rate,
        framework.rate,
        ratio(framework.rate, raw.rate),
        if throughput >= 0.8 { "met" } else { "missed" }
    );
    println!(
        "| AMQP: p50, one in flight | {} | {} | {} | ≤ 1.5: {} |",
        micros(raw.p50),
        micros(framework.p50),
        ratio(framework.p50.as_secs_f64(), raw.p50.as_secs_f64()),
        if p50 <= 1.5 { "met" } else { "missed" }
    );
    println!(
        "| AMQP: p99, one in flight | {} | {} | {} | |",
        micros(raw.p99),
        micros(framework.p99),
        ratio(framework.p99.as_secs_f64(), raw.p99.as_secs_f64()),
    );
    println!(
        "| AMQP: this process' CPU per round trip (requester + responder), {} in flight | {} | {} | {} | |",
        knobs.window,
        micros(raw.cpu),
        micros(framework.cpu),
        ratio(framework.cpu.as_secs_f64(), raw.cpu.as_secs_f64()),
    );
    if let Some(u) = raw_unconfirmed {
        println!(
            "| (raw lapin without confirms: round trips/s, CPU, p50 / p99) | {:.0}, {}, {} / {} | | framework {} of its rate | |",
            u.rate,
            micros(u.cpu),
            micros(u.p50),
            micros(u.p99),
            ratio(framework.rate, u.rate)
        );
    }
    for (name, f) in cross {
        println!(
            "| {name}: round trips/s, CPU, p50 / p99 | | {:.0}, {}, {} / {} | {} of raw's rate | |",
            f.rate,
            micros(f.cpu),
            micros(f.p50),
            micros(f.p99),
            ratio(f.rate, raw.rate)
        );
    }
}

fn main() {
    let knobs = Knobs::from_env();
    let broker = std::env::var_os("RABBITMQ_URL").is_some();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "pubsub request/reply benchmark: N = {} round trips with {} in flight, M = {} one at a time, {}-byte request, prefetch {}",
        knobs.n,
        knobs.window,
        knobs.m,
        serde_json::to_vec(&request()).map_or(0, |b| b.len()),
        knobs.prefetch
    );
    println!();
    runtime.block_on(async move {
        // on a worker, as a service's code runs
        tokio::spawn(async move {
            let memory = if knobs.runs("memory") {
                Some(memory(&knobs).await)
            } else {
                None
            };
            let amqp = match (broker, knobs.only.as_deref()) {
                (_, Some("memory")) => None,
                (false, _) => {
                    println!();
                    println!(
                        "no RABBITMQ_URL: the AMQP part needs a broker (eval \"$(scripts/broker.sh start)\"); run again"
                    );
                    None
                }
                (true, _) => Some(amqp(&knobs).await),
            };
            summary(memory, amqp.as_ref(), &knobs);
        })
        .await
        .expect("the bench task");
    });
}
