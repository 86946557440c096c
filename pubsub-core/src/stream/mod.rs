//! Streams in the core: how streams are named, how a service reads them, what goes to its
//! error stream, and typed event streams for code that iterates.
//!
//! A stream-backed transport ([`Transport::stream_naming`](crate::Transport::stream_naming)
//! is `Some`) appends each event to the stream of its domain ([`StreamNaming`]).

mod error_stream;
mod naming;

pub use error_stream::{ErrorStreamEntry, HEADER_STREAM, HEADER_STREAM_OFFSET};
pub use naming::{DEFAULT_STREAM_PREFIX, StreamNaming, UnmappedPattern};
