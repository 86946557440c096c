//! A chat in the browser: pick a room and a name, and every message sent in a room reaches
//! everyone in it and nobody else; someone who joins late first sees the room's history,
//! replayed from the room's stream, then the live messages. Messages are protobuf
//! (`ChatMessage { user_id, content, timestamp }`, prost), as in the Python module this
//! framework replaces.
//!
//! ```text
//! cargo run --example chat                   # then open http://localhost:8080 in two tabs
//! curl http://localhost:8080/health          # status, open_sockets, room_readers
//! PUBSUB_TRANSPORT=streams cargo run --example chat --features streams   # RabbitMQ Streams
//! ```
//!
//! **A stream per room.** Each room is a stream of its own, `{prefix}.room.{room}`
//! (`chat.room.lobby`), as the seed's `chat_room_1` was, rather than one stream for all
//! rooms that each reader filters by room. Why: a late joiner's replay reads only its
//! room's messages, not every room's; retention is per room, so a busy room cannot push a
//! quiet room's history out; and a room is deleted by deleting its stream. (The other
//! design, one stream with a key per room, `#[event(key = "room.{room}.said")]` read with
//! `bus.subscribe::<Said>().param(Said::ROOM, room)`, has the broker skip other rooms'
//! chunks by stream filtering, but shares one retention.) The cost: one stream per room on
//! the broker, created when someone first joins.
//!
//! **History.** A joiner reads its room's stream from the first message the stream still
//! holds (`StartAt::First`); each room's stream keeps the last [`HISTORY_BYTES`] of
//! messages and none older than [`HISTORY_AGE`] (RabbitMQ drops whole segments, of
//! [`SEGMENT_BYTES`] here, so it keeps a little more). Messages written before the socket
//! joined come with `"history": true`. Over RabbitMQ Streams the history lives on the
//! broker and a restart of the server loses none of it; the in-memory broker
//! (`MemoryTransport::stream_backed`) keeps it in the process, so a restart starts empty.
//!
//! **Readers.** Each WebSocket reads its room through an [`EventStream`](pubsub::stream::EventStream) of its own, an
//! anonymous consumer that stores no offset; closing the tab closes the socket, which
//! drops the stream and ends its consumer (`/health` counts `room_readers`).
//!
//! **The WebSocket**, `/ws/{room}/{name}`: a room is 1 to 40 of `a-z 0-9 - _`, a name 1 to
//! 32 characters. The client sends text frames `{"content": "..."}`; the server sends
//! `{"joined": room, "user_id": name}` once, then each message of the room as
//! `{"user_id", "content", "timestamp" (ms since 1970), "history"}`, and
//! `{"error": "..."}` for anything it refuses: a frame that is no such JSON, a binary
//! frame, an empty message, a message over 2000 characters or a frame over 8 KiB. The
//! socket stays open after an error, and nothing refused reaches the stream. A frame over
//! 1 MiB closes the socket (code 1009), as WebSocket servers do.
//!
//! Options: `--port N` (8080; 0: any free port, and the line
//! `chat listening on http://127.0.0.1:N` says which), `--host ADDR` (`127.0.0.1`;
//! `0.0.0.0` to open it from a phone on the same network) and `--prefix NAME` (`chat`: the
//! rooms' streams are `{prefix}.room.{room}`; another prefix keeps two deployments on one
//! broker apart).
//!
//! The example's own code uses the facade's `protobuf` feature (this workspace's
//! dev-dependencies turn it on; in your project, `features = ["protobuf"]`).

mod rooms;
mod web;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use pubsub::stream::{Retention, StreamNaming};
use pubsub::transport::Transport;
use pubsub::{Bus, StopSignal};
use tracing_subscriber::EnvFilter;

/// How many bytes of messages each room's stream keeps.
pub const HISTORY_BYTES: u64 = 1024 * 1024;
/// How long each room's stream keeps a message.
pub const HISTORY_AGE: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// The size of the broker's segment files for a room's stream: RabbitMQ drops history by
/// whole segments.
pub const SEGMENT_BYTES: u64 = 256 * 1024;

/// The command line (`--flag value` pairs), with its defaults.
#[derive(Debug)]
struct Options {
    host: String,
    port: u16,
    prefix: String,
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut options = Self {
            host: "127.0.0.1".into(),
            port: 8080,
            prefix: "chat".into(),
        };
        for pair in args.chunks(2) {
            let [flag, value] = pair else {
                anyhow::bail!("{} needs a value", pair[0]);
            };
            match flag.as_str() {
                "--port" => {
                    options.port = value.parse().with_context(|| format!("--port {value}"))?
                }
                "--host" => options.host.clone_from(value),
                "--prefix" => options.prefix.clone_from(value),
                _ => anyhow::bail!("unknown option {flag} (see examples/chat/main.rs)"),
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
    let bus = Bus::publisher("chat", transport(&options.prefix)?);
    let chat = rooms::Chat::new(bus.clone(), &options.prefix);
    let listener = tokio::net::TcpListener::bind((options.host.as_str(), options.port))
        .await
        .with_context(|| format!("binding {}:{}", options.host, options.port))?;
    println!("chat listening on http://{}", listener.local_addr()?);
    axum::serve(listener, web::router(chat))
        .with_graceful_shutdown(signal.into_stages().0)
        .await?;
    bus.close().await?; // ends the rooms' readers, and so the sockets still open
    Ok(())
}

/// The in-memory broker's streams, or RabbitMQ Streams with `PUBSUB_TRANSPORT=streams`;
/// each room's stream kept as [`HISTORY_BYTES`] and [`HISTORY_AGE`] say.
fn transport(prefix: &str) -> anyhow::Result<Arc<dyn Transport>> {
    let retention = Retention::default()
        .max_length_bytes(HISTORY_BYTES)
        .max_age(HISTORY_AGE)
        .max_segment_size_bytes(SEGMENT_BYTES);
    let naming = StreamNaming::new(prefix);
    let name = std::env::var("PUBSUB_TRANSPORT").unwrap_or_default();
    match name.as_str() {
        "" | "memory" => Ok(Arc::new(pubsub::MemoryTransport::stream_backed_with(
            naming, retention,
        ))),
        #[cfg(feature = "streams")]
        "streams" => {
            let config = pubsub::streams::StreamConfig::from_env()
                .context("configuring RabbitMQ Streams")?
                .naming(naming)
                .retention(retention);
            Ok(Arc::new(pubsub::streams::StreamTransport::new(config)))
        }
        #[cfg(not(feature = "streams"))]
        "streams" => anyhow::bail!("PUBSUB_TRANSPORT=streams needs `--features streams`"),
        other => anyhow::bail!(
            "PUBSUB_TRANSPORT={other}: expected `memory` or `streams` (a room is a stream, and \
             a late joiner replays it: AMQP queues keep no history)"
        ),
    }
}
