//! Decoding a delivery's payload once per event type among the matched handlers.

use std::any::TypeId;
use std::panic::AssertUnwindSafe;

use smallvec::SmallVec;

use super::ResolvedHandler;
use super::attempt::panic_message;
use crate::codec::CodecError;
use crate::handler_input::{Decoder, Shared};
use crate::metadata::Message;

/// Payloads decoded for one delivery: per event type, its key and the result.
pub(super) type Decoded = SmallVec<[(TypeId, &'static str, Result<Shared, CodecError>); 2]>;

/// Decodes the payload once per distinct event type among the matched handlers.
pub(super) fn decode_once(
    handlers: &[ResolvedHandler],
    matched: &[usize],
    message: &Message,
) -> Decoded {
    let mut decoded = Decoded::new();
    for decoder in matched.iter().filter_map(|&i| handlers[i].decoder) {
        let type_id = (decoder.type_id)();
        if !decoded.iter().any(|(t, _, _)| *t == type_id) {
            decoded.push((type_id, decoder.key, decode_caught(decoder, message)));
        }
    }
    decoded
}

/// Whether a handler's payload failed only because the message is another version (or
/// encoding) of its key, which another event type of this consumer did decode: then the
/// message is that type's, not a failure of this handler.
pub(super) fn superseded(handler: &ResolvedHandler, decoded: &Decoded) -> bool {
    let Some(decoder) = handler.decoder else {
        return false;
    };
    let type_id = (decoder.type_id)();
    let mismatch = decoded.iter().any(|(t, _, r)| {
        *t == type_id
            && matches!(
                r,
                Err(CodecError::UnknownVersion { .. } | CodecError::ContentType { .. })
            )
    });
    mismatch
        && decoded
            .iter()
            .any(|(t, key, r)| *t != type_id && *key == decoder.key && r.is_ok())
}

/// Decodes with user `Deserialize` code: a panic there is that payload's decode failure.
pub(super) fn decode_caught(decoder: Decoder, message: &Message) -> Result<Shared, CodecError> {
    std::panic::catch_unwind(AssertUnwindSafe(|| (decoder.decode)(message))).unwrap_or_else(
        |panic| {
            Err(CodecError::Malformed {
                key: decoder.key,
                content_type: "payload",
                reason: format!("the decoder panicked: {}", panic_message(panic)),
            })
        },
    )
}
