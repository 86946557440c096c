//! What a consumer consumes: a service queue bound to patterns, or a stream read by a named
//! consumer.

use std::time::{Duration, SystemTime};

/// What a bus consumes, and how many deliveries it takes at once.
///
/// ```
/// use pubsub::stream::StartAt;
/// use pubsub::transport::{StreamSource, Subscription};
/// // the queue of service "billing", bound to two patterns
/// let queue = Subscription::queue("billing", ["order.*", "payment.#"]);
/// assert_eq!(queue.patterns(), ["order.*", "payment.#"]);
/// // stream "orders", read by consumer "billing" from its stored offset (or the first)
/// let stream = Subscription::stream("billing", "orders");
/// // the same, starting at the first message when no offset is stored
/// let from_first =
///     Subscription::stream("billing", StreamSource::new("orders").start_at(StartAt::First));
/// # let _ = (stream, from_first);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Subscription {
    /// The service: queue or consumer name; buses with the same service share its messages.
    pub service: String,
    /// Where the messages come from.
    pub source: Source,
    /// How many deliveries may be unsettled at once (at least 1).
    pub prefetch: u16,
}

/// Where a subscription's messages come from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// The service's queue, bound to the topic exchange with patterns.
    Queue(QueueSource),
    /// A stream (or super stream) read by a named consumer that keeps its offset.
    Stream(StreamSource),
    /// The service's dead-letter queue: what its handlers gave up on, each message with
    /// its reason and failed handlers, for a repair or alerting consumer.
    DeadLetters,
    /// A private queue of this consumer alone, bound to patterns: the events published
    /// while it exists, and nothing is dead-lettered. It is removed when the consumer is
    /// dropped or closed ([`Bus::subscribe`](crate::Bus::subscribe) on a queue transport).
    Live(LiveSource),
}

/// The most events a live subscription's queue holds unread (ready, not yet delivered):
/// past it the oldest are dropped, so that a reader that stopped reading (a stuck
/// WebSocket) cannot fill the broker's memory (RabbitMQ's `x-max-length` with
/// `x-overflow: drop-head`).
pub const LIVE_QUEUE_MAX_LENGTH: usize = 10_000;

/// A consumer's private queue: on AMQP an exclusive, auto-delete classic queue, holding at
/// most [`LIVE_QUEUE_MAX_LENGTH`] events unread.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LiveSource {
    /// The queue's name, unique to this subscription (`{service}.live.{id}`).
    pub queue: String,
    /// Topic patterns the queue is bound with.
    pub patterns: Vec<String>,
}

/// A service queue.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueSource {
    /// Topic patterns the queue is bound with.
    pub patterns: Vec<String>,
}

/// A stream read by a named consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamSource {
    /// The stream (or super stream) name.
    pub stream: String,
    /// Where to start when the consumer has no stored offset.
    pub start: StartAt,
    /// One consumer of the service's instances reads at a time; another takes over from
    /// the stored offset when it stops.
    pub single_active: bool,
    /// The stream is a super stream: its partitions are consumed, each with its own offset.
    pub super_stream: bool,
    /// When the consumer stores its offset (named after the service); with
    /// [`StoreOffsets::Never`] it is anonymous: it neither reads nor stores one.
    pub store: StoreOffsets,
    /// When not empty, only the messages whose routing key (the instance key, e.g.
    /// `session.42.code_updated`) is one of these are delivered. A transport may ask the
    /// broker to skip what cannot hold them (RabbitMQ's stream filtering, which is
    /// probabilistic), and checks every message exactly before it delivers it.
    pub only_keys: Vec<String>,
}

impl StreamSource {
    /// `stream`, read from [`StartAt::Next`] when no offset is stored, storing offsets by
    /// [`StoreOffsets::default`]; not a super stream, no single active consumer.
    pub fn new(stream: impl Into<String>) -> Self {
        Self {
            stream: stream.into(),
            start: StartAt::default(),
            single_active: false,
            super_stream: false,
            store: StoreOffsets::default(),
            only_keys: Vec::new(),
        }
    }

