//! The [`Event`] trait that `#[derive(Event)]` implements.

use std::borrow::Cow;

use bytes::Bytes;

use crate::codec::Codec;
use crate::codec::CodecError;
use crate::key_template::KeyError;
use crate::metadata::{Message, Metadata};

/// A typed event: a payload with a routing key (`domain.action`, or a template with
/// parameters such as `session.{session_id}.code_updated`) and a schema version.
///
/// Derive it rather than implementing it by hand:
///
/// ```
/// use pubsub::prelude::*;
///
/// #[derive(Debug, Clone, Serialize, Deserialize, Event)]
/// #[event(domain = "order", action = "created", version = 2)]
/// struct OrderCreated { order_id: String }
///
/// assert_eq!(OrderCreated::KEY, "order.created");
/// assert_eq!(OrderCreated::VERSION, 2);
/// ```
///
/// A key can carry parameters, filled from the event's fields when it is published, so
/// that a consumer can bind to one entity (`session.42.code_updated`) or to all of them
/// (`session.*.code_updated`, what a typed handler binds by default):
///
/// ```
/// use pubsub::prelude::*;
///
/// #[derive(Debug, Clone, Serialize, Deserialize, Event)]
/// #[event(key = "session.{session_id}.code_updated")]
/// struct CodeUpdated { session_id: u64, delta: String }
///
/// let update = CodeUpdated { session_id: 42, delta: "+x".into() };
/// assert_eq!(update.routing_key()?, "session.42.code_updated");
/// assert_eq!(CodeUpdated::KEY, "session.{session_id}.code_updated");
/// assert_eq!(CodeUpdated::PATTERN, "session.*.code_updated");
/// assert_eq!((CodeUpdated::DOMAIN, CodeUpdated::ACTION), ("session", "{session_id}.code_updated"));
/// # Ok::<(), pubsub::KeyError>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event",
    label = "not an event",
    note = "add `#[derive(Event)]` with `#[event(domain = \"...\", action = \"...\")]` to `{Self}`"
)]
pub trait Event: Sized + Send + Sync + 'static {
    /// First word of the key, e.g. `order`: it names the event's stream on a stream
    /// transport, and is never a parameter.
    const DOMAIN: &'static str;
    /// The rest of the key after the first dot, e.g. `created`, or
    /// `{session_id}.code_updated` for the key `session.{session_id}.code_updated`.
    const ACTION: &'static str;
    /// The key: `domain.action`, or its template with `{field}` placeholders. It is the
    /// event's type on the wire, what tells a consumer how to decode it; the key a message
    /// is routed by is [`routing_key`](Self::routing_key).
    const KEY: &'static str;
    /// The names of the key's placeholders, in order (empty for a constant key).
    const KEY_PARAMS: &'static [&'static str] = &[];
    /// What a handler of this type binds by default: [`KEY`](Self::KEY) with each
    /// placeholder as `*` (`session.*.code_updated`); the key itself when it has none.
    const PATTERN: &'static str = Self::KEY;
    /// Schema version carried on the wire; consumers reject versions they do not know.
    const VERSION: u32;
    /// How the payload is encoded.
    type Codec: Codec<Self>;
    /// What a handler of this type returns on success: `()` for an event; for a request
    /// (`#[event(reply = UserProfile)]`, which also implements [`Request`](crate::Request)),
    /// the reply type, sent back to the caller as JSON.
    type Reply: serde::Serialize + serde::de::DeserializeOwned + Send + 'static;

    /// The key this event is routed by: [`KEY`](Self::KEY) with its placeholders filled
    /// from the fields (`session.42.code_updated`). A value that is empty, holds `.`, `*`,
    /// `#` or whitespace, or makes the key longer than 255 bytes is refused.
    fn routing_key(&self) -> Result<Cow<'static, str>, KeyError> {
        Ok(Cow::Borrowed(Self::KEY))
    }

    /// Encodes the payload alone.
    fn encode(&self) -> Result<Bytes, CodecError> {
        <Self::Codec as Codec<Self>>::encode(self, Self::KEY)
    }

    /// Decodes a payload, checking content type and version of the message first so that a
    /// foreign version is never mis-decoded.
    fn decode_message(message: &Message) -> Result<Self, CodecError> {
        let content_type = <Self::Codec as Codec<Self>>::CONTENT_TYPE;
        let found = message.metadata.content_type.as_str();
        if !content_type_matches(found, content_type) {
            return Err(CodecError::ContentType {
                key: Self::KEY,
                expected: content_type,
                found: found.to_owned(),
            });
        }
        if message.metadata.version != Self::VERSION {
            return Err(CodecError::UnknownVersion {
                key: Self::KEY,
                known: Self::VERSION,
                found: message.metadata.version,
            });
        }
        <Self::Codec as Codec<Self>>::decode(&message.body, Self::KEY)
    }
}

/// Whether `metadata` describes an event of type `E`: its type on the wire is `E::KEY`, or,
/// from a publisher that sent only a routing key, that key matches `E::PATTERN`.
pub(crate) fn is_type_of<E: Event>(metadata: &Metadata) -> bool {
    match &metadata.event_type {
        Some(event_type) => event_type == E::KEY,
        None if E::KEY_PARAMS.is_empty() => metadata.key == E::KEY,
        // a pattern without `#`: matching is linear, on any key
        None => crate::pattern::matches(E::PATTERN, &metadata.key),
    }
}

/// `application/json; charset=utf-8` is `application/json`.
fn content_type_matches(found: &str, expected: &str) -> bool {
    let essence = found.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case(expected)
}

#[cfg(test)]
mod tests {
    use super::content_type_matches;

    #[test]
    fn content_type_parameters_are_ignored() {
        assert!(content_type_matches(
            "application/json; charset=utf-8",
            "application/json"
        ));
        assert!(content_type_matches("Application/JSON", "application/json"));
        assert!(!content_type_matches("text/plain", "application/json"));
    }
}
