//! The wire format: a [`Message`] to a stream message (AMQP 1.0) and back.
//!
//! | field | stream message |
//! |---|---|
//! | body | the single data section |
//! | key | `subject`, and application property `x-event-key` |
//! | id, version, content type | application properties `x-event-id`, `x-event-version`, `content-type` |
//! | timestamp | application property `x-timestamp-ms` (milliseconds since the epoch) |
//! | correlation, causation, reply-to, service | `correlation-id`, `x-causation-id`, `reply-to`, `app-id` |
//! | free headers | application properties under their own names |
//!
//! A message appended by another client (no `x-event-id`) gets an id derived from its
//! stream and offset, so reading it again gives the same id; its key is its `subject`, or
//! empty.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pubsub_core::{Bytes, HEADER_CAUSATION_ID, HEADER_VERSION, JSON, Message, Metadata, Uuid};
use rabbitmq_stream_client::types::{Message as WireMessage, SimpleValue};

const ID: &str = "x-event-id";
const KEY: &str = "x-event-key";
const CONTENT_TYPE: &str = "content-type";
const TIMESTAMP: &str = "x-timestamp-ms";
const CORRELATION_ID: &str = "correlation-id";
const REPLY_TO: &str = "reply-to";
const APP_ID: &str = "app-id";

/// Namespace of the ids derived from a foreign message's stream and offset.
const FOREIGN_ID_NAMESPACE: Uuid = Uuid::from_u128(0x5d0f_3a1e_9b27_4c61_a8e3_2f70_b1c4_96d2);

/// The application properties the envelope writes: a free header with one of these
/// names is not written (the envelope's value, or nothing, stands instead).
const ENVELOPE: [&str; 9] = [
    ID,
    KEY,
    HEADER_VERSION,
    CONTENT_TYPE,
    TIMESTAMP,
    CORRELATION_ID,
    HEADER_CAUSATION_ID,
    REPLY_TO,
    APP_ID,
];

/// The stream message for `message`, with publishing id `publishing_id`. Built straight
/// into the client's message: no intermediate map.
pub(crate) fn to_wire(message: &Message, publishing_id: u64) -> WireMessage {
    let m = &message.metadata;
    let mut builder = WireMessage::builder()
        .body(message.body.to_vec())
        .properties()
        .subject(m.key.clone())
        .message_builder()
        .application_properties();
    for (name, value) in &m.headers {
        // the envelope wins: a free header cannot overwrite it
        if !ENVELOPE.contains(&name.as_str()) {
            builder = builder.insert(name.clone(), value.clone());
        }
    }
    builder = builder
        .insert(ID, m.id.to_string())
        .insert(KEY, m.key.clone())
        .insert(HEADER_VERSION, m.version.to_string())
        .insert(CONTENT_TYPE, m.content_type.clone())
        .insert(TIMESTAMP, millis(m.timestamp).to_string());
    let optional = [
        (CORRELATION_ID, &m.correlation_id),
        (HEADER_CAUSATION_ID, &m.causation_id),
        (REPLY_TO, &m.reply_to),
        (APP_ID, &m.app_id),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            builder = builder.insert(name, value.clone());
        }
    }
    builder
        .message_builder()
        .publishing_id(publishing_id)
        .build()
}

