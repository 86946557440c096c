//! The wire format: a [`Message`] to a stream message (AMQP 1.0) and back.
//!
//! The standard AMQP 1.0 properties carry what they can, as on AMQP 0-9-1 (so a client
//! reading the stream, over either protocol, sees an id, a subject and a content type
//! where it looks for them); application properties carry the rest:
//!
//! | field | stream message |
//! |---|---|
//! | body | the single data section |
//! | id | property `message-id`, an AMQP `uuid` |
//! | key (what routes) | property `subject`; application property `x-event-key` when the type differs |
//! | event type (what decodes: the key template) | property `subject` (application property `x-event-type` when too long, see [`to_wire`]) |
//! | content type | property `content-type` |
//! | correlation, reply-to | properties `correlation-id` (a string), `reply-to` |
//! | version | application property `x-event-version` (`uint`) |
//! | timestamp | application property `x-timestamp-ms` (`ulong`, milliseconds since the epoch) |
//! | causation, service | application properties `x-causation-id`, `app-id` |
//! | free headers | application properties under their own names |
//!
//! The timestamp is not the `creation-time` property because rabbitmq-stream-client 0.11
//! gives no way to read a `timestamp` value back.
//!
//! A message from another client is read as leniently as on AMQP: a `message-id` that is
//! no UUID (a string, a number) gives an id derived from it ([`Metadata::id_from_text`],
//! as on AMQP), and a message with none an id
//! derived from its stream and offset, so reading it again gives the same id; a key
//! (`x-event-key`, read before `subject`, which is then the event type), a content type or
//! an id it sets as application property (`content-type`, `x-event-id`) stands in for a
//! missing property; a version or timestamp may also be text.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use pubsub_core::{
    Message, Metadata, Uuid,
    headers::{HEADER_CAUSATION_ID, HEADER_VERSION},
    transport::Bytes,
};
use rabbitmq_stream_client::types::{Message as WireMessage, SimpleValue};

const TIMESTAMP: &str = "x-timestamp-ms";
const APP_ID: &str = "app-id";
/// Application properties another client may set instead of the properties.
const ID: &str = "x-event-id";
const KEY: &str = "x-event-key";
/// The event type, as application property, when the properties cannot carry `subject`.
const TYPE: &str = "x-event-type";
const CONTENT_TYPE: &str = "content-type";
/// Names the 0.1 envelope used; a free header with them is not written either.
const CORRELATION_ID: &str = "correlation-id";
const REPLY_TO: &str = "reply-to";

/// Namespace of the ids derived from a foreign message's stream and offset.
const FOREIGN_ID_NAMESPACE: Uuid = Uuid::from_u128(0x5d0f_3a1e_9b27_4c61_a8e3_2f70_b1c4_96d2);

/// Application property names the envelope reads: a free header with one of them is not
/// written (the envelope's value, or nothing, stands instead).
const ENVELOPE: [&str; 10] = [
    HEADER_VERSION,
    TYPE,
    TIMESTAMP,
    HEADER_CAUSATION_ID,
    APP_ID,
    ID,
    KEY,
    CONTENT_TYPE,
    CORRELATION_ID,
    REPLY_TO,
];

/// The most bytes the properties section may hold. rabbitmq-stream-client 0.11 encodes a
/// longer one wrongly (a `list8` type code with a 4-byte size), and no client reads the
/// message back; a long key (with a correlation id, from about 170 characters) gets there.
const PROPERTIES_MAX: usize = 230;

/// The size of the properties section's content with these texts: a UUID message id (17
/// bytes), each text 2 bytes more than its length (5 past 255), and a byte for each of
/// the 8 other fields, empty.
fn properties_size(texts: [Option<&str>; 4]) -> usize {
    let text = |t: Option<&str>| t.map_or(1, |t| t.len() + if t.len() <= 255 { 2 } else { 5 });
    17 + 8 + texts.into_iter().map(text).sum::<usize>()
}

