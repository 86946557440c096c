//! One in-memory stream: an append-only log with offsets, retention, named consumer
//! offsets, and its readers (single active consumer among readers of one name).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::retention::Entries;
use crate::memory::signal::BrokerSignal;
use crate::metadata::Message;
use crate::stream::Retention;
use crate::transport::TransportError;
use crate::transport::{OffsetCommits, StartAt, StoreOffsets, StreamSource};

/// An append-only log shared by the broker and its readers.
#[derive(Debug)]
pub(crate) struct Log {
    pub(crate) name: String,
    state: Mutex<LogState>,
    /// Woken on every change a reader may be waiting for.
    pub(crate) changed: Notify,
    signal: Arc<BrokerSignal>,
}

#[derive(Debug)]
struct LogState {
    /// The messages kept, under the stream's retention.
    entries: Entries,
    /// Stored offsets by consumer name: the last offset handled.
    offsets: HashMap<String, u64>,
    /// Where a named consumer starting at `Next` begins, fixed when it was declared.
    pinned: HashMap<String, u64>,
    /// Attached readers by id (in attach order: a single active consumer's successor is
    /// the oldest waiting one).
    readers: BTreeMap<u64, Reader>,
}

#[derive(Debug)]
struct Reader {
    name: String,
    start: StartAt,
    single_active: bool,
    store: StoreOffsets,
    active: bool,
    cancelled: bool,
    prefetch: usize,
    in_flight: usize,
    /// Where it reads next ([`OffsetCommits::next`]) and what it stores.
    commits: OffsetCommits,
    /// What it reads: the messages with these keys ([`StreamSource::only_keys`]); all
    /// when empty. The others are passed over in the broker, as settled.
    source: StreamSource,
}

/// What a reader gets from [`Log::read`].
pub(crate) enum Read {
    Message { message: Arc<Message>, offset: u64 },
    Wait,
    Cancelled,
}

impl Log {
    pub(crate) fn new(
        name: String,
        retention: Retention,
        max_length: usize,
        signal: Arc<BrokerSignal>,
    ) -> Self {
        Self {
            name,
            state: Mutex::new(LogState {
                entries: Entries::new(retention, max_length),
                offsets: HashMap::new(),
                pinned: HashMap::new(),
                readers: BTreeMap::new(),
            }),
            changed: Notify::new(),
            signal,
        }
    }