/// The message read at `offset` of `stream`.
pub(crate) fn from_wire(wire: &WireMessage, stream: &str, offset: u64) -> Message {
    let mut id = None;
    let mut key = None;
    let mut version = None;
    let mut content_type = None;
    let mut timestamp = None;
    let mut correlation_id = None;
    let mut causation_id = None;
    let mut reply_to = None;
    let mut app_id = None;
    let mut headers = BTreeMap::new();
    for (name, value) in wire
        .application_properties()
        .into_iter()
        .flat_map(|p| p.iter())
    {
        let Some(value) = text(value) else { continue };
        let slot = match name.as_str() {
            ID => &mut id,
            KEY => &mut key,
            HEADER_VERSION => &mut version,
            CONTENT_TYPE => &mut content_type,
            TIMESTAMP => &mut timestamp,
            CORRELATION_ID => &mut correlation_id,
            HEADER_CAUSATION_ID => &mut causation_id,
            REPLY_TO => &mut reply_to,
            APP_ID => &mut app_id,
            _ => {
                headers.insert(name.clone(), value.into_owned());
                continue;
            }
        };
        *slot = Some(value);
    }
    let owned = |value: Option<Cow<'_, str>>| value.map(Cow::into_owned);
    let id = id.and_then(|id| id.parse().ok()).unwrap_or_else(|| {
        Uuid::new_v5(
            &FOREIGN_ID_NAMESPACE,
            format!("{stream}/{offset}").as_bytes(),
        )
    });
    let key = owned(key)
        .or_else(|| wire.properties().and_then(|p| p.subject.clone()))
        .unwrap_or_default();
    let mut metadata = Metadata::new(key);
    metadata.id = id;
    metadata.version = version.and_then(|v| v.parse().ok()).unwrap_or(1);
    metadata.content_type = owned(content_type).unwrap_or_else(|| JSON.to_owned());
    metadata.timestamp = timestamp
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(UNIX_EPOCH, |ms| UNIX_EPOCH + Duration::from_millis(ms));
    metadata.correlation_id = owned(correlation_id);
    metadata.causation_id = owned(causation_id);
    metadata.reply_to = owned(reply_to);
    metadata.app_id = owned(app_id);
    metadata.headers = headers;
    let body = wire.data().map(Bytes::copy_from_slice).unwrap_or_default();
    Message { metadata, body }
}

/// A property's value as text; `None` for the types the envelope never writes.
fn text(value: &SimpleValue) -> Option<Cow<'_, str>> {
    match value {
        SimpleValue::String(s) => Some(Cow::Borrowed(s.as_str())),
        SimpleValue::Symbol(s) => Some(Cow::Owned(s.to_string())),
        SimpleValue::Boolean(b) => Some(Cow::Owned(b.to_string())),
        SimpleValue::Int(n) => Some(Cow::Owned(n.to_string())),
        SimpleValue::Long(n) => Some(Cow::Owned(n.to_string())),
        SimpleValue::Uint(n) => Some(Cow::Owned(n.to_string())),
        SimpleValue::Ulong(n) => Some(Cow::Owned(n.to_string())),
        _ => None,
    }
}

fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_survives_the_round_trip() {
        let mut message = Message::new("order.created", Bytes::from_static(b"{\"n\":1}"));
        message.metadata.correlation_id = Some("c-1".into());
        message.metadata.causation_id = Some("cause".into());
        message.metadata.app_id = Some("shop".into());
        message.metadata.version = 3;
        message.metadata.timestamp = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        message
            .metadata
            .headers
            .insert("tenant".into(), "acme".into());
        message
            .metadata
            .headers
            .insert(ID.into(), "not the id".into());
        let wire = to_wire(&message, 7);
        assert_eq!(wire.publishing_id(), Some(&7));
        let back = from_wire(&wire, "events.order", 0);
        message.metadata.headers.remove(ID);
        assert_eq!(back, message);
    }

    #[test]
    fn a_foreign_message_gets_a_stable_id_and_its_subject_as_key() {
        let wire = WireMessage::builder()
            .body(b"raw".to_vec())
            .properties()
            .subject("order.created")
            .message_builder()
            .build();
        let first = from_wire(&wire, "events.order", 5);
        assert_eq!(first.metadata.key, "order.created");
        assert_eq!(
            first.metadata.id,
            from_wire(&wire, "events.order", 5).metadata.id
        );
        assert_ne!(
            first.metadata.id,
            from_wire(&wire, "events.order", 6).metadata.id
        );
        assert_eq!(first.body, Bytes::from_static(b"raw"));
    }
}
