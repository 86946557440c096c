//! Which stream an event goes to, which streams a service reads, and where its failures go.

use std::collections::{BTreeMap, BTreeSet};

use super::partition::{partition_name, partition_of};
use crate::key_template::first_param;
use crate::metadata::Metadata;
use crate::transport::TransportError;

/// The prefix of [`StreamNaming::default`].
pub const DEFAULT_STREAM_PREFIX: &str = "events";

/// How a stream-backed transport names its streams; one value shared by the transport
/// that appends and the buses that read, so that both agree.
///
/// The rule:
///
/// - **One stream per event domain**: an event with key `domain.action` is appended to
///   `{prefix}.{domain}` (`order.created` → `events.order`). A key without a dot is its own
///   domain.
/// - **A service reads the streams of its handlers' patterns**: a pattern whose first word
///   is literal needs that domain's stream; a pattern whose first word is a wildcard (`*`
///   or `#`) needs the stream of every domain known: those named by any linked
///   `#[handler]` (its event's key or its pattern's literal first word), by the bus's own
///   handlers, and those listed with
///   [`StreamConsumption::domains`](crate::stream::StreamConsumption::domains). A stream that only
///   appears later is not read until the service is built again.
/// - **Failures go to the service's error stream** `{prefix}.errors.{service}`: each
///   event its handlers gave up on, with the reason, the failed handlers, and the stream
///   and offset it came from (see [`HEADER_STREAM`](crate::headers::HEADER_STREAM)).
///
/// With an empty prefix, streams are named after the domains alone (`order`,
/// `errors.billing`).
///
/// **Super streams**: [`super_stream`](Self::super_stream) makes a domain's stream a super
/// stream of N partitions `{stream}-0` … `{stream}-(N-1)`. An event goes to the partition
/// its partition key hashes to ([`PublishOptions::partition_key`](crate::PublishOptions::partition_key);
/// without one, the value of its key's first parameter, else its correlation id, else its
/// id: [`default_partition_key`](Self::default_partition_key)), by RabbitMQ's hash routing
/// (MurmurHash3, seed 104729, modulo N), so the events of one key stay in order in one
/// partition (for an event with key parameters, one entity's events rather than one
/// conversation's). A service reads every partition, each with its own stored offset.
///
/// ```
/// use pubsub::stream::StreamNaming;
/// let naming = StreamNaming::default();
/// assert_eq!(naming.stream_of_key("order.created"), "events.order");
/// assert_eq!(naming.error_stream("billing"), "events.errors.billing");
/// let chat = StreamNaming::new("chat");
/// assert_eq!(chat.stream_of_domain("room"), "chat.room");
/// assert_eq!(StreamNaming::new("").stream_of_key("order.created"), "order");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamNaming {
    prefix: String,
    /// Super streams by stream name, with their partition counts.
    super_streams: BTreeMap<String, u16>,
}

impl Default for StreamNaming {
    /// Streams under [`DEFAULT_STREAM_PREFIX`] (`events.order`, `events.errors.billing`).
    fn default() -> Self {
        Self::new(DEFAULT_STREAM_PREFIX)
    }
}

impl StreamNaming {
    /// Streams named `{prefix}.{domain}`; a trailing dot of `prefix` is ignored.
    pub fn new(prefix: impl Into<String>) -> Self {
        let mut prefix = prefix.into();
        while prefix.ends_with('.') {
            prefix.pop();
        }
        Self {
            prefix,
            super_streams: BTreeMap::new(),
        }
    }