/// The stream message for `message`, with publishing id `publishing_id`. Built straight
/// into the client's message: no intermediate map.
///
/// Subject, content type, correlation id and reply-to go in the standard properties,
/// unless they would make that section too long for the client ([`PROPERTIES_MAX`]): then
/// they are application properties (`x-event-type`, `content-type`, `correlation-id`,
/// `reply-to`), which [`from_wire`] reads as well.
pub(crate) fn to_wire(message: &Message, publishing_id: u64) -> WireMessage {
    let m = &message.metadata;
    let subject = m.type_or_key();
    let (correlation_id, reply_to) = (m.correlation_id.as_deref(), m.reply_to.as_deref());
    let texts = [
        Some(subject),
        Some(m.content_type.as_str()),
        correlation_id,
        reply_to,
    ];
    let fits = properties_size(texts) <= PROPERTIES_MAX;
    let mut properties = WireMessage::builder()
        .body(message.body.to_vec())
        .properties()
        .message_id(m.id);
    if fits {
        properties = properties
            .subject(subject)
            .content_type(m.content_type.as_str());
        if let Some(correlation_id) = correlation_id {
            properties = properties.correlation_id(correlation_id.to_owned());
        }
        if let Some(reply_to) = reply_to {
            properties = properties.reply_to(reply_to);
        }
    }
    let mut application = properties
        .message_builder()
        .application_properties()
        .insert(HEADER_VERSION, m.version)
        .insert(TIMESTAMP, m.timestamp_millis());
    if !fits {
        application = application
            .insert(TYPE, subject)
            .insert(CONTENT_TYPE, m.content_type.as_str());
        if let Some(correlation_id) = correlation_id {
            application = application.insert(CORRELATION_ID, correlation_id);
        }
        if let Some(reply_to) = reply_to {
            application = application.insert(REPLY_TO, reply_to);
        }
    }
    if let Some(app_id) = &m.app_id {
        application = application.insert(APP_ID, app_id.as_str());
    }
    if let Some(causation_id) = &m.causation_id {
        application = application.insert(HEADER_CAUSATION_ID, causation_id.as_str());
    }
    if m.event_type.is_some() {
        application = application.insert(KEY, m.key.as_str());
    }
    for (name, value) in &m.headers {
        // the envelope wins: a free header cannot overwrite it
        if !ENVELOPE.contains(&name.as_str()) {
            application = application.insert(name.as_str(), value.as_str());
        }
    }
    application
        .message_builder()
        .publishing_id(publishing_id)
        .build()
}

/// The filter value of a stream message (RabbitMQ's stream filtering, 3.13+): its routing
/// key, `x-event-key` or else `subject`, so that a reader of one entity
/// ([`StreamSource::only_keys`](pubsub_core::transport::StreamSource::only_keys)) is sent
/// only the chunks that may hold its key.
pub(crate) fn filter_value(wire: &WireMessage) -> String {
    let application = |name| {
        wire.application_properties()
            .and_then(|p| p.get(name))
            .and_then(text)
    };
    application(KEY)
        .or_else(|| wire.properties().and_then(|p| p.subject.clone()))
        .or_else(|| application(TYPE))
        .unwrap_or_default()
}

