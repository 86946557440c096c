//! Streams in the core: how streams are named, how a service reads them, what goes to its
//! error stream, and typed event streams for code that iterates.
//!
//! A stream-backed transport ([`Transport::stream_naming`](crate::transport::Transport::stream_naming)
//! is `Some`: the in-memory [`MemoryTransport::stream_backed`](crate::MemoryTransport::stream_backed),
//! and the RabbitMQ Streams transport) appends each event to the stream of its domain. A
//! bus on it reads, with one consumer per stream named after its service, the streams its
//! handlers' patterns need ([`StreamNaming`], [`StreamConsumption`]).

mod consumption;
mod error_stream;
mod event_stream;
mod naming;
mod partition;
mod retention;

pub use consumption::StreamConsumption;
pub use error_stream::ErrorStreamEntry;
pub use event_stream::{EventStream, StreamedEvent};
pub use naming::{DEFAULT_STREAM_PREFIX, StreamNaming, UnmappedPattern};
pub use retention::Retention;

pub use crate::transport::subscription::{StartAt, StoreOffsets};