    /// Delivers only the messages whose routing key is one of `keys` (see
    /// [`only_keys`](Self::only_keys)).
    #[must_use]
    pub fn only_keys<I, S>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.only_keys = keys.into_iter().map(Into::into).collect();
        self
    }

    /// Whether a message with routing key `key` passes [`only_keys`](Self::only_keys).
    pub fn wants_key(&self, key: &str) -> bool {
        self.only_keys.is_empty() || self.only_keys.iter().any(|k| k == key)
    }

    /// Where the consumer starts when it has no stored offset.
    #[must_use]
    pub fn start_at(mut self, start: StartAt) -> Self {
        self.start = start;
        self
    }

    /// Single active consumer: one instance of the service reads at a time.
    #[must_use]
    pub fn single_active(mut self, enabled: bool) -> Self {
        self.single_active = enabled;
        self
    }

    /// When the consumer stores its offset.
    #[must_use]
    pub fn store_offsets(mut self, store: StoreOffsets) -> Self {
        self.store = store;
        self
    }

    /// Reads a super stream's partitions, each with its own offset.
    #[must_use]
    pub fn super_stream(mut self, enabled: bool) -> Self {
        self.super_stream = enabled;
        self
    }

    /// For a transport opening consumer `consumer` on this stream after the offset it had
    /// stored (`stored`, the last one handled): when a start position other than the
    /// default was asked for, logs at `info` that the stored offset decides instead, with
    /// both values and how to start elsewhere, so that `StartAt::Offset(0)` on a service
    /// that ran before does not silently read nothing old.
    pub fn note_stored_offset_wins(&self, consumer: &str, stored: u64) {
        if self.start == StartAt::Next {
            return;
        }
        // u64::MAX is stored by a consumer fixed before offset 0 of an empty stream
        let resumes_at = stored.wrapping_add(1);
        tracing::info!(
            consumer,
            stream = %self.stream,
            stored,
            start = ?self.start,
            "consumer {consumer:?} resumes {stream} at offset {resumes_at}, after the offset it \
             stored ({stored}): its start position {start:?} applies only to a consumer with no \
             stored offset; reset the stored offset (MemoryTransport::reset_offset, \
             StreamTransport::reset_offset) or read under another consumer name to start there",
            stream = self.stream,
            start = self.start,
        );
    }
}

impl From<&str> for StreamSource {
    fn from(stream: &str) -> Self {
        Self::new(stream)
    }
}

impl From<String> for StreamSource {
    fn from(stream: String) -> Self {
        Self::new(stream)
    }
}

/// When a stream consumer stores its offset: only ever the contiguous prefix of
/// deliveries the bus settled (see [`OffsetTracker`](crate::transport::OffsetTracker)), so that a
/// restart resumes after the last one handled and skips none.
///
/// A restarted consumer handles again at most what was settled since the last store: a
/// shorter interval means fewer duplicates and more writes to the broker.
///
/// ```
/// use std::time::Duration;
/// use pubsub::stream::StoreOffsets;
/// let often = StoreOffsets::every(10, Duration::from_millis(100));
/// assert_eq!(often, StoreOffsets::Every { events: 10, interval: Duration::from_millis(100) });
/// assert_eq!(StoreOffsets::default(), StoreOffsets::every(1000, Duration::from_secs(1)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreOffsets {
    /// An anonymous reader: no offset is read at start or stored; it starts where its
    /// [`StartAt`] says every time (the typed event streams of
    /// [`Bus::subscribe`](crate::Bus::subscribe)).
    Never,
    /// Store once `events` more deliveries were settled, or once `interval` passed since
    /// the last store with something new to store, and when the consumer closes.
    Every {
        /// Settled deliveries between stores (0 is taken as 1: after every one).
        events: u32,
        /// Longest time a settled delivery waits to be stored.
        interval: Duration,
    },
}