/// The message read at `offset` of `stream`.
pub(crate) fn from_wire(wire: &WireMessage, stream: &str, offset: u64) -> Message {
    let properties = wire.properties();
    let mut id =
        properties
            .and_then(|p| p.message_id.as_ref())
            .map(|id| match <&Uuid>::try_from(id) {
                Ok(uuid) => *uuid,
                Err(_) => Metadata::id_from_text(&id_text(id)),
            });
    let mut subject = properties.and_then(|p| p.subject.clone());
    let mut correlation_id = properties
        .and_then(|p| p.correlation_id.as_ref())
        .map(id_text);
    let mut reply_to = properties.and_then(|p| p.reply_to.clone());
    let mut key = None;
    let mut content_type = properties
        .and_then(|p| p.content_type.as_ref())
        .map(|c| c.to_string());
    let mut version = None;
    let mut timestamp = None;
    let mut causation_id = None;
    let mut app_id = None;
    let mut headers = BTreeMap::new();
    for (name, value) in wire
        .application_properties()
        .into_iter()
        .flat_map(|p| p.iter())
    {
        match name.as_str() {
            HEADER_VERSION => version = number(value).and_then(|v| u32::try_from(v).ok()),
            TIMESTAMP => timestamp = number(value),
            HEADER_CAUSATION_ID => causation_id = text(value),
            APP_ID => app_id = text(value),
            ID if id.is_none() => id = text(value).map(|t| Metadata::id_from_text(&t)),
            KEY => key = text(value),
            CONTENT_TYPE if content_type.is_none() => content_type = text(value),
            TYPE if subject.is_none() => subject = text(value),
            CORRELATION_ID if correlation_id.is_none() => correlation_id = text(value),
            REPLY_TO if reply_to.is_none() => reply_to = text(value),
            _ => {
                if let Some(value) = text(value) {
                    headers.insert(name.clone(), value);
                }
            }
        }
    }
    let id = id.unwrap_or_else(|| {
        Uuid::new_v5(
            &FOREIGN_ID_NAMESPACE,
            format!("{stream}/{offset}").as_bytes(),
        )
    });
    let timestamp = timestamp.map_or(UNIX_EPOCH, |ms| UNIX_EPOCH + Duration::from_millis(ms));
    let key = key.or_else(|| subject.clone()).unwrap_or_default();
    let event_type = subject.filter(|subject| *subject != key);
    let mut metadata = Metadata::received(id, key, timestamp);
    metadata.event_type = event_type;
    if let Some(version) = version {
        metadata.version = version;
    }
    if let Some(content_type) = content_type {
        metadata.content_type = content_type;
    }
    metadata.correlation_id = correlation_id;
    metadata.reply_to = reply_to;
    metadata.causation_id = causation_id;
    metadata.app_id = app_id;
    metadata.headers = headers;
    // the body stays in the client's message, shared (no copy)
    let body = match wire.data() {
        Some(_) => Bytes::from_owner(Body(wire.clone())),
        None => Bytes::new(),
    };
    Message { metadata, body }
}

/// A stream message's data section, as the owner of a [`Bytes`].
struct Body(WireMessage);

impl AsRef<[u8]> for Body {
    fn as_ref(&self) -> &[u8] {
        self.0.data().unwrap_or_default()
    }
}

/// An AMQP message id (string, UUID, number or bytes) as text.
fn id_text<T>(id: &T) -> String
where
    for<'a> &'a String: TryFrom<&'a T>,
    for<'a> &'a Uuid: TryFrom<&'a T>,
    for<'a> &'a u64: TryFrom<&'a T>,
    T: std::fmt::Debug,
{
    if let Ok(text) = <&String>::try_from(id) {
        text.clone()
    } else if let Ok(uuid) = <&Uuid>::try_from(id) {
        uuid.to_string()
    } else if let Ok(n) = <&u64>::try_from(id) {
        n.to_string()
    } else {
        format!("{id:?}")
    }
}

/// A property's value as text; `None` for the types the envelope never writes.
fn text(value: &SimpleValue) -> Option<String> {
    match value {
        SimpleValue::String(s) => Some(s.clone()),
        SimpleValue::Symbol(s) => Some(s.to_string()),
        SimpleValue::Boolean(b) => Some(b.to_string()),
        other => number(other).map(|n| n.to_string()),
    }
}

