//! Retention of the in-memory streams ([`StreamRetention`]): the messages a log keeps,
//! with their offsets, trimmed by count, bytes and age as RabbitMQ trims a stream.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::metadata::Message;

/// Most messages a memory stream keeps by default ([`StreamRetention::max_length`]).
pub const DEFAULT_MEMORY_STREAM_LENGTH: usize = 1_000_000;

/// What each stream of [`MemoryTransport::stream_backed_with`] keeps, like the
/// retention RabbitMQ gives a stream when it is created (`pubsub::streams::Retention` for
/// the real transport): past any limit the oldest messages go, and the offsets of those
/// kept never change. A consumer whose next offset was removed goes on from the oldest
/// kept, with a warning.
///
/// - [`max_length`](Self::max_length): most messages (default
///   [`DEFAULT_MEMORY_STREAM_LENGTH`]; at least 1). RabbitMQ streams have no such limit;
///   it keeps a test's memory bounded.
/// - [`max_length_bytes`](Self::max_length_bytes): most bytes, the sum of the bodies
///   kept (`max-length-bytes`).
/// - [`max_age`](Self::max_age): messages appended longer ago than this go (`max-age`),
///   checked on every append and read (no background task).
///
/// The broker removes whole segments, so it keeps somewhat more than its limits say, and
/// never removes the segment being written; memory trims message by message, always
/// keeps the newest message under the count and byte limits, and removes even the newest
/// once it is too old. A segment size (`stream-max-segment-size-bytes`) has no meaning in
/// memory: there are no segments, hence no such setting.
///
/// ```
/// use std::time::Duration;
/// use pubsub::{MemoryTransport, memory::StreamRetention, stream::StreamNaming};
///
/// let retention = StreamRetention::default()
///     .max_length_bytes(64 * 1024 * 1024)
///     .max_age(Duration::from_secs(24 * 60 * 60));
/// assert_eq!(retention.max_length, pubsub::memory::DEFAULT_MEMORY_STREAM_LENGTH);
/// assert_eq!(retention.max_age, Some(Duration::from_secs(86_400)));
/// let broker = MemoryTransport::stream_backed_with(StreamNaming::default(), retention);
/// assert!(broker.stream_names().is_empty());
/// ```
///
/// [`MemoryTransport::stream_backed_with`]: crate::MemoryTransport::stream_backed_with
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamRetention {
    /// Most messages kept (0 is taken as 1).
    pub max_length: usize,
    /// Most bytes kept, the sum of the message bodies; `None`: no limit.
    pub max_length_bytes: Option<u64>,
    /// Messages appended longer ago than this go; `None`: no limit.
    pub max_age: Option<Duration>,
}

impl Default for StreamRetention {
    /// The last [`DEFAULT_MEMORY_STREAM_LENGTH`] messages, no byte or age limit.
    fn default() -> Self {
        Self {
            max_length: DEFAULT_MEMORY_STREAM_LENGTH,
            max_length_bytes: None,
            max_age: None,
        }
    }
}

impl StreamRetention {
    /// Keeps at most `messages` messages (0 is taken as 1).
    ///
    /// ```
    /// use pubsub::memory::StreamRetention;
    /// assert_eq!(StreamRetention::default().max_length(3).max_length, 3);
    /// ```
    #[must_use]
    pub fn max_length(mut self, messages: usize) -> Self {
        self.max_length = messages;
        self
    }

    /// Keeps at most `bytes` bytes of message bodies (`max-length-bytes`).
    ///
    /// ```
    /// use pubsub::memory::StreamRetention;
    /// let retention = StreamRetention::default().max_length_bytes(1024);
    /// assert_eq!(retention.max_length_bytes, Some(1024));
    /// ```
    #[must_use]
    pub fn max_length_bytes(mut self, bytes: u64) -> Self {
        self.max_length_bytes = Some(bytes);
        self
    }

    /// Removes the messages appended longer ago than `age` (`max-age`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use pubsub::memory::StreamRetention;
    /// let retention = StreamRetention::default().max_age(Duration::from_secs(60));
    /// assert_eq!(retention.max_age, Some(Duration::from_secs(60)));
    /// ```
    #[must_use]
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }
}

/// One message of a log and when it was appended.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) message: Arc<Message>,
    pub(super) appended: SystemTime,
}

/// The messages a log keeps, by offset, under its retention.
#[derive(Debug)]
pub(super) struct Entries {
    retention: StreamRetention,
    /// The offset of `kept[0]`.
    first: u64,
    kept: VecDeque<Entry>,
    /// The sum of the kept bodies' sizes.
    bytes: u64,
}

impl Entries {
    pub(super) fn new(retention: StreamRetention) -> Self {
        Self {
            retention,
            first: 0,
            kept: VecDeque::new(),
            bytes: 0,
        }
    }

    /// The first offset kept.
    pub(super) fn first(&self) -> u64 {
        self.first
    }

    /// The offset the next message gets.
    pub(super) fn end(&self) -> u64 {
        self.first + self.kept.len() as u64
    }

    /// The entry at `offset`, if kept.
    pub(super) fn get(&self, offset: u64) -> Option<&Entry> {
        let index = usize::try_from(offset.checked_sub(self.first)?).ok()?;
        self.kept.get(index)
    }

