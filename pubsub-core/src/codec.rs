//! Payload codecs: JSON by default, Protocol Buffers behind the `protobuf` feature.

use bytes::Bytes;

/// Content type of JSON payloads.
pub const JSON: &str = "application/json";
/// Content type of Protocol Buffers payloads.
pub const PROTOBUF: &str = "application/x-protobuf";

/// Turns values of `T` into payload bytes and back.
///
/// `#[derive(Event)]` picks [`Json`] unless told `codec = "protobuf"`; implement this trait
/// to bring another format.
///
/// ```
/// use pubsub_core::codec::{Codec, Json};
/// let bytes = <Json as Codec<Vec<u32>>>::encode(&vec![1, 2], "demo.numbers").unwrap();
/// assert_eq!(&bytes[..], b"[1,2]");
/// let back: Vec<u32> = <Json as Codec<Vec<u32>>>::decode(&bytes, "demo.numbers").unwrap();
/// assert_eq!(back, vec![1, 2]);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot encode and decode `{T}`",
    label = "no codec for `{T}`",
    note = "`Json` needs `{T}: Serialize + Deserialize`; `Protobuf` needs `{T}: prost::Message + Default` and the `protobuf` feature of `pubsub`"
)]
pub trait Codec<T>: Send + Sync + 'static {
    /// MIME type written to the wire.
    const CONTENT_TYPE: &'static str;
    /// Encodes a value; `key` names the event in errors.
    fn encode(value: &T, key: &'static str) -> Result<Bytes, CodecError>;
    /// Decodes untrusted bytes; `key` names the event in errors.
    fn decode(bytes: &[u8], key: &'static str) -> Result<T, CodecError>;
}

/// JSON through `serde_json` (its recursion limit of 128 stays on for untrusted input).
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl<T> Codec<T> for Json
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    const CONTENT_TYPE: &'static str = JSON;

    fn encode(value: &T, key: &'static str) -> Result<Bytes, CodecError> {
        // most events fit: one allocation instead of a few growing ones
        let mut buffer = Vec::with_capacity(256);
        serde_json::to_writer(&mut buffer, value)
            .map(|()| Bytes::from(buffer))
            .map_err(|e| CodecError::Encode {
                key,
                reason: e.to_string(),
            })
    }

    fn decode(bytes: &[u8], key: &'static str) -> Result<T, CodecError> {
        serde_json::from_slice(bytes).map_err(|e| CodecError::Malformed {
            key,
            content_type: JSON,
            reason: e.to_string(),
        })
    }
}

/// Protocol Buffers through `prost`, for types that derive `prost::Message`.
#[cfg(feature = "protobuf")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Protobuf;

#[cfg(feature = "protobuf")]
impl<T> Codec<T> for Protobuf
where
    T: prost::Message + Default,
{
    const CONTENT_TYPE: &'static str = PROTOBUF;

    fn encode(value: &T, _key: &'static str) -> Result<Bytes, CodecError> {
        Ok(Bytes::from(value.encode_to_vec()))
    }

    fn decode(bytes: &[u8], key: &'static str) -> Result<T, CodecError> {
        T::decode(bytes).map_err(|e| CodecError::Malformed {
            key,
            content_type: PROTOBUF,
            reason: e.to_string(),
        })
    }
}

/// Encoding or decoding a payload failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The event could not be serialized.
    #[error("cannot encode {key}: {reason}")]
    Encode {
        /// Routing key of the event.
        key: &'static str,
        /// What the serializer reported.
        reason: String,
    },
    /// The body is not a valid payload of the expected type.
    #[error("malformed {content_type} body for {key}: {reason}")]
    Malformed {
        /// The key the handler expected.
        key: &'static str,
        /// Content type of the body.
        content_type: &'static str,
        /// What the deserializer reported.
        reason: String,
    },
    /// The message's content type is not the one the event type is encoded with.
    #[error("content type {found:?} cannot be decoded as {key} (expects {expected:?})")]
    ContentType {
        /// The key the handler expected.
        key: &'static str,
        /// Content type of the event type.
        expected: &'static str,
        /// Content type found on the message.
        found: String,
    },
    /// The message carries a version this consumer does not know.
    #[error("unknown version {found} of {key} (this consumer knows version {known})")]
    UnknownVersion {
        /// The key of the event.
        key: &'static str,
        /// The version compiled into this consumer.
        known: u32,
        /// The version found on the message.
        found: u32,
    },
}