    /// The state, without the messages too old at this moment.
    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.lock_at(SystemTime::now())
    }

    /// The state, without the messages too old at `now` (age retention is applied on every
    /// use of the log: there is no background task).
    fn lock_at(&self, now: SystemTime) -> MutexGuard<'_, LogState> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.entries.expire(now);
        state
    }

    fn changed(&self) {
        self.changed.notify_waiters();
        self.signal.bump();
    }

    /// Appends a message; returns its offset. Past the retention, the oldest go.
    pub(crate) fn append(&self, message: Arc<Message>) -> u64 {
        let now = SystemTime::now();
        let offset = self.lock_at(now).entries.push(message, now);
        self.changed();
        offset
    }

    /// Fixes where a new named consumer starting at `Next` begins: after what the stream
    /// holds now.
    pub(crate) fn declare_reader(&self, name: &str, source: &StreamSource) {
        if source.start != StartAt::Next || source.store == StoreOffsets::Never {
            return;
        }
        let mut state = self.lock();
        if !state.offsets.contains_key(name) && !state.pinned.contains_key(name) {
            let end = state.end();
            state.pinned.insert(name.to_owned(), end);
        }
    }

    /// Attaches reader `id` named `name`. With single active consumer on, it reads only
    /// once no other reader of that name is active.
    pub(crate) fn attach(&self, id: u64, name: &str, source: &StreamSource, prefetch: usize) {
        let mut state = self.lock();
        let active = !source.single_active
            || !state
                .readers
                .values()
                .any(|r| r.name == name && r.single_active && r.active);
        let first = state.start_of(name, source.start, source.store);
        if source.store != StoreOffsets::Never
            && let Some(&stored) = state.offsets.get(name)
        {
            source.note_stored_offset_wins(name, stored);
        }
        state.readers.insert(
            id,
            Reader {
                name: name.to_owned(),
                start: source.start,
                single_active: source.single_active,
                store: source.store,
                active,
                cancelled: false,
                prefetch: prefetch.max(1),
                in_flight: 0,
                commits: OffsetCommits::new(source.store, first),
                source: source.clone(),
            },
        );
        drop(state);
        self.changed();
    }

    /// The next message for reader `id`, if it may take one.
    pub(crate) fn read(&self, id: u64) -> Read {
        self.read_at(id, SystemTime::now())
    }

    /// [`read`](Self::read) at `now`, as far as age retention is concerned.
    fn read_at(&self, id: u64, now: SystemTime) -> Read {
        let mut guard = self.lock_at(now);
        let state = &mut *guard;
        let (first, end) = (state.entries.first(), state.end());
        let Some(reader) = state.readers.get_mut(&id) else {
            return Read::Cancelled;
        };
        if reader.cancelled {
            return Read::Cancelled;
        }
        if !reader.active || reader.in_flight >= reader.prefetch {
            return Read::Wait;
        }
        let mut offset = reader.commits.next();
        if offset < first {
            tracing::warn!(
                stream = %self.name,
                consumer = %reader.name,
                lost = first - offset,
                "retention removed messages this consumer had not read; it goes on from the oldest kept"
            );
            offset = first;
        }
        loop {
            if offset >= end {
                return Read::Wait;
            }
            reader.commits.admit(offset);
            let Some(entry) = state.entries.get(offset) else {
                return Read::Wait;
            };
            if reader.source.wants_key(&entry.message.metadata.key) {
                reader.in_flight += 1;
                return Read::Message {
                    message: Arc::clone(&entry.message),
                    offset,
                };
            }
            // filtered in the broker: passed over as if handled
            if let Some(store) = reader.commits.settled(offset, Instant::now()) {
                state.offsets.insert(reader.name.clone(), store);
            }
            offset += 1;
        }
    }

    /// The bus settled reader `id`'s delivery at `offset`: the offset may be stored.
    pub(crate) fn settled(&self, id: u64, offset: u64) -> Result<(), TransportError> {
        {
            let mut guard = self.lock();
            let state = &mut *guard;
            let Some(reader) = state.readers.get_mut(&id) else {
                return Err(TransportError::settle(format!(
                    "the consumer of stream {} that took offset {offset} is gone; its stored \
                     offset decides where reading resumes",
                    self.name
                )));
            };
            reader.in_flight = reader.in_flight.saturating_sub(1);
            if let Some(store) = reader.commits.settled(offset, Instant::now()) {
                state.offsets.insert(reader.name.clone(), store);
            }
        }
        self.changed();
        Ok(())
    }

    /// The store timer of reader `id`; `false` once the reader is gone.
    pub(crate) fn tick(&self, id: u64) -> bool {
        let mut state = self.lock();
        let state = &mut *state;
        let Some(reader) = state.readers.get_mut(&id) else {
            return false;
        };
        if let Some(store) = reader.commits.due(Instant::now()) {
            state.offsets.insert(reader.name.clone(), store);
            self.signal.bump();
        }
        true
    }

    /// Stops deliveries to reader `id`; what it holds can still be settled.
    pub(crate) fn cancel(&self, id: u64) {
        if let Some(reader) = self.lock().readers.get_mut(&id) {
            reader.cancelled = true;
        }
        self.changed();
    }

    /// Detaches reader `id`, storing its committable offset if `store` (a clean close;
    /// a dropped consumer or closed connection stores nothing, as on a crash). With single
    /// active consumer, the oldest waiting reader of its name takes over from the stored
    /// offset.
    pub(crate) fn detach(&self, id: u64, store: bool) {
        let mut state = self.lock();
        let Some(mut reader) = state.readers.remove(&id) else {
            return;
        };
        if store && let Some(offset) = reader.commits.closing() {
            state.offsets.insert(reader.name.clone(), offset);
        }
        if reader.single_active && reader.active {
            state.activate_successor(&reader.name);
        }
        drop(state);
        self.changed();
    }

    /// Whether reader `id` is still attached.
    pub(crate) fn has_reader(&self, id: u64) -> bool {
        self.lock().readers.contains_key(&id)
    }

    /// Busy: a reader holds deliveries, or an active one has messages left to read.
    pub(crate) fn is_busy(&self) -> bool {
        let state = self.lock();
        let end = state.end();
        state.readers.values().any(|r| {
            r.in_flight > 0
                || (r.active && !r.cancelled && r.commits.next().max(state.entries.first()) < end)
        })
    }

    /// The stored offset of consumer `name`.
    pub(crate) fn stored_offset(&self, name: &str) -> Option<u64> {
        self.lock().offsets.get(name).copied()
    }

    /// Stores `offset` for consumer `name` (an operator's reset).
    pub(crate) fn store_offset(&self, name: &str, offset: u64) {
        self.lock().offsets.insert(name.to_owned(), offset);
        self.changed();
    }

    /// The messages the stream holds, with their offsets, oldest first.
    pub(crate) fn messages(&self) -> Vec<(u64, Message)> {
        let state = self.lock();
        state
            .entries
            .iter()
            .map(|(offset, entry)| (offset, Message::clone(&entry.message)))
            .collect()
    }

    /// The first offset kept and the offset the next message gets.
    pub(crate) fn bounds(&self) -> (u64, u64) {
        let state = self.lock();
        (state.entries.first(), state.end())
    }
}

