//! The wire format: a [`Message`] to AMQP 0-9-1 properties and back (the README's table).
//!
//! | field | AMQP |
//! |---|---|
//! | id | `message_id` |
//! | key (what routes) | the routing key; header `x-event-key` when the type differs (read first, then `type`, then the routing key of a topic delivery) |
//! | event type (what decodes: the key template) | `type` |
//! | version | header `x-event-version` (falls back to 1) |
//! | content type | `content_type` (falls back to JSON) |
//! | timestamp | `timestamp`, seconds |
//! | correlation id, reply-to, service | `correlation_id`, `reply_to`, `app_id` |
//! | causation id, free headers | headers `x-causation-id`, the header's name |
//!
//! A publisher that sets none of these (pika, aio-pika, FastStream) is understood: its
//! message gets the routing key as key, version 1, JSON, and an id derived from its own
//! `message_id` (so a redelivery keeps it) or a fresh one.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use pubsub_core::{
    Message, Metadata,
    codec::JSON,
    headers::{HEADER_CAUSATION_ID, HEADER_EVENT_KEY, HEADER_VERSION},
    transport::Bytes,
};

/// AMQP's persistent delivery mode.
const PERSISTENT: u8 = 2;

/// The properties `message` travels with (persistent).
pub(crate) fn properties(message: &Message) -> BasicProperties {
    let m = &message.metadata;
    let mut headers = BTreeMap::new();
    headers.insert(
        ShortString::from(HEADER_VERSION),
        AMQPValue::LongLongInt(i64::from(m.version)),
    );
    if let Some(cause) = &m.causation_id {
        headers.insert(ShortString::from(HEADER_CAUSATION_ID), long_string(cause));
    }
    // the key travels apart from the type, so that it outlives a trip through a wait or
    // dead-letter queue, where the routing key is a queue's name
    if m.event_type.is_some() {
        headers.insert(ShortString::from(HEADER_EVENT_KEY), long_string(&m.key));
    }
    for (name, value) in &m.headers {
        headers.insert(ShortString::from(name.as_str()), long_string(value));
    }
    let mut properties = BasicProperties::default()
        .with_message_id(ShortString::from(m.id.to_string()))
        .with_type(ShortString::from(m.type_or_key()))
        .with_content_type(ShortString::from(m.content_type.as_str()))
        .with_timestamp(seconds(m.timestamp))
        .with_delivery_mode(PERSISTENT)
        .with_headers(FieldTable::from(headers));
    if let Some(correlation) = &m.correlation_id {
        properties = properties.with_correlation_id(ShortString::from(correlation.as_str()));
    }
    if let Some(reply_to) = &m.reply_to {
        properties = properties.with_reply_to(ShortString::from(reply_to.as_str()));
    }
    if let Some(app_id) = &m.app_id {
        properties = properties.with_app_id(ShortString::from(app_id.as_str()));
    }
    properties
}