    /// Makes the stream of `domain` a super stream of `partitions` partitions (at least 1).
    ///
    /// ```
    /// use pubsub::stream::StreamNaming;
    /// let naming = StreamNaming::default().super_stream("order", 3);
    /// assert_eq!(naming.partitions("events.order").map(|p| p.len()), Some(3));
    /// assert_eq!(naming.partitions("events.stock"), None);
    /// let partition = naming.partition_for("events.order", "order-42");
    /// assert_eq!(partition, naming.partition_for("events.order", "order-42")); // stable
    /// assert!(partition.is_some_and(|p| p.starts_with("events.order-")));
    /// ```
    #[must_use]
    pub fn super_stream(mut self, domain: &str, partitions: u16) -> Self {
        let stream = self.stream_of_domain(domain);
        self.super_streams.insert(stream, partitions.max(1));
        self
    }

    /// The partitions of `stream`, in order, if it is a super stream.
    pub fn partitions(&self, stream: &str) -> Option<Vec<String>> {
        let count = *self.super_streams.get(stream)?;
        Some((0..count).map(|i| partition_name(stream, i)).collect())
    }

    /// The partition of super stream `stream` that `partition_key` goes to; `None` if
    /// `stream` is not a super stream.
    pub fn partition_for(&self, stream: &str, partition_key: &str) -> Option<String> {
        let count = *self.super_streams.get(stream)?;
        Some(partition_name(stream, partition_of(partition_key, count)))
    }

    /// Where a publish to `stream` is appended: `stream` itself, or for a super stream the
    /// partition of `partition_key` (without one, of
    /// [`default_partition_key`](Self::default_partition_key)), so that one key's events
    /// stay in order.
    ///
    /// # Errors
    /// A partition key for a stream that is not a super stream.
    ///
    /// ```
    /// use pubsub::{Metadata, stream::StreamNaming};
    /// let naming = StreamNaming::default().super_stream("order", 3);
    /// let metadata = Metadata::new("order.created");
    /// let to = naming.publish_target("events.order".into(), Some("A1".into()), &metadata)?;
    /// assert_eq!(Some(to), naming.partition_for("events.order", "A1"));
    /// assert!(naming.publish_target("events.user".into(), Some("A1".into()), &metadata).is_err());
    /// # Ok::<(), pubsub::transport::TransportError>(())
    /// ```
    pub fn publish_target(
        &self,
        stream: String,
        partition_key: Option<String>,
        metadata: &Metadata,
    ) -> Result<String, TransportError> {
        match (self.super_streams.contains_key(&stream), partition_key) {
            (false, None) => Ok(stream),
            (false, Some(_)) => Err(TransportError::topology(format!(
                "stream {stream} is not a super stream, but the publish has a partition key \
                 (StreamNaming::super_stream makes it one)"
            ))),
            (true, Some(key)) => Ok(self.partition_for(&stream, &key).unwrap_or(stream)),
            (true, None) => {
                let key = Self::default_partition_key(metadata);
                Ok(self.partition_for(&stream, &key).unwrap_or(stream))
            }
        }
    }

    /// What a message is partitioned by when its publisher named no partition key: for an
    /// event whose key has parameters, the value of its first one (`42` for
    /// `session.42.code_updated` of `session.{session_id}.code_updated`), so that the events
    /// of one entity stay in order in one partition; else its conversation (correlation
    /// id, or its own id).
    ///
    /// ```
    /// use pubsub::{Metadata, stream::StreamNaming};
    /// let mut metadata = Metadata::new("session.42.code_updated");
    /// metadata.event_type = Some("session.{session_id}.code_updated".into());
    /// assert_eq!(StreamNaming::default_partition_key(&metadata), "42");
    /// ```
    pub fn default_partition_key(metadata: &Metadata) -> String {
        metadata
            .event_type
            .as_deref()
            .and_then(|template| first_param(template, &metadata.key))
            .map_or_else(|| metadata.correlation_or_id(), str::to_owned)
    }

    /// The prefix (without its dot).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The domain of a key: its first word (`order` for `order.created`).
    pub fn domain_of(key: &str) -> &str {
        key.split('.').next().unwrap_or(key)
    }

    /// The stream of a domain: `{prefix}.{domain}`.
    pub fn stream_of_domain(&self, domain: &str) -> String {
        self.under_prefix(domain)
    }

