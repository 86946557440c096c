//! The envelope: what travels with every event besides its payload.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use uuid::Uuid;

use crate::codec::JSON;
use crate::headers::{HEADER_ATTEMPTS, HEADER_DEATH_REASON, HEADER_FAILED_HANDLERS};

/// Namespace of the ids derived from a message id that is no UUID
/// ([`Metadata::id_from_text`]).
const TEXT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x8a3f_0c52_71d4_4e0b_b3a9_5e21_6c7d_90f4);

/// Everything known about a message except its body.
///
/// On AMQP, `id` is `message_id`, `key` is the routing key (and `type`, or the header
/// `x-event-key` when the event type differs), `app_id` is the publishing service and
/// `version` / `causation_id` are the headers `x-event-version` / `x-causation-id`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metadata {
    /// Event id, a UUID v7: stable across retries, redeliveries and dead-lettering.
    pub id: Uuid,
    /// Routing key: the key this message is routed by, `domain.action` or an event's key
    /// template filled in (`session.42.code_updated`).
    pub key: String,
    /// The event's type, when it is not the key itself: the key template of an event with
    /// key parameters (`session.{session_id}.code_updated`), which tells how to decode it.
    /// `None` when the key is the type (every event without parameters), and for a message
    /// from a publisher that sent only a routing key.
    pub event_type: Option<String>,
    /// Version of the payload schema.
    pub version: u32,
    /// MIME type of the body (`application/json`, `application/x-protobuf`).
    pub content_type: String,
    /// When the event was published.
    pub timestamp: SystemTime,
    /// Shared by every event of one conversation (defaults to the first event's id).
    pub correlation_id: Option<String>,
    /// Id of the event whose handler published this one.
    pub causation_id: Option<String>,
    /// Where a response should go (RPC).
    pub reply_to: Option<String>,
    /// Name of the publishing service.
    pub app_id: Option<String>,
    /// Free headers.
    pub headers: BTreeMap<String, String>,
}

impl Metadata {
    /// Fresh metadata for a new event: new UUID v7 id, now as timestamp, JSON, version 1.
    pub fn new(key: impl Into<String>) -> Self {
        Self {
            id: Uuid::now_v7(),
            key: key.into(),
            event_type: None,
            version: 1,
            content_type: JSON.to_owned(),
            timestamp: SystemTime::now(),
            correlation_id: None,
            causation_id: None,
            reply_to: None,
            app_id: None,
            headers: BTreeMap::new(),
        }
    }

    /// The metadata of a message read from a transport, with the `id`, `key` and
    /// `timestamp` its wire format gave (version 1, JSON, nothing optional): unlike
    /// [`Metadata::new`], it generates no id and reads no clock, since a transport
    /// overwrites both.
    ///
    /// ```
    /// use std::time::UNIX_EPOCH;
    /// use pubsub::{Metadata, Uuid};
    ///
    /// let id = Uuid::from_u128(7);
    /// let metadata = Metadata::received(id, "order.created", UNIX_EPOCH);
    /// assert_eq!((metadata.id, metadata.version), (id, 1));
    /// assert_eq!(metadata.content_type, "application/json");
    /// ```
    pub fn received(id: Uuid, key: impl Into<String>, timestamp: SystemTime) -> Self {
        Self {
            id,
            key: key.into(),
            event_type: None,
            version: 1,
            content_type: JSON.to_owned(),
            timestamp,
            correlation_id: None,
            causation_id: None,
            reply_to: None,
            app_id: None,
            headers: BTreeMap::new(),
        }
    }

    /// The event id a textual message id stands for: the UUID it spells, or one derived
    /// from the text, so that the same text gives the same id on every transport and every
    /// read. For messages from clients that set an id that is no UUID.
    ///
    /// ```
    /// use pubsub::{Metadata, Uuid};
    /// let uuid = Uuid::now_v7();
    /// assert_eq!(Metadata::id_from_text(&uuid.to_string()), uuid);
    /// assert_eq!(Metadata::id_from_text("order-17"), Metadata::id_from_text("order-17"));
    /// assert_ne!(Metadata::id_from_text("order-17"), Metadata::id_from_text("order-18"));
    /// ```
    pub fn id_from_text(text: &str) -> Uuid {
        text.parse()
            .unwrap_or_else(|_| Uuid::new_v5(&TEXT_ID_NAMESPACE, text.as_bytes()))
    }

    /// The timestamp as whole milliseconds since the Unix epoch (0 before the epoch).
    pub fn timestamp_millis(&self) -> u64 {
        self.timestamp
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    /// Builds a timestamp from milliseconds since the Unix epoch.
    pub fn timestamp_from_millis(millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(millis)
    }

    /// Handler attempts already spent on this event ([`HEADER_ATTEMPTS`]; 0 when absent or
    /// unreadable).
    pub(crate) fn attempts_spent(&self) -> u32 {
        self.headers
            .get(HEADER_ATTEMPTS)
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The handlers named in [`HEADER_FAILED_HANDLERS`], if the header is there (empty
    /// names left out).
    pub(crate) fn failed_handlers(&self) -> Option<Vec<&str>> {
        self.headers.get(HEADER_FAILED_HANDLERS).map(|names| {
            names
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .collect()
        })
    }

    /// What a dead letter's headers say: why it failed and which handlers failed (empty
    /// when absent). A message the broker dead-lettered by itself (a quorum queue's
    /// delivery limit, a rejection) carries only the broker's `x-first-death-reason`.
    pub(crate) fn death(&self) -> (String, Vec<String>) {
        let reason = match (
            self.headers.get(HEADER_DEATH_REASON),
            self.headers.get("x-first-death-reason"),
        ) {
            (Some(reason), _) => reason.clone(),
            (None, Some(broker)) => format!("dead-lettered by the broker: {broker}"),
            (None, None) => String::new(),
        };
        let handlers = self
            .failed_handlers()
            .map(|names| names.into_iter().map(str::to_owned).collect())
            .unwrap_or_default();
        (reason, handlers)
    }

    /// The event's type: [`event_type`](Self::event_type) when set, else the key.
    ///
    /// ```
    /// use pubsub::Metadata;
    /// let mut metadata = Metadata::new("session.42.code_updated");
    /// assert_eq!(metadata.type_or_key(), "session.42.code_updated");
    /// metadata.event_type = Some("session.{session_id}.code_updated".into());
    /// assert_eq!(metadata.type_or_key(), "session.{session_id}.code_updated");
    /// ```
    pub fn type_or_key(&self) -> &str {
        self.event_type.as_deref().unwrap_or(&self.key)
    }

    /// The correlation id, or the event id when none was set: what a reply or a
    /// follow-up event should carry.
    pub fn correlation_or_id(&self) -> String {
        self.correlation_id
            .clone()
            .unwrap_or_else(|| self.id.to_string())
    }
}

/// An encoded event: metadata plus the payload bytes, as transports move it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Everything but the body: id, key, version, content type, timestamp, ids, headers.
    pub metadata: Metadata,
    /// The payload alone (no metadata inside the body).
    pub body: Bytes,
}

impl Message {
    /// A message with fresh metadata for `key` and the given body.
    pub fn new(key: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Self {
            metadata: Metadata::new(key),
            body: body.into(),
        }
    }
}
