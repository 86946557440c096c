//! One in-memory stream: an append-only log with offsets, retention, named consumer
//! offsets, and its readers (single active consumer among readers of one name).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::queue::BrokerSignal;
use crate::error::TransportError;
use crate::metadata::Message;
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
    /// The offset of `entries[0]`.
    first: u64,
    entries: VecDeque<Entry>,
    /// Retention: most messages kept; the oldest go first.
    max_length: usize,
    /// Stored offsets by consumer name: the last offset handled.
    offsets: HashMap<String, u64>,
    /// Where a named consumer starting at `Next` begins, fixed when it was declared.
    pinned: HashMap<String, u64>,
    /// Attached readers by id (in attach order: a single active consumer's successor is
    /// the oldest waiting one).
    readers: BTreeMap<u64, Reader>,
}

#[derive(Debug)]
struct Entry {
    message: Arc<Message>,
    appended: SystemTime,
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
}

/// What a reader gets from [`Log::read`].
pub(crate) enum Read {
    Message { message: Arc<Message>, offset: u64 },
    Wait,
    Cancelled,
}

impl Log {
    pub(crate) fn new(name: String, max_length: usize, signal: Arc<BrokerSignal>) -> Self {
        Self {
            name,
            state: Mutex::new(LogState {
                first: 0,
                entries: VecDeque::new(),
                max_length: max_length.max(1),
                offsets: HashMap::new(),
                pinned: HashMap::new(),
                readers: BTreeMap::new(),
            }),
            changed: Notify::new(),
            signal,
        }
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn changed(&self) {
        self.changed.notify_waiters();
        self.signal.bump();
    }

    /// Appends a message; returns its offset. Past the retention, the oldest goes.
    pub(crate) fn append(&self, message: Arc<Message>) -> u64 {
        let offset = {
            let mut state = self.lock();
            let offset = state.end();
            state.entries.push_back(Entry {
                message,
                appended: SystemTime::now(),
            });
            while state.entries.len() > state.max_length {
                state.entries.pop_front();
                state.first += 1;
            }
            offset
        };
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
            },
        );
        drop(state);
        self.changed();
    }

    /// The next message for reader `id`, if it may take one.
    pub(crate) fn read(&self, id: u64) -> Read {
        let mut state = self.lock();
        let (first, end) = (state.first, state.end());
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
        if offset >= end {
            return Read::Wait;
        }
        reader.commits.admit(offset);
        reader.in_flight += 1;
        let index = usize::try_from(offset - first).unwrap_or(usize::MAX);
        match state.entries.get(index) {
            Some(entry) => Read::Message {
                message: Arc::clone(&entry.message),
                offset,
            },
            None => Read::Wait,
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

    /// Busy: a reader holds deliveries, or an active one has messages left to read.
    pub(crate) fn is_busy(&self) -> bool {
        let state = self.lock();
        let end = state.end();
        state.readers.values().any(|r| {
            r.in_flight > 0 || (r.active && !r.cancelled && r.commits.next().max(state.first) < end)
        })
    }

    /// The stored offset of consumer `name`.
    pub(crate) fn stored_offset(&self, name: &str) -> Option<u64> {
        self.lock().offsets.get(name).copied()
    }

    /// Stores `offset` for consumer `name` (an operator's reset); `None` forgets it.
    pub(crate) fn store_offset(&self, name: &str, offset: Option<u64>) {
        let mut state = self.lock();
        match offset {
            Some(offset) => state.offsets.insert(name.to_owned(), offset),
            None => state.offsets.remove(name),
        };
        drop(state);
        self.changed();
    }

    /// The messages the stream holds, with their offsets, oldest first.
    pub(crate) fn messages(&self) -> Vec<(u64, Message)> {
        let state = self.lock();
        (state.first..)
            .zip(state.entries.iter())
            .map(|(offset, entry)| (offset, Message::clone(&entry.message)))
            .collect()
    }

    /// The first offset kept and the offset the next message gets.
    pub(crate) fn bounds(&self) -> (u64, u64) {
        let state = self.lock();
        (state.first, state.end())
    }
}

impl LogState {
    fn end(&self) -> u64 {
        self.first + self.entries.len() as u64
    }

    /// The first offset a consumer named `name` reads: after its stored offset, else
    /// where `start` says.
    fn start_of(&self, name: &str, start: StartAt, store: StoreOffsets) -> u64 {
        if store != StoreOffsets::Never {
            if let Some(stored) = self.offsets.get(name) {
                return stored + 1;
            }
            if let (StartAt::Next, Some(pinned)) = (start, self.pinned.get(name)) {
                return *pinned;
            }
        }
        let end = self.end();
        match start {
            StartAt::First => self.first,
            // the last "chunk": in memory, the last message
            StartAt::Last => end.saturating_sub(1).max(self.first),
            StartAt::Next => end,
            StartAt::Offset(offset) => offset.max(self.first),
            StartAt::Timestamp(at) => self
                .entries
                .iter()
                .position(|e| e.appended >= at)
                .map_or(end, |index| self.first + index as u64),
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