/// A property's value as a whole number, written as one or as text.
fn number(value: &SimpleValue) -> Option<u64> {
    match value {
        SimpleValue::Ubyte(n) => Some(u64::from(*n)),
        SimpleValue::Ushort(n) => Some(u64::from(*n)),
        SimpleValue::Uint(n) => Some(u64::from(*n)),
        SimpleValue::Ulong(n) => Some(*n),
        SimpleValue::Byte(n) => u64::try_from(*n).ok(),
        SimpleValue::Short(n) => u64::try_from(*n).ok(),
        SimpleValue::Int(n) => u64::try_from(*n).ok(),
        SimpleValue::Long(n) => u64::try_from(*n).ok(),
        SimpleValue::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_survives_the_round_trip() {
        let mut message = Message::new("order.created", Bytes::from_static(b"{\"n\":1}"));
        message.metadata.correlation_id = Some("c-1".into());
        message.metadata.causation_id = Some("cause".into());
        message.metadata.reply_to = Some("replies.shop".into());
        message.metadata.app_id = Some("shop".into());
        message.metadata.version = 3;
        message.metadata.content_type = "application/x-protobuf".into();
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
        assert_eq!(back.metadata.timestamp_millis(), 1_700_000_000_123);
    }

    #[test]
    fn the_envelope_uses_the_standard_properties() {
        let message = Message::new("order.created", Bytes::from_static(b"{}"));
        let wire = to_wire(&message, 1);
        let properties = wire.properties().expect("properties");
        assert_eq!(properties.subject.as_deref(), Some("order.created"));
        assert_eq!(
            properties.content_type.as_ref().map(|c| c.as_str()),
            Some("application/json")
        );
        let id = properties.message_id.as_ref().expect("a message id");
        assert_eq!(<&Uuid>::try_from(id).ok(), Some(&message.metadata.id));
        let application = wire
            .application_properties()
            .expect("application properties");
        assert_eq!(application.get(HEADER_VERSION), Some(&SimpleValue::Uint(1)));
        assert_eq!(
            application.len(),
            2,
            "version and timestamp: {application:?}"
        );
    }

    #[test]
    fn type_and_key_travel_apart() {
        let mut message = Message::new("session.42.code_updated", Bytes::from_static(b"{}"));
        message.metadata.timestamp = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        message.metadata.event_type = Some("session.{session_id}.code_updated".into());
        let wire = to_wire(&message, 1);
        let properties = wire.properties().expect("properties");
        assert_eq!(
            properties.subject.as_deref(),
            Some("session.{session_id}.code_updated")
        );
        let application = wire
            .application_properties()
            .expect("application properties");
        assert_eq!(
            application.get(KEY),
            Some(&SimpleValue::String("session.42.code_updated".into()))
        );
        assert_eq!(from_wire(&wire, "events.session", 0), message);
    }

    #[test]
    fn a_long_key_moves_the_properties_it_would_overflow_to_application_properties() {
        let key = format!("session.{}.code_updated", "s".repeat(200));
        let mut message = Message::new(key.as_str(), Bytes::from_static(b"{}"));
        message.metadata.timestamp = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        message.metadata.correlation_id = Some("c".repeat(36));
        message.metadata.reply_to = Some("replies".into());
        let wire = to_wire(&message, 1);
        let properties = wire.properties().expect("properties");
        assert_eq!(properties.subject, None);
        let application = wire
            .application_properties()
            .expect("application properties");
        assert_eq!(
            application.get(TYPE),
            Some(&SimpleValue::String(key.clone()))
        );
        assert_eq!(from_wire(&wire, "events.session", 0), message);
        // a short one keeps the standard properties
        let short = to_wire(&Message::new("order.created", Bytes::new()), 1);
        assert!(short.properties().is_some_and(|p| p.subject.is_some()));
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
        assert_eq!(first.metadata.content_type, "application/json");
        assert_eq!(first.body, Bytes::from_static(b"raw"));
    }

    #[test]
    fn a_foreign_message_may_set_the_envelope_as_application_properties() {
        let id = Uuid::now_v7();
        let wire = WireMessage::builder()
            .body(b"x".to_vec())
            .application_properties()
            .insert(KEY, "order.created")
            .insert(CONTENT_TYPE, "text/csv")
            .insert(ID, id.to_string())
            .insert(HEADER_VERSION, "2")
            .insert(TIMESTAMP, "1000")
            .message_builder()
            .build();
        let message = from_wire(&wire, "events.order", 0);
        let m = &message.metadata;
        assert_eq!(
            (m.key.as_str(), m.content_type.as_str()),
            ("order.created", "text/csv")
        );
        assert_eq!((m.id, m.version), (id, 2));
        assert_eq!(m.timestamp, UNIX_EPOCH + Duration::from_secs(1));
        assert!(m.headers.is_empty(), "{:?}", m.headers);
    }

    #[test]
    fn a_message_id_that_is_no_uuid_gives_a_stable_id() {
        let with_id = |id: &str| {
            let wire = WireMessage::builder()
                .body(b"x".to_vec())
                .properties()
                .message_id(id.to_owned())
                .message_builder()
                .build();
            from_wire(&wire, "events.order", 0).metadata.id
        };
        assert_eq!(with_id("order-17"), with_id("order-17"));
        assert_ne!(with_id("order-17"), with_id("order-18"));
        let uuid = Uuid::now_v7();
        assert_eq!(with_id(&uuid.to_string()), uuid);
    }
}
