//! [`Retention`]: how much of its history a stream keeps, one setting for every
//! stream-backed transport.

use std::time::Duration;

/// How much of its history a stream keeps, set when the stream is created (RabbitMQ keeps
/// an existing stream's settings); `None` leaves the broker's default. Past a limit the
/// oldest messages go, and the offsets of those kept never change: a consumer whose next
/// offset was removed goes on from the oldest message kept.
///
/// The RabbitMQ Streams transport creates its streams with it
/// (`StreamConfig::retention`); the memory broker applies it to its streams
/// ([`MemoryTransport::stream_backed_with`](crate::MemoryTransport::stream_backed_with)),
/// message by message where RabbitMQ removes whole segments, so RabbitMQ keeps somewhat
/// more than its limits say.
///
/// ```
/// use std::time::Duration;
/// use pubsub::stream::Retention;
///
/// let retention = Retention::default()
///     .max_length_bytes(64 * 1024 * 1024)
///     .max_age(Duration::from_secs(24 * 60 * 60));
/// assert_eq!(retention.max_age, Some(Duration::from_secs(86_400)));
/// assert_eq!(retention.max_segment_size_bytes, None);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retention {
    /// `max-length-bytes`: the most bytes the stream keeps (the sum of the message bodies
    /// in memory); the oldest messages go past it.
    pub max_length_bytes: Option<u64>,
    /// `max-age`: messages appended longer ago than this go (RabbitMQ counts whole
    /// seconds; memory checks on every append and read).
    pub max_age: Option<Duration>,
    /// `stream-max-segment-size-bytes`: the size of the broker's segment files. Memory has
    /// no segments and ignores it.
    pub max_segment_size_bytes: Option<u64>,
}

impl Retention {
    /// Keeps at most `bytes` bytes (`max-length-bytes`).
    #[must_use]
    pub fn max_length_bytes(mut self, bytes: u64) -> Self {
        self.max_length_bytes = Some(bytes);
        self
    }

    /// Removes the messages appended longer ago than `age` (`max-age`).
    #[must_use]
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// The broker's segment size (`stream-max-segment-size-bytes`).
    #[must_use]
    pub fn max_segment_size_bytes(mut self, bytes: u64) -> Self {
        self.max_segment_size_bytes = Some(bytes);
        self
    }
}