    /// The stream an event with this key is appended to: that of its domain.
    pub fn stream_of_key(&self, key: &str) -> String {
        self.stream_of_domain(Self::domain_of(key))
    }

    /// The error stream of a service: `{prefix}.errors.{service}`.
    pub fn error_stream(&self, service: &str) -> String {
        self.under_prefix(&format!("errors.{service}"))
    }

    /// The streams a service with these handler `patterns` reads (see the rule above),
    /// sorted; `known_domains` stand for a pattern whose first word is a wildcard.
    ///
    /// # Errors
    /// [`UnmappedPattern`] when a pattern's first word is a wildcard and no domain is
    /// known: the service would read nothing for it, silently.
    ///
    /// ```
    /// use std::collections::BTreeSet;
    /// use pubsub::stream::StreamNaming;
    /// let naming = StreamNaming::default();
    /// let known: BTreeSet<String> = ["order".into(), "stock".into()].into();
    /// let streams = naming.streams_for_patterns(["order.*", "*.created"], &known)?;
    /// assert_eq!(streams, ["events.order", "events.stock"]);
    /// assert!(naming.streams_for_patterns(["#"], &BTreeSet::new()).is_err());
    /// # Ok::<(), pubsub::stream::UnmappedPattern>(())
    /// ```
    pub fn streams_for_patterns<'a>(
        &self,
        patterns: impl IntoIterator<Item = &'a str>,
        known_domains: &BTreeSet<String>,
    ) -> Result<Vec<String>, UnmappedPattern> {
        let mut streams = BTreeSet::new();
        for pattern in patterns {
            match literal_domain(pattern) {
                Some(domain) => {
                    streams.insert(self.stream_of_domain(domain));
                }
                None if known_domains.is_empty() => {
                    return Err(UnmappedPattern {
                        pattern: pattern.to_owned(),
                    });
                }
                None => streams.extend(known_domains.iter().map(|d| self.stream_of_domain(d))),
            }
        }
        Ok(streams.into_iter().collect())
    }

    fn under_prefix(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }
}

/// The first word of a pattern, unless it is a wildcard.
pub(crate) fn literal_domain(pattern: &str) -> Option<&str> {
    match StreamNaming::domain_of(pattern) {
        "*" | "#" => None,
        domain => Some(domain),
    }
}

/// A handler pattern whose first word is a wildcard, while no domain is known to stand
/// for it: the service would read no stream for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "pattern {pattern:?} starts with a wildcard, and no event domain is known to read the \
     streams of: name them with StreamConsumption::new().domains([\"order\", ..])"
)]
pub struct UnmappedPattern {
    /// The pattern.
    pub pattern: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_first_words_name_their_stream_and_wildcards_every_known_domain() {
        let naming = StreamNaming::new("app.");
        assert_eq!(naming.prefix(), "app");
        let known: BTreeSet<String> = ["a".into(), "b".into()].into();
        let streams = naming.streams_for_patterns(["c.x", "c.#"], &known);
        assert_eq!(streams, Ok(vec!["app.c".to_owned()]));
        let streams = naming.streams_for_patterns(["#", "c.x"], &known);
        assert_eq!(
            streams,
            Ok(vec!["app.a".into(), "app.b".into(), "app.c".into()])
        );
        assert_eq!(naming.stream_of_key("solo"), "app.solo");
        let err = naming.streams_for_patterns(["*.created"], &BTreeSet::new());
        assert_eq!(
            err,
            Err(UnmappedPattern {
                pattern: "*.created".into()
            })
        );
    }

    #[test]
    fn an_error_stream_never_is_a_domain_stream() {
        // a domain is one word: `{prefix}.{domain}` has no dot after the prefix's
        let naming = StreamNaming::default();
        assert_ne!(naming.error_stream("x"), naming.stream_of_key("errors.x"));
        assert_eq!(naming.stream_of_key("errors.x"), "events.errors");
    }
}
