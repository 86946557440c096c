//! [`StreamConsumption`]: how a service reads streams instead of a queue, and which
//! streams it reads.

use std::collections::BTreeSet;
use std::time::Duration;

use super::naming::{StreamNaming, UnmappedPattern, literal_domain};
use crate::bus::Bus;
use crate::bus::Intake;
use crate::transport::{StartAt, StoreOffsets, StreamSource, Subscription};

impl Bus {
    /// The streams this bus reads, sorted (empty for a bus that reads a queue or
    /// publishes only): what its handlers' patterns need, as [`StreamNaming`] says.
    ///
    /// ```
    /// use pubsub::prelude::*;
    /// use pubsub::{Bus, Handler, HandlerSelection, MemoryTransport};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> pubsub::Result<()> {
    /// let audit = Handler::raw("audit", "order.#", |_: RawEvent, _: Context| async {
    ///     Ok::<_, HandlerError>(())
    /// });
    /// let bus = Bus::builder()
    ///     .service("audit")
    ///     .transport(MemoryTransport::stream_backed())
    ///     .select_handlers(HandlerSelection::None)
    ///     .handler(audit)
    ///     .build()
    ///     .await?;
    /// assert_eq!(bus.consumed_streams(), ["events.order"]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn consumed_streams(&self) -> Vec<&str> {
        match self.intake() {
            Some(Intake::Streams(subscriptions)) => subscriptions
                .iter()
                .filter_map(|s| s.stream_source().map(|source| source.stream.as_str()))
                .collect(),
            Some(Intake::Queue(_)) | None => Vec::new(),
        }
    }
}

/// How a service's bus reads streams: given to
/// [`BusBuilder::stream_consumption`](crate::BusBuilder::stream_consumption), and used with its defaults when
/// the transport is stream-backed and the builder says nothing.
///
/// The bus reads the stream of every domain its handlers' patterns name (see
/// [`StreamNaming`]), one consumer per stream, each named after the service; it stores each
/// stream's offset only for the contiguous prefix of deliveries whose handlers all
/// finished, by the [`StoreOffsets`] policy and at shutdown, and a restarted service
/// resumes after it. In flight at once: the bus's
/// [`prefetch`](crate::BusBuilder::prefetch), across its streams.
///
/// Handling that fails after the retries (which run in process: a log has no requeue)
/// appends the event, the reason, the failed handlers and its offset to the service's
/// error stream ([`StreamNaming::error_stream`]); then the offset advances.
///
/// ```
/// use std::time::Duration;
/// use pubsub::{Bus, HandlerSelection, MemoryTransport, stream::{StartAt, StreamConsumption}};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> pubsub::Result<()> {
/// let bus = Bus::builder()
///     .service("replicator")
///     .transport(MemoryTransport::stream_backed())
///     .select_handlers(HandlerSelection::None)
///     .stream_consumption(
///         StreamConsumption::new()
///             .start_at(StartAt::First) // a new consumer reads the whole history
///             .single_active(true) // one instance reads, another takes over
///             .store_every(500, Duration::from_millis(200)),
///     )
///     .build()
///     .await?;
/// # let _ = bus;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct StreamConsumption {
    /// Where a consumer without a stored offset starts (default [`StartAt::Next`]: what
    /// is appended after the bus was built).
    pub start: StartAt,
    /// One instance of the service reads at a time; when it stops, another takes over
    /// from the stored offset (default off).
    pub single_active: bool,
    /// When offsets are stored (default: every 1000 settled events or every second).
    pub store: StoreOffsets,
    /// Domains a pattern whose first word is a wildcard (`*.created`, `#`) stands for,
    /// beyond those the handler registry knows.
    pub domains: BTreeSet<String>,
}

impl StreamConsumption {
    /// The defaults: start at `Next`, every instance reads, store every 1000 events or
    /// every second.
    pub fn new() -> Self {
        Self::default()
    }

    /// Where a consumer without a stored offset starts.
    #[must_use]
    pub fn start_at(mut self, start: StartAt) -> Self {
        self.start = start;
        self
    }

    /// Single active consumer among the service's instances.
    #[must_use]
    pub fn single_active(mut self, enabled: bool) -> Self {
        self.single_active = enabled;
        self
    }

    /// Stores the offset after `events` settled events or `interval`, whichever comes
    /// first, and at shutdown.
    #[must_use]
    pub fn store_every(mut self, events: u32, interval: Duration) -> Self {
        self.store = StoreOffsets::every(events, interval);
        self
    }

    /// Adds domains that a pattern starting with a wildcard stands for.
    #[must_use]
    pub fn domains<I, S>(mut self, domains: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.domains.extend(domains.into_iter().map(Into::into));
        self
    }

    /// One subscription per stream the `patterns` need, for `service`.
    pub(crate) fn subscriptions(
        &self,
        service: &str,
        naming: &StreamNaming,
        patterns: &[String],
        prefetch: u16,
    ) -> Result<Vec<Subscription>, UnmappedPattern> {
        let wildcard = patterns.iter().any(|p| literal_domain(p).is_none());
        let known = if wildcard {
            self.known_domains(patterns)
        } else {
            BTreeSet::new()
        };
        let streams = naming.streams_for_patterns(patterns.iter().map(String::as_str), &known)?;
        Ok(streams
            .into_iter()
            .map(|stream| {
                let partitioned = naming.partitions(&stream).is_some();
                Subscription::stream(
                    service,
                    StreamSource::new(stream)
                        .super_stream(partitioned)
                        .start_at(self.start)
                        .single_active(self.single_active)
                        .store_offsets(self.store),
                )
                .prefetch(prefetch)
            })
            .collect())
    }

    /// The domains given here, of the bus's own patterns, of every linked handler, and of
    /// every event type derived in the binary.
    fn known_domains(&self, patterns: &[String]) -> BTreeSet<String> {
        let registered = crate::registration::registered_handlers();
        let from_registry = registered.iter().flat_map(|h| {
            let of_key = h.event_key.as_deref().map(StreamNaming::domain_of);
            of_key.into_iter().chain(literal_domain(&h.pattern))
        });
        let own = patterns.iter().filter_map(|p| literal_domain(p));
        let events = crate::event_registration::registered_events();
        let derived = events.iter().map(|e| e.domain);
        let mut known = self.domains.clone();
        known.extend(own.chain(from_registry).chain(derived).map(str::to_owned));
        known
    }
}