    /// The kept entries with their offsets, oldest first.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u64, &Entry)> {
        (self.first..).zip(self.kept.iter())
    }

    /// Appends `message` at `now`; returns its offset. Past the retention, the oldest go.
    pub(super) fn push(&mut self, message: Arc<Message>, now: SystemTime) -> u64 {
        let offset = self.end();
        self.bytes += body_size(&message);
        self.kept.push_back(Entry {
            message,
            appended: now,
        });
        let max_length = self.retention.max_length.max(1);
        let max_bytes = self.retention.max_length_bytes.unwrap_or(u64::MAX);
        while self.kept.len() > max_length || (self.bytes > max_bytes && self.kept.len() > 1) {
            self.pop();
        }
        self.expire(now);
        offset
    }

    /// Removes the messages older than the maximum age at `now`.
    pub(super) fn expire(&mut self, now: SystemTime) {
        let Some(max_age) = self.retention.max_age else {
            return;
        };
        // a clock that went back makes nothing older
        while self.kept.front().is_some_and(|entry| {
            now.duration_since(entry.appended)
                .is_ok_and(|age| age > max_age)
        }) {
            self.pop();
        }
    }

    fn pop(&mut self) {
        if let Some(entry) = self.kept.pop_front() {
            self.bytes -= body_size(&entry.message);
            self.first += 1;
        }
    }
}

fn body_size(message: &Message) -> u64 {
    message.body.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn message(body: &'static [u8]) -> Arc<Message> {
        Arc::new(Message::new("room.said", body))
    }

    fn offsets(entries: &Entries) -> Vec<u64> {
        entries.iter().map(|(offset, _)| offset).collect()
    }

    fn push(entries: &mut Entries, bodies: &[&'static [u8]], now: SystemTime) {
        for body in bodies {
            entries.push(message(body), now);
        }
    }

    #[test]
    fn past_the_count_the_oldest_go_and_offsets_stay() {
        let mut entries = Entries::new(StreamRetention::default().max_length(3));
        for expected in 0..5 {
            assert_eq!(entries.push(message(b"x"), SystemTime::now()), expected);
        }
        assert_eq!(offsets(&entries), [2, 3, 4]);
        assert_eq!((entries.first(), entries.end()), (2, 5));
        assert!(entries.get(1).is_none(), "removed");
        assert!(entries.get(2).is_some());
        assert!(entries.get(5).is_none(), "not yet appended");
    }

    #[test]
    fn a_count_of_zero_keeps_the_newest() {
        let mut entries = Entries::new(StreamRetention::default().max_length(0));
        push(&mut entries, &[b"a", b"b"], SystemTime::now());
        assert_eq!(offsets(&entries), [1]);
    }

    #[test]
    fn past_the_bytes_the_oldest_go_until_the_bodies_fit() {
        let mut entries = Entries::new(StreamRetention::default().max_length_bytes(10));
        push(&mut entries, &[b"1234", b"1234"], SystemTime::now());
        assert_eq!(offsets(&entries), [0, 1], "8 bytes fit");
        push(&mut entries, &[b"123"], SystemTime::now());
        assert_eq!(
            offsets(&entries),
            [1, 2],
            "11 bytes do not: the oldest goes"
        );
        push(&mut entries, &[b"12345678"], SystemTime::now());
        assert_eq!(offsets(&entries), [3], "each removal counts its own size");
        assert_eq!(entries.bytes, 8);
    }

    #[test]
    fn a_message_larger_than_the_bytes_is_kept_alone() {
        let mut entries = Entries::new(StreamRetention::default().max_length_bytes(4));
        push(&mut entries, &[b"12", b"123456"], SystemTime::now());
        assert_eq!(offsets(&entries), [1]);
        push(&mut entries, &[b"1"], SystemTime::now());
        assert_eq!(
            offsets(&entries),
            [2],
            "the large one goes once something follows"
        );
    }

    #[test]
    fn messages_older_than_the_age_go_on_append() {
        let start = SystemTime::now();
        let mut entries = Entries::new(StreamRetention::default().max_age(10 * SECOND));
        push(&mut entries, &[b"old"], start);
        push(&mut entries, &[b"newer"], start + 5 * SECOND);
        push(&mut entries, &[b"newest"], start + 11 * SECOND);
        assert_eq!(offsets(&entries), [1, 2], "11 s old goes, 6 s old stays");
        assert_eq!(entries.bytes, 11);
    }

    #[test]
    fn messages_older_than_the_age_go_when_read_later() {
        let start = SystemTime::now();
        let mut entries = Entries::new(StreamRetention::default().max_age(10 * SECOND));
        push(&mut entries, &[b"a", b"b"], start);
        entries.expire(start + 10 * SECOND);
        assert_eq!(offsets(&entries), [0, 1], "exactly the age is not older");
        entries.expire(start - SECOND);
        assert_eq!(
            offsets(&entries),
            [0, 1],
            "a clock gone back removes nothing"
        );
        entries.expire(start + 11 * SECOND);
        assert!(offsets(&entries).is_empty(), "even the newest goes");
        assert_eq!((entries.first(), entries.end()), (2, 2));
        assert_eq!(entries.push(message(b"c"), start + 12 * SECOND), 2);
    }

    #[test]
    fn without_an_age_nothing_expires() {
        let start = SystemTime::now();
        let mut entries = Entries::new(StreamRetention::default());
        push(&mut entries, &[b"a"], start);
        entries.expire(start + 365 * 24 * 3600 * SECOND);
        assert_eq!(offsets(&entries), [0]);
    }
}
