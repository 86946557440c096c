//! The messages a memory stream keeps, with their offsets, trimmed by its [`Retention`]
//! (bytes and age, as RabbitMQ trims a stream) and by [`MAX_MEMORY_STREAM_LENGTH`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::SystemTime;

use crate::metadata::Message;
use crate::stream::Retention;

/// Most messages a memory stream keeps, whatever its [`Retention`]: RabbitMQ streams have
/// no such limit; it keeps a test's or a tool's memory bounded.
pub const MAX_MEMORY_STREAM_LENGTH: usize = 1_000_000;

/// One message of a log and when it was appended.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) message: Arc<Message>,
    pub(super) appended: SystemTime,
}

/// The messages a log keeps, by offset, under its retention.
#[derive(Debug)]
pub(super) struct Entries {
    retention: Retention,
    /// Most messages kept (at least 1).
    max_length: usize,
    /// The offset of `kept[0]`.
    first: u64,
    kept: VecDeque<Entry>,
    /// The sum of the kept bodies' sizes.
    bytes: u64,
}

impl Entries {
    pub(super) fn new(retention: Retention, max_length: usize) -> Self {
        Self {
            retention,
            max_length: max_length.max(1),
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
        let max_length = self.max_length;
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
    use std::time::Duration;

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
        let mut entries = Entries::new(Retention::default(), 3);
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
        let mut entries = Entries::new(Retention::default(), 0);
        push(&mut entries, &[b"a", b"b"], SystemTime::now());
        assert_eq!(offsets(&entries), [1]);
    }

    #[test]
    fn past_the_bytes_the_oldest_go_until_the_bodies_fit() {
        let mut entries = Entries::new(
            Retention::default().max_length_bytes(10),
            MAX_MEMORY_STREAM_LENGTH,
        );
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
        let mut entries = Entries::new(
            Retention::default().max_length_bytes(4),
            MAX_MEMORY_STREAM_LENGTH,
        );
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
        let mut entries = Entries::new(
            Retention::default().max_age(10 * SECOND),
            MAX_MEMORY_STREAM_LENGTH,
        );
        push(&mut entries, &[b"old"], start);
        push(&mut entries, &[b"newer"], start + 5 * SECOND);
        push(&mut entries, &[b"newest"], start + 11 * SECOND);
        assert_eq!(offsets(&entries), [1, 2], "11 s old goes, 6 s old stays");
        assert_eq!(entries.bytes, 11);
    }

    #[test]
    fn messages_older_than_the_age_go_when_read_later() {
        let start = SystemTime::now();
        let mut entries = Entries::new(
            Retention::default().max_age(10 * SECOND),
            MAX_MEMORY_STREAM_LENGTH,
        );
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
        let mut entries = Entries::new(Retention::default(), MAX_MEMORY_STREAM_LENGTH);
        push(&mut entries, &[b"a"], start);
        entries.expire(start + 365 * 24 * 3600 * SECOND);
        assert_eq!(offsets(&entries), [0]);
    }
}