impl LogState {
    fn end(&self) -> u64 {
        self.entries.end()
    }

    /// The first offset a consumer named `name` reads: after its stored offset, else
    /// where `start` says.
    fn start_of(&self, name: &str, start: StartAt, store: StoreOffsets) -> u64 {
        if store != StoreOffsets::Never {
            if let Some(stored) = self.offsets.get(name) {
                // u64::MAX: reset to read from offset 0 (as the Streams transport stores it)
                return stored.wrapping_add(1);
            }
            if let (StartAt::Next, Some(pinned)) = (start, self.pinned.get(name)) {
                return *pinned;
            }
        }
        let (first, end) = (self.entries.first(), self.end());
        match start {
            StartAt::First => first,
            // the last "chunk": in memory, the last message
            StartAt::Last => end.saturating_sub(1).max(first),
            StartAt::Next => end,
            StartAt::Offset(offset) => offset.max(first),
            StartAt::Timestamp(at) => self
                .entries
                .iter()
                .find(|(_, e)| e.appended >= at)
                .map_or(end, |(offset, _)| offset),
        }
    }

    /// Makes the oldest waiting single-active reader named `name` active, reading from the
    /// stored offset.
    fn activate_successor(&mut self, name: &str) {
        let Some(id) = self
            .readers
            .iter()
            .find(|(_, r)| r.name == name && r.single_active && !r.cancelled && !r.active)
            .map(|(id, _)| *id)
        else {
            return;
        };
        let Some(reader) = self.readers.get(&id) else {
            return;
        };
        let from = self.start_of(name, reader.start, reader.store);
        if let Some(reader) = self.readers.get_mut(&id) {
            reader.active = true;
            reader.commits = OffsetCommits::new(reader.store, from);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::transport::Subscription;

    const READER: u64 = 1;

    fn log(retention: Retention, max_length: usize) -> Log {
        Log::new("s".to_owned(), retention, max_length, Arc::default())
    }

    fn append(log: &Log, bodies: &[&'static [u8]]) {
        for body in bodies {
            log.append(Arc::new(Message::new("room.said", *body)));
        }
    }

    /// Attaches reader [`READER`] named `svc`, starting at the first offset.
    fn attach(log: &Log) {
        let subscription =
            Subscription::stream("svc", StreamSource::new("s").start_at(StartAt::First));
        let source = subscription.stream_source().expect("a stream subscription");
        log.attach(READER, "svc", source, 10);
    }

    fn offset(read: Read) -> Option<u64> {
        match read {
            Read::Message { offset, .. } => Some(offset),
            Read::Wait | Read::Cancelled => None,
        }
    }

    #[test]
    fn a_consumer_behind_count_retention_goes_on_from_the_oldest_kept() {
        let log = log(Retention::default(), 2);
        append(&log, &[b"a"]);
        attach(&log);
        append(&log, &[b"b", b"c", b"d"]);
        assert_eq!(log.bounds(), (2, 4));
        assert_eq!(offset(log.read(READER)), Some(2), "0 and 1 are gone");
        assert_eq!(offset(log.read(READER)), Some(3));
        assert_eq!(offset(log.read(READER)), None, "waits for more");
    }

    #[test]
    fn a_consumer_behind_bytes_retention_goes_on_from_the_oldest_kept() {
        let log = log(
            Retention::default().max_length_bytes(6),
            super::super::retention::MAX_MEMORY_STREAM_LENGTH,
        );
        attach(&log);
        append(&log, &[b"aaa"]);
        assert_eq!(offset(log.read(READER)), Some(0));
        append(&log, &[b"bbb", b"ccc", b"ddd"]);
        assert_eq!(log.bounds(), (2, 4), "two bodies of 3 bytes fit");
        assert_eq!(offset(log.read(READER)), Some(2), "1 is gone");
    }

    #[test]
    fn age_retention_applies_on_read() {
        let log = log(
            Retention::default().max_age(Duration::from_secs(60)),
            super::super::retention::MAX_MEMORY_STREAM_LENGTH,
        );
        append(&log, &[b"a", b"b"]);
        attach(&log);
        let later = SystemTime::now() + Duration::from_secs(61);
        assert_eq!(offset(log.read_at(READER, later)), None, "both expired");
        assert_eq!(log.bounds(), (2, 2), "offsets go on after the expired");
        append(&log, &[b"c"]);
        assert_eq!(offset(log.read(READER)), Some(2));
    }

    #[test]
    fn a_stored_offset_behind_retention_resumes_at_the_oldest_kept() {
        let log = log(Retention::default(), 1);
        log.store_offset("svc", 0);
        append(&log, &[b"a", b"b", b"c"]);
        attach(&log);
        assert_eq!(offset(log.read(READER)), Some(2));
    }
}