impl StoreOffsets {
    /// Store after `events` settled deliveries or `interval`, whichever comes first, and
    /// at close.
    pub const fn every(events: u32, interval: Duration) -> Self {
        Self::Every { events, interval }
    }
}

impl Default for StoreOffsets {
    /// Every 1000 settled deliveries or every second, and at close.
    fn default() -> Self {
        Self::every(1000, Duration::from_secs(1))
    }
}

/// Where a stream consumer starts reading when it has no stored offset.
///
/// A named consumer's `Next` means "after the end of the stream as it was when the
/// subscription was declared" (when its bus was built), so that what is published between
/// building a bus and running it is not missed, as a queue declared at build holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StartAt {
    /// The oldest message the stream still holds.
    First,
    /// The last chunk of the stream.
    Last,
    /// Only messages published from now on.
    #[default]
    Next,
    /// This absolute offset.
    Offset(u64),
    /// The first message stored at or after this time.
    Timestamp(SystemTime),
}

impl Subscription {
    /// The queue of `service`, bound to `patterns`, consumed with `prefetch`.
    pub fn new(service: impl Into<String>, patterns: Vec<String>, prefetch: u16) -> Self {
        Self::queue(service, patterns).prefetch(prefetch)
    }

    /// The classic queue of `service` bound to `patterns`, prefetch 100.
    pub fn queue<I, S>(service: impl Into<String>, patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            service: service.into(),
            source: Source::Queue(QueueSource {
                patterns: patterns.into_iter().map(Into::into).collect(),
            }),
            prefetch: 100,
        }
    }

    /// The dead-letter queue of `service`, prefetch 100.
    pub fn dead_letters(service: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            source: Source::DeadLetters,
            prefetch: 100,
        }
    }

    /// A private queue for `service`, bound to `patterns`, prefetch 100: a consumer of it
    /// gets the events published while it exists, and the queue is removed when the
    /// consumer is dropped or closed. Its name is `{service}.live.{id}`, unique.
    ///
    /// ```
    /// use pubsub::transport::Subscription;
    /// let live = Subscription::live("gateway", ["session.42.code_updated"]);
    /// assert_eq!(live.patterns(), ["session.42.code_updated"]);
    /// assert!(live.queue_name().is_some_and(|q| q.starts_with("gateway.live.")));
    /// ```
    pub fn live<I, S>(service: impl Into<String>, patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let service = service.into();
        let queue = format!("{service}.live.{}", uuid::Uuid::now_v7().simple());
        Self {
            service,
            source: Source::Live(LiveSource {
                queue,
                patterns: patterns.into_iter().map(Into::into).collect(),
            }),
            prefetch: 100,
        }
    }

    /// The name of a live subscription's private queue (`None` for any other).
    pub fn queue_name(&self) -> Option<&str> {
        match &self.source {
            Source::Live(live) => Some(&live.queue),
            _ => None,
        }
    }

    /// The stream `source` names, read by the consumer named after `service`; prefetch
    /// 100. A stream's name alone reads it from [`StartAt::Next`] when no offset is
    /// stored; a [`StreamSource`] says more.
    pub fn stream(service: impl Into<String>, source: impl Into<StreamSource>) -> Self {
        Self {
            service: service.into(),
            source: Source::Stream(source.into()),
            prefetch: 100,
        }
    }

    /// Unsettled deliveries at once (0 is taken as 1).
    #[must_use]
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch.max(1);
        self
    }

    /// The stream a stream subscription reads (`None` for a queue).
    pub fn stream_source(&self) -> Option<&StreamSource> {
        match &self.source {
            Source::Stream(stream) => Some(stream),
            Source::Queue(_) | Source::DeadLetters | Source::Live(_) => None,
        }
    }

    /// The patterns a queue or live subscription is bound with (empty for a stream).
    pub fn patterns(&self) -> &[String] {
        match &self.source {
            Source::Queue(queue) => &queue.patterns,
            Source::Live(live) => &live.patterns,
            Source::Stream(_) | Source::DeadLetters => &[],
        }
    }
}
