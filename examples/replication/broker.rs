//! Where the replication example's streams live: the in-memory broker in stream mode (no
//! RabbitMQ needed), or RabbitMQ Streams with `PUBSUB_TRANSPORT=streams`. Besides the
//! connections its buses run on, what an operator asks a stream broker: a stream's last
//! offset, a consumer's stored offset, an offset reset, the error stream.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use pubsub::MemoryTransport;
use pubsub::stream::{ErrorStreamEntry, Retention, StreamNaming};
use pubsub::transport::Transport;

/// How much history the streams keep (set when a stream is created): 16 MiB or a week,
/// whichever is less, in 1 MiB segments on RabbitMQ (which removes whole segments).
pub(crate) fn retention() -> Retention {
    Retention::default()
        .max_length_bytes(16 * 1024 * 1024)
        .max_age(Duration::from_secs(7 * 24 * 60 * 60))
        .max_segment_size_bytes(1024 * 1024)
}

/// The broker, and a connection of the example's own for the operator's questions.
pub(crate) enum Broker {
    /// The in-memory broker in stream mode: its streams live as long as the process.
    Memory(MemoryTransport),
    /// RabbitMQ Streams: the configuration each bus connects with, and the operator's
    /// connection.
    #[cfg(feature = "streams")]
    Streams(
        Box<pubsub::streams::StreamConfig>,
        pubsub::streams::StreamTransport,
    ),
}

impl Broker {
    /// The in-memory broker, or RabbitMQ Streams with `PUBSUB_TRANSPORT=streams`; the
    /// streams named under `prefix`, created with [`retention`].
    pub(crate) fn from_env(prefix: &str) -> anyhow::Result<Self> {
        let naming = StreamNaming::new(prefix);
        match std::env::var("PUBSUB_TRANSPORT").as_deref() {
            Err(_) | Ok("" | "memory") => Ok(Self::Memory(MemoryTransport::stream_backed_with(
                naming,
                retention(),
            ))),
            #[cfg(feature = "streams")]
            Ok("streams") => {
                let config = pubsub::streams::StreamConfig::from_env()
                    .context("configuring RabbitMQ Streams")?
                    .naming(naming)
                    .retention(retention());
                let admin = pubsub::streams::StreamTransport::new(config.clone());
                Ok(Self::Streams(Box::new(config), admin))
            }
            #[cfg(not(feature = "streams"))]
            Ok("streams") => anyhow::bail!("PUBSUB_TRANSPORT=streams needs `--features streams`"),
            Ok(other) => anyhow::bail!(
                "PUBSUB_TRANSPORT={other}: the replication example runs on `memory` or \
                 `streams` (an AMQP queue keeps no history to replay)"
            ),
        }
    }

    /// `memory` or `streams`.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            #[cfg(feature = "streams")]
            Self::Streams(..) => "streams",
        }
    }

    /// How its streams are named.
    pub(crate) fn naming(&self) -> StreamNaming {
        let naming = match self {
            Self::Memory(memory) => memory.stream_naming(),
            #[cfg(feature = "streams")]
            Self::Streams(_, admin) => admin.stream_naming(),
        };
        naming.unwrap_or_default()
    }

    /// A connection of its own, as a process of its own would have: what a bus runs on,
    /// closed with the bus.
    pub(crate) fn connect(&self) -> Arc<dyn Transport> {
        match self {
            Self::Memory(memory) => Arc::new(memory.connection()),
            #[cfg(feature = "streams")]
            Self::Streams(config, _) => {
                Arc::new(pubsub::streams::StreamTransport::new((**config).clone()))
            }
        }
    }

    /// Creates `stream` (with [`retention`]) if it does not exist yet; on memory a stream
    /// comes with its first message, and asking about a missing one answers "empty".
    pub(crate) async fn ensure_stream(&self, stream: &str, producer: &str) -> anyhow::Result<()> {
        match self {
            Self::Memory(_) => {
                let _ = (stream, producer);
                Ok(())
            }
            #[cfg(feature = "streams")]
            Self::Streams(_, admin) => {
                admin
                    .producer(producer, stream)
                    .await
                    .with_context(|| format!("creating {stream}"))?;
                Ok(())
            }
        }
    }

    /// The offset of the last message of `stream`; `None` while it has none.
    pub(crate) async fn last_offset(&self, stream: &str) -> anyhow::Result<Option<u64>> {
        match self {
            Self::Memory(memory) if !has_stream(memory, stream) => Ok(None),
            Self::Memory(memory) => {
                let messages = memory.stream_messages(stream)?;
                Ok(messages.last().map(|(offset, _)| *offset))
            }
            #[cfg(feature = "streams")]
            Self::Streams(_, admin) => admin
                .last_offset(stream)
                .await
                .with_context(|| format!("reading the end of {stream}")),
        }
    }

    /// The offset `consumer` stored on `stream` (the last it handled), if any.
    pub(crate) async fn stored_offset(
        &self,
        stream: &str,
        consumer: &str,
    ) -> anyhow::Result<Option<u64>> {
        match self {
            Self::Memory(memory) if !has_stream(memory, stream) => Ok(None),
            Self::Memory(memory) => Ok(memory.stored_offset(stream, consumer)?),
            #[cfg(feature = "streams")]
            Self::Streams(_, admin) => admin
                .stored_offset(consumer, stream)
                .await
                .with_context(|| format!("reading the offset {consumer} stored on {stream}")),
        }
    }

    /// Makes `consumer` read `stream` from offset `next` when it next starts, whatever it
    /// stored (the operator's offset reset; the consumer must not be running).
    pub(crate) async fn reset_offset(
        &self,
        stream: &str,
        consumer: &str,
        next: u64,
    ) -> anyhow::Result<()> {
        match self {
            Self::Memory(memory) => Ok(memory.reset_offset(stream, consumer, next)?),
            #[cfg(feature = "streams")]
            Self::Streams(_, admin) => admin
                .reset_offset(stream, consumer, next)
                .await
                .with_context(|| format!("resetting {consumer} on {stream} to {next}")),
        }
    }

    /// The error stream of `consumer`, oldest first: each change it gave up on, with the
    /// reason and the offset it was read at.
    pub(crate) async fn error_stream(
        &self,
        consumer: &str,
    ) -> anyhow::Result<Vec<ErrorStreamEntry>> {
        let admin: &dyn Transport = match self {
            Self::Memory(memory) => memory,
            #[cfg(feature = "streams")]
            Self::Streams(_, admin) => admin,
        };
        let dead = admin
            .dead_letters(consumer)
            .await
            .with_context(|| format!("reading the error stream of {consumer}"))?;
        Ok(dead
            .into_iter()
            .map(|d| ErrorStreamEntry::read(d.message))
            .collect())
    }

    /// Closes the operator's connection.
    pub(crate) async fn close(&self) -> anyhow::Result<()> {
        match self {
            Self::Memory(memory) => memory.close().await?,
            #[cfg(feature = "streams")]
            Self::Streams(_, admin) => admin.close().await?,
        }
        Ok(())
    }
}

/// Whether the memory broker has `stream` (it comes with its first message or consumer).
fn has_stream(memory: &MemoryTransport, stream: &str) -> bool {
    memory.stream_names().iter().any(|s| s == stream)
}
