//! What a handler takes and returns: its event argument (typed or [`RawEvent`]), the
//! context, and its result; and the payload decoded once per event type.

use std::any::{Any, TypeId};
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::codec::CodecError;
use crate::context::Context;
use crate::event::Event;
use crate::handler_error::{HandlerError, HandlerErrorKind};
use crate::metadata::{Message, Metadata};

/// An event whose payload is not decoded: the envelope and the raw body. Wildcard handlers
/// take it; it decodes into any event type on demand.
///
/// ```
/// use pubsub::prelude::*;
/// #[handler("order.*")]
/// async fn audit(event: RawEvent) -> Result<(), HandlerError> {
///     tracing::info!(key = event.key(), bytes = event.body().len(), "audited");
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone)]
pub struct RawEvent {
    message: Arc<Message>,
}

impl RawEvent {
    pub(crate) fn new(message: Arc<Message>) -> Self {
        Self { message }
    }

    /// Routing key, `domain.action`.
    pub fn key(&self) -> &str {
        &self.message.metadata.key
    }

    /// The whole envelope.
    pub fn metadata(&self) -> &Metadata {
        &self.message.metadata
    }

    /// The payload bytes.
    pub fn body(&self) -> &[u8] {
        &self.message.body
    }

    /// The message as it came off the transport.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// Decodes the payload as `E`, checking content type and version.
    pub fn decode<E: Event>(&self) -> Result<E, CodecError> {
        E::decode_message(&self.message)
    }

    /// Parses a JSON body as any deserializable type (e.g. `serde_json::Value`).
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, HandlerError> {
        serde_json::from_slice(&self.message.body).map_err(HandlerError::from)
    }
}

/// A payload decoded once per event type and shared by the handlers of that type.
pub(crate) type Shared = Arc<dyn Any + Send + Sync>;

/// Decodes a message into the shared form of one event type.
#[derive(Clone, Copy)]
pub struct Decoder {
    pub(crate) key: &'static str,
    pub(crate) type_id: fn() -> TypeId,
    pub(crate) decode: fn(&Message) -> Result<Shared, CodecError>,
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("type_id", &(self.type_id)())
            .finish()
    }
}

fn decode_shared<E: Event>(message: &Message) -> Result<Shared, CodecError> {
    E::decode_message(message).map(|e| Arc::new(e) as Shared)
}

/// What the dispatcher hands to one handler invocation.
#[derive(Debug, Clone)]
pub struct Input {
    pub(crate) message: Arc<Message>,
    pub(crate) decoded: Option<Shared>,
}

/// A type that can be a handler's first argument: a typed event (`Event + Clone`) or
/// [`RawEvent`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a handler's event argument",
    label = "expected a type that derives `Event` (and `Clone`), or `RawEvent`",
    note = "a handler's first argument is the event: `event: OrderCreated` or `event: RawEvent`"
)]
pub trait HandlerInput: Sized + Send + 'static {
    /// The key (template) of a typed event, its type on the wire; `None` for [`RawEvent`].
    const KEY: Option<&'static str>;
    /// What a typed event's handlers bind by default ([`Event::PATTERN`]); `None` for
    /// [`RawEvent`].
    const PATTERN: Option<&'static str>;
    /// What a handler of it returns on success: [`Event::Reply`] (`()` for an event, the
    /// reply type for a request); `()` for [`RawEvent`].
    type Reply: serde::Serialize + Send + 'static;
    /// How to decode the payload once for every handler of this type.
    const DECODER: Option<Decoder>;
    /// Takes the argument out of the invocation input.
    fn take(input: Input) -> Result<Self, HandlerError>;
}

impl<E: Event + Clone> HandlerInput for E {
    const KEY: Option<&'static str> = Some(E::KEY);
    const PATTERN: Option<&'static str> = Some(E::PATTERN);
    type Reply = E::Reply;
    const DECODER: Option<Decoder> = Some(Decoder {
        key: E::KEY,
        type_id: TypeId::of::<E>,
        decode: decode_shared::<E>,
    });

    fn take(input: Input) -> Result<Self, HandlerError> {
        let shared = match input.decoded {
            Some(shared) => shared,
            None => decode_shared::<E>(&input.message)
                .map_err(|e| HandlerError::with_kind(HandlerErrorKind::Decode, e.to_string()))?,
        };
        match shared.downcast::<E>() {
            Ok(event) => Ok(Arc::unwrap_or_clone(event)),
            Err(_) => Err(HandlerError::with_kind(
                HandlerErrorKind::Decode,
                format!("payload was decoded as another type than {}", E::KEY),
            )),
        }
    }
}

impl HandlerInput for RawEvent {
    const KEY: Option<&'static str> = None;
    const PATTERN: Option<&'static str> = None;
    type Reply = ();
    const DECODER: Option<Decoder> = None;

    fn take(input: Input) -> Result<Self, HandlerError> {
        Ok(RawEvent::new(input.message))
    }
}

/// A type that can be a handler's second argument. Implemented for [`Context`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a handler argument",
    label = "expected `Context`",
    note = "a handler takes `(event)` or `(event, ctx: Context)`; shared state comes from `ctx.state::<T>()`"
)]
pub trait FromContext: Sized {
    /// Extracts the argument from the invocation context.
    fn from_context(ctx: Context) -> Result<Self, HandlerError>;
}

impl FromContext for Context {
    fn from_context(ctx: Context) -> Result<Self, HandlerError> {
        Ok(ctx)
    }
}

/// What a successful handler call hands the dispatcher: the JSON of a request handler's
/// reply, `None` for an event handler.
pub type Answer = Option<Bytes>;

/// What a handler may return: `Result<A, E>` for any `E` that converts into
/// [`HandlerError`] (`HandlerError` itself, any `std::error::Error`, `anyhow::Error`,
/// `String`: each a retryable failure; see [`HandlerResultExt`](crate::HandlerResultExt)
/// to dead-letter at once), where `A` is what the handled type's handlers return
/// ([`Event::Reply`]): `()` for an event, the reply type for a request.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not what a handler of this event or request returns",
    label = "expected `Result<{A}, E>` where `E: Into<HandlerError>`",
    note = "a handler of an event returns `Result<(), E>`; a handler of a request returns \
            `Result<R, E>`, with `R` the type its `#[event(..., reply = R)]` names",
    note = "`E` is a `HandlerError`, a `std::error::Error`, an `anyhow::Error` or a `String`"
)]
pub trait IntoHandlerResult<A = ()> {
    /// Converts the handler's output; a reply is encoded here, so that a reply that does
    /// not encode is the handler's failure.
    fn into_handler_result(self) -> Result<Answer, HandlerError>;
}

impl<A, E> IntoHandlerResult<A> for Result<A, E>
where
    A: serde::Serialize + 'static,
    E: Into<HandlerError>,
{
    fn into_handler_result(self) -> Result<Answer, HandlerError> {
        let value = self.map_err(Into::into)?;
        // an event's handler answers nothing (decided at compile time)
        if TypeId::of::<A>() == TypeId::of::<()>() {
            return Ok(None);
        }
        match serde_json::to_vec(&value) {
            Ok(json) => Ok(Some(Bytes::from(json))),
            Err(error) => Err(HandlerError::permanent(format!(
                "the reply ({}) does not encode as JSON: {error}",
                std::any::type_name::<A>()
            ))),
        }
    }
}