/// The message a delivery carries. Its key is the header `x-event-key`, else `type`, else
/// `routing_key`, which stands in only when the message came through the topic exchange
/// (`via_topic`): sent straight to a queue, its routing key is the queue's name, not an event
/// key. `type` is the event type when it differs from the key.
pub(crate) fn message(
    routing_key: &str,
    via_topic: bool,
    properties: &BasicProperties,
    body: impl Into<Bytes>,
) -> Message {
    let mut metadata = Metadata::new(String::new());
    let event_key = properties
        .headers()
        .as_ref()
        .and_then(|headers| headers.inner().get(&ShortString::from(HEADER_EVENT_KEY)))
        .and_then(scalar);
    let kind = properties.kind().as_ref().map(text);
    metadata.key = match (event_key, &kind) {
        (Some(key), _) => key,
        (None, Some(kind)) => kind.clone(),
        (None, None) if via_topic => routing_key.to_owned(),
        (None, None) => String::new(),
    };
    metadata.event_type = kind.filter(|kind| *kind != metadata.key);
    metadata.id = match properties.message_id() {
        Some(id) => Metadata::id_from_text(id.as_str()),
        None => {
            tracing::debug!(key = %metadata.key, id = %metadata.id, "message without message_id: a fresh id");
            metadata.id
        }
    };
    if let Some(content_type) = properties.content_type() {
        metadata.content_type = content_type.as_str().to_owned();
    } else {
        metadata.content_type = JSON.to_owned();
    }
    if let Some(timestamp) = properties.timestamp() {
        metadata.timestamp = UNIX_EPOCH + Duration::from_secs(*timestamp);
    }
    metadata.correlation_id = properties.correlation_id().as_ref().map(text);
    metadata.reply_to = properties.reply_to().as_ref().map(text);
    metadata.app_id = properties.app_id().as_ref().map(text);
    if let Some(headers) = properties.headers() {
        for (name, value) in headers.inner() {
            match name.as_str() {
                HEADER_VERSION => match integer(value) {
                    Some(version) => metadata.version = version,
                    None => {
                        tracing::warn!(id = %metadata.id, ?value, "x-event-version is not a version; taken as 1")
                    }
                },
                HEADER_CAUSATION_ID => metadata.causation_id = scalar(value),
                HEADER_EVENT_KEY => {}
                other => {
                    // arrays and tables (the broker's x-death) are not free headers
                    if let Some(value) = scalar(value) {
                        metadata.headers.insert(other.to_owned(), value);
                    }
                }
            }
        }
    }
    Message {
        metadata,
        body: body.into(),
    }
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.as_bytes().to_vec()))
}

fn text(value: &ShortString) -> String {
    value.as_str().to_owned()
}

fn seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A header value as text, if it is a string, a number or a boolean.
fn scalar(value: &AMQPValue) -> Option<String> {
    Some(match value {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_owned(),
        AMQPValue::Boolean(b) => b.to_string(),
        other => integer::<i64>(other)?.to_string(),
    })
}

