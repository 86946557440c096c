//! The [`Event`] trait that `#[derive(Event)]` implements.

use bytes::Bytes;

use crate::codec::Codec;
use crate::codec::CodecError;
use crate::metadata::Message;

/// A typed event: a payload with a routing key `domain.action` and a schema version.
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
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event",
    label = "not an event",
    note = "add `#[derive(Event)]` with `#[event(domain = \"...\", action = \"...\")]` to `{Self}`"
)]
pub trait Event: Sized + Send + Sync + 'static {
    /// First word of the key, e.g. `order`.
    const DOMAIN: &'static str;
    /// Second word of the key, e.g. `created`.
    const ACTION: &'static str;
    /// `domain.action`, the routing key.
    const KEY: &'static str;
    /// Schema version carried on the wire; consumers reject versions they do not know.
    const VERSION: u32;
    /// How the payload is encoded.
    type Codec: Codec<Self>;
    /// What a handler of this type returns on success: `()` for an event; for a request
    /// (`#[event(reply = UserProfile)]`, which also implements [`Request`](crate::Request)),
    /// the reply type, sent back to the caller as JSON.
    type Reply: serde::Serialize + serde::de::DeserializeOwned + Send + 'static;

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
