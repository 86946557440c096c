//! A WebSocket and server-sent-events gateway over request/reply: every text a client sends
//! becomes a request, a processor answers it (`hello` → `hello world`), and the answer goes
//! back to that client only. On the in-memory broker, gateway and processor in one process:
//!
//! ```text
//! cargo run --example gateway                 # then open http://127.0.0.1:3000/ , or:
//! websocat ws://127.0.0.1:3000/ws             # hello → {"reply":"hello world","request":"hello"}
//! curl -N http://127.0.0.1:3000/stream/hello  # event: reply, data: the same JSON
//! curl http://127.0.0.1:3000/health           # status, active_websockets, pending_requests
//! ```
//!
//! Over RabbitMQ (`RABBITMQ_URL`..., as for the e-commerce example), the gateway and any
//! number of processors as processes of their own, competing on the queue `gateway-processor`:
//!
//! ```text
//! PUBSUB_TRANSPORT=amqp cargo run --example gateway --features amqp -- --role processor
//! PUBSUB_TRANSPORT=amqp cargo run --example gateway --features amqp -- --role gateway
//! ```
//!
//! Options: `--role all|gateway|processor` (`all`), `--port N` (3000; 0: any free port, and
//! the line `gateway listening on http://127.0.0.1:N` says which), `--timeout-ms N` (how long
//! a request waits for its answer, 5000), `--delay-ms N` (how long the processor works on a
//! text, 0: try 3000 and watch `/health`), `--service NAME` (the processor's service and
//! queue) and, on AMQP, `--exchange NAME` (`pubsub.events`; another one keeps two
//! deployments on one broker apart).
//!
//! On the WebSocket each text frame is a request of its own, several may be in flight, and
//! each answer names its request: `{"request":"hello","reply":"hello world"}`, or
//! `{"request":"hello","error":"no reply to gateway.text_received within 5s"}` at the
//! deadline. A binary frame or a text over 4 KiB gets `{"error":"..."}`; the socket stays
//! open either way. `/stream/{text}` sends one `reply` or `error` event and ends. `/health`
//! answers 503 `unhealthy` while a bus of the process is (`Bus::health`).

mod web;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use pubsub::prelude::*;
use pubsub::{StopSignal, transport::Transport};
use tracing_subscriber::EnvFilter;

/// Sent for each text a client sends; the processor answers with the text to send back.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "gateway", action = "text_received", reply = String)]
pub struct TextReceived {
    /// What the client sent.
    pub text: String,
}

/// How long the processor works on each text (`--delay-ms`).
#[derive(Debug, Clone, Copy)]
struct WorkTime(Duration);

/// The processor: appends ` world`.
#[handler]
async fn process(request: TextReceived, ctx: Context) -> Result<String, HandlerError> {
    let WorkTime(delay) = *ctx.state::<WorkTime>()?;
    tokio::time::sleep(delay).await;
    Ok(format!("{} world", request.text))
}

/// The command line (`--flag value` pairs), with its defaults.
#[derive(Debug)]
struct Options {
    gateway: bool,
    processor: bool,
    port: u16,
    timeout: Duration,
    delay: Duration,
    service: String,
    exchange: Option<String>,
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut options = Self {
            gateway: true,
            processor: true,
            port: 3000,
            timeout: Duration::from_secs(5),
            delay: Duration::ZERO,
            service: "gateway-processor".into(),
            exchange: None,
        };
        for pair in args.chunks(2) {
            let [flag, value] = pair else {
                anyhow::bail!("{} needs a value", pair[0]);
            };
            let millis = || -> anyhow::Result<Duration> {
                let ms = value.parse().with_context(|| format!("{flag} {value}"))?;
                Ok(Duration::from_millis(ms))
            };
            match flag.as_str() {
                "--role" => {
                    (options.gateway, options.processor) = match value.as_str() {
                        "all" => (true, true),
                        "gateway" => (true, false),
                        "processor" => (false, true),
                        _ => anyhow::bail!("--role {value}: all, gateway or processor"),
                    }
                }
                "--port" => {
                    options.port = value.parse().with_context(|| format!("--port {value}"))?
                }
                "--timeout-ms" => options.timeout = millis()?,
                "--delay-ms" => options.delay = millis()?,
                "--service" => options.service.clone_from(value),
                "--exchange" => options.exchange = Some(value.clone()),
                _ => anyhow::bail!("unknown option {flag} (see examples/gateway/main.rs)"),
            }
        }
        Ok(options)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let options = Options::parse(&std::env::args().skip(1).collect::<Vec<_>>())?;
    let signal = pubsub::shutdown_signal(); // listens from now on
    let transport = transport(&options)?;

    let mut processor = None;
    if options.processor {
        let bus = Bus::builder()
            .service(options.service.as_str())
            .shared_transport(Arc::clone(&transport))
            .select_handlers(pubsub::handlers![process])
            .state(WorkTime(options.delay))
            .build()
            .await?;
        let run = bus.spawn().await?;
        println!("processor ready (service {})", options.service);
        processor = Some((bus, run));
    }
    if !options.gateway {
        signal.into_stages().0.await;
    } else {
        let gateway = Bus::publisher("gateway", Arc::clone(&transport));
        // healthy while this process's buses are
        let buses = processor
            .iter()
            .map(|(bus, _)| bus.clone())
            .chain([gateway.clone()]);
        let state = web::Gateway::new(gateway.clone(), buses.collect(), options.timeout);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", options.port))
            .await
            .with_context(|| format!("binding 127.0.0.1:{}", options.port))?;
        println!("gateway listening on http://{}", listener.local_addr()?);
        axum::serve(listener, web::router(state))
            .with_graceful_shutdown(signal.into_stages().0)
            .await?;
        gateway.close().await?;
    }
    if let Some((bus, run)) = processor {
        bus.close().await?;
        run.await??;
    }
    Ok(()) // the last bus closed closed the transport
}

/// The in-memory broker, or RabbitMQ with `PUBSUB_TRANSPORT=amqp`; a gateway or processor
/// of its own needs RabbitMQ (the in-memory broker lives in one process).
fn transport(options: &Options) -> anyhow::Result<Arc<dyn Transport>> {
    let name = std::env::var("PUBSUB_TRANSPORT").unwrap_or_default();
    match name.as_str() {
        "" | "memory" => {
            anyhow::ensure!(
                options.gateway && options.processor,
                "--role gateway and --role processor talk through RabbitMQ: the in-memory \
                 broker lives in one process. Run PUBSUB_TRANSPORT=amqp with --features amqp, \
                 or --role all"
            );
            anyhow::ensure!(options.exchange.is_none(), "--exchange is for AMQP only");
            Ok(Arc::new(pubsub::MemoryTransport::new()))
        }
        #[cfg(feature = "amqp")]
        "amqp" => {
            let mut config =
                pubsub::amqp::AmqpConfig::from_env().context("configuring RabbitMQ")?;
            if let Some(exchange) = &options.exchange {
                config = config.exchange(exchange.as_str());
            }
            Ok(Arc::new(pubsub::amqp::AmqpTransport::new(config)))
        }
        #[cfg(not(feature = "amqp"))]
        "amqp" => anyhow::bail!("PUBSUB_TRANSPORT=amqp needs `--features amqp`"),
        other => anyhow::bail!(
            "PUBSUB_TRANSPORT={other}: expected `memory` or `amqp` (streams have no request/reply)"
        ),
    }
}