/// A header value as an integer of type `T`, from any integer encoding or a numeric string.
fn integer<T: TryFrom<i64>>(value: &AMQPValue) -> Option<T> {
    let wide: i64 = match value {
        AMQPValue::ShortShortInt(n) => (*n).into(),
        AMQPValue::ShortShortUInt(n) => (*n).into(),
        AMQPValue::ShortInt(n) => (*n).into(),
        AMQPValue::ShortUInt(n) => (*n).into(),
        AMQPValue::LongInt(n) => (*n).into(),
        AMQPValue::LongUInt(n) => (*n).into(),
        AMQPValue::LongLongInt(n) => *n,
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).trim().parse().ok()?,
        AMQPValue::ShortString(s) => s.as_str().trim().parse().ok()?,
        _ => return None,
    };
    T::try_from(wide).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pubsub_core::Uuid;

    fn sample() -> Message {
        let mut message = Message::new("order.created", Bytes::from_static(b"{\"id\":1}"));
        let m = &mut message.metadata;
        m.version = 3;
        m.correlation_id = Some("conv-1".into());
        m.causation_id = Some("cause-1".into());
        m.reply_to = Some("replies".into());
        m.app_id = Some("orders".into());
        m.headers.insert("tenant".into(), "acme".into());
        m.timestamp = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        message
    }

    #[test]
    fn every_field_round_trips() {
        let sent = sample();
        let properties = properties(&sent);
        assert_eq!(properties.delivery_mode(), &Some(PERSISTENT));
        let got = message("ignored", true, &properties, sent.body.clone());
        assert_eq!(got, sent);
    }

    #[test]
    fn type_and_key_travel_apart() {
        let mut sent = sample();
        sent.metadata.key = "session.42.code_updated".into();
        sent.metadata.event_type = Some("session.{session_id}.code_updated".into());
        let properties = properties(&sent);
        assert_eq!(
            properties.kind().as_ref().map(ShortString::as_str),
            Some("session.{session_id}.code_updated")
        );
        // through a wait queue, whose name is the routing key
        let got = message("orders.wait.5s", false, &properties, sent.body.clone());
        assert_eq!(got, sent);
        assert!(!got.metadata.headers.contains_key(HEADER_EVENT_KEY));
    }

    #[test]
    fn a_plain_publishers_routing_key_is_the_key() {
        let got = message(
            "session.42.code_updated",
            true,
            &BasicProperties::default(),
            Bytes::new(),
        );
        assert_eq!(got.metadata.key, "session.42.code_updated");
        assert_eq!(got.metadata.event_type, None);
    }

    #[test]
    fn a_foreign_message_gets_the_fallbacks() {
        let got = message(
            "user.signed-up",
            true,
            &BasicProperties::default(),
            Bytes::new(),
        );
        assert_eq!(got.metadata.key, "user.signed-up");
        assert_eq!(got.metadata.version, 1);
        assert_eq!(got.metadata.content_type, JSON);
        assert!(got.metadata.headers.is_empty());
    }

    #[test]
    fn a_message_sent_to_a_queue_does_not_take_the_queue_name_as_key() {
        let got = message("billing", false, &BasicProperties::default(), Bytes::new());
        assert_eq!(
            got.metadata.key, "",
            "a keyless message, to be dead-lettered"
        );
    }

    #[test]
    fn a_foreign_message_id_gives_the_same_id_every_time() {
        let properties = BasicProperties::default().with_message_id("pika-42".into());
        let first = message("a.b", true, &properties, Bytes::new());
        let again = message("a.b", true, &properties, Bytes::new());
        assert_eq!(first.metadata.id, again.metadata.id);
        assert_eq!(first.metadata.id.get_version_num(), 5);
    }

    #[test]
    fn versions_and_headers_in_other_encodings_are_read() {
        let mut headers = BTreeMap::new();
        headers.insert(ShortString::from(HEADER_VERSION), AMQPValue::ShortUInt(7));
        headers.insert(ShortString::from("count"), AMQPValue::LongInt(5));
        headers.insert(ShortString::from("flag"), AMQPValue::Boolean(true));
        headers.insert(
            ShortString::from("x-death"),
            AMQPValue::FieldArray(Default::default()),
        );
        let properties = BasicProperties::default().with_headers(FieldTable::from(headers));
        let got = message("a.b", true, &properties, Bytes::new());
        assert_eq!(got.metadata.version, 7);
        assert_eq!(got.metadata.headers["count"], "5");
        assert_eq!(got.metadata.headers["flag"], "true");
        assert!(!got.metadata.headers.contains_key("x-death"));
    }

    /// Through the real broker (`RABBITMQ_URL`; see `test_broker`): what we publish reads
    /// back field for field, and a plain publish with only a routing key gets the fallbacks.
    #[tokio::test]
    async fn the_wire_format_survives_the_broker() {
        use lapin::options::{
            BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
            QueueDeleteOptions,
        };
        if crate::test_broker::amqp_url().is_none() {
            return;
        }
        let config = crate::AmqpConfig::from_env()
            .unwrap()
            .connection_attempts(3);
        let connection = crate::connect(&config, "wire test").await.unwrap();
        let channel = connection.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let queue = format!("pubsub-wire-{}", Uuid::now_v7().simple());
        // exclusive: it goes with the connection, even if the test fails (auto-delete
        // never fires on a queue read with basic.get, which never has a consumer)
        let declare = QueueDeclareOptions {
            exclusive: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(queue.as_str().into(), declare, FieldTable::default())
            .await
            .unwrap();
        let get = |channel: lapin::Channel, queue: String| async move {
            for _ in 0..100 {
                let got = channel
                    .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
                    .await
                    .unwrap();
                if let Some(got) = got {
                    return got.delivery;
                }
                tokio::task::yield_now().await;
            }
            panic!("nothing arrived in {queue}");
        };

        let sent = sample();
        channel
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                &sent.body,
                properties(&sent),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        let delivery = get(channel.clone(), queue.clone()).await;
        let got = message(
            delivery.routing_key.as_str(),
            false,
            &delivery.properties,
            delivery.data,
        );
        assert_eq!(got, sent, "through the broker, field for field");

        // a plain client: body and routing key only
        channel
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                b"{}",
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        let delivery = get(channel.clone(), queue.clone()).await;
        let plain = message("user.signed-up", true, &delivery.properties, delivery.data);
        assert_eq!(
            (
                plain.metadata.key.as_str(),
                plain.metadata.version,
                plain.metadata.content_type.as_str()
            ),
            ("user.signed-up", 1, JSON)
        );
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap();
        connection.close(200, "done".into()).await.unwrap();
    }
}
