//! What a handler is: its error type, its inputs and its link-time registration.

use std::any::{Any, TypeId};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::context::Context;
use crate::error::CodecError;
use crate::event::Event;
use crate::metadata::{Message, Metadata};

/// Why a handler failed. Any `std::error::Error` converts into it with `?`.
///
/// ```
/// use pubsub::HandlerError;
/// fn parse(s: &str) -> Result<u32, HandlerError> {
///     let n: u32 = s.parse()?; // ParseIntError -> HandlerError
///     if n == 0 {
///         return Err(HandlerError::permanent("zero is never valid")); // no retry
///     }
///     Ok(n)
/// }
/// assert!(parse("x").unwrap_err().is_retryable());
/// assert!(!parse("0").unwrap_err().is_retryable());
/// ```
pub struct HandlerError {
    kind: HandlerErrorKind,
    message: String,
}

/// The kind of a [`HandlerError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HandlerErrorKind {
    /// The handler returned an error; it is retried.
    Failed,
    /// The handler said retrying cannot help; dead-lettered at once.
    Permanent,
    /// The handler panicked; it is retried.
    Panicked,
    /// The handler ran past its timeout; it is retried.
    TimedOut,
    /// The payload could not be decoded for this handler (malformed body, wrong content
    /// type, unknown version); dead-lettered at once.
    Decode,
}

impl HandlerError {
    /// A failure that is worth retrying.
    pub fn new(message: impl Into<String>) -> Self {
        Self::with_kind(HandlerErrorKind::Failed, message)
    }

    /// A failure that retrying cannot fix: the message is dead-lettered without retries.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::with_kind(HandlerErrorKind::Permanent, message)
    }

    pub(crate) fn with_kind(kind: HandlerErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> HandlerErrorKind {
        self.kind
    }

    /// The human-readable reason.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the retry policy applies (false for permanent and decode failures).
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self.kind,
            HandlerErrorKind::Permanent | HandlerErrorKind::Decode
        )
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            HandlerErrorKind::Failed | HandlerErrorKind::Permanent => f.write_str(&self.message),
            HandlerErrorKind::Panicked => write!(f, "panicked: {}", self.message),
            HandlerErrorKind::TimedOut => write!(f, "timed out: {}", self.message),
            HandlerErrorKind::Decode => write!(f, "cannot decode: {}", self.message),
        }
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .finish()
    }
}

impl<E> From<E> for HandlerError
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(error: E) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Self::new(message)
    }
}

/// Classifies any error as a handler failure — for error types that do not implement
/// `std::error::Error` (such as `anyhow::Error`), or to mark a failure as permanent.
///
/// ```
/// use pubsub::prelude::*;
///
/// fn lookup(id: &str) -> Result<u32, String> {
///     id.parse::<u32>().map_err(|_| format!("no customer {id}"))
/// }
///
/// fn handle(id: &str) -> Result<u32, HandlerError> {
///     let customer = lookup(id).permanent()?; // retrying cannot help: dead-letter now
///     Ok(customer)
/// }
/// let error = handle("x").unwrap_err();
/// assert_eq!(error.message(), "no customer x");
/// assert!(!error.is_retryable());
/// ```
pub trait HandlerResultExt<T> {
    /// A failure worth retrying.
    fn retryable(self) -> Result<T, HandlerError>;
    /// A failure that retrying cannot fix: dead-lettered without retries.
    fn permanent(self) -> Result<T, HandlerError>;
}

impl<T, E: fmt::Display> HandlerResultExt<T> for Result<T, E> {
    fn retryable(self) -> Result<T, HandlerError> {
        // `{:#}`: error types such as anyhow's print their whole chain this way
        self.map_err(|e| HandlerError::new(format!("{e:#}")))
    }

    fn permanent(self) -> Result<T, HandlerError> {
        self.map_err(|e| HandlerError::permanent(format!("{e:#}")))
    }
}

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
    /// The key a typed event is published under; `None` for [`RawEvent`].
    const KEY: Option<&'static str>;
    /// How to decode the payload once for every handler of this type.
    const DECODER: Option<Decoder>;
    /// Takes the argument out of the invocation input.
    fn take(input: Input) -> Result<Self, HandlerError>;
}

impl<E: Event + Clone> HandlerInput for E {
    const KEY: Option<&'static str> = Some(E::KEY);
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

/// What a handler may return: `Result<(), E>` for any `E` that converts into
/// [`HandlerError`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a valid handler return type",
    label = "expected `Result<(), E>` where `E: Into<HandlerError>`",
    note = "return `Result<(), HandlerError>`, or a `Result` whose error implements `std::error::Error`"
)]
pub trait IntoHandlerResult {
    /// Converts the handler's output.
    fn into_handler_result(self) -> Result<(), HandlerError>;
}

impl<E: Into<HandlerError>> IntoHandlerResult for Result<(), E> {
    fn into_handler_result(self) -> Result<(), HandlerError> {
        self.map_err(Into::into)
    }
}

/// Which retry policy a handler uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetrySpec {
    /// The bus's default policy.
    Default,
    /// The default policy with this many retries (0: fail at once).
    Retries(u32),
    /// A policy the bus builder defines under this name.
    Named(&'static str),
}

/// The type-erased call of a handler.
pub type CallFn = fn(Input, Context) -> BoxFuture<'static, Result<(), HandlerError>>;

/// A handler as `#[handler]` registers it at link time.
///
/// Built in `const` context by the macro; users see it through
/// [`HandlerInfo`](crate::HandlerInfo).
#[derive(Clone, Copy)]
pub struct HandlerRegistration {
    pub(crate) name: &'static str,
    pub(crate) pattern: &'static str,
    pub(crate) event_key: Option<&'static str>,
    pub(crate) decoder: Option<Decoder>,
    pub(crate) service: Option<&'static str>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) retry: RetrySpec,
    pub(crate) module_path: &'static str,
    pub(crate) file: &'static str,
    pub(crate) line: u32,
    pub(crate) call: CallFn,
}

impl fmt::Debug for HandlerRegistration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerRegistration")
            .field("name", &self.name)
            .field("pattern", &self.pattern)
            .field("event_key", &self.event_key)
            .field("service", &self.service)
            .field("module_path", &self.module_path)
            .field("file", &self.file)
            .field("line", &self.line)
            .finish_non_exhaustive()
    }
}

impl HandlerRegistration {
    /// A handler whose first argument is `I`, declared in `module_path` at `file`:`line`. A
    /// typed handler is bound to its event's key; `pattern` is required for [`RawEvent`]
    /// handlers.
    pub const fn new<I: HandlerInput>(
        name: &'static str,
        pattern: Option<&'static str>,
        module_path: &'static str,
        file: &'static str,
        line: u32,
        call: CallFn,
    ) -> Self {
        let pattern = match (I::KEY, pattern) {
            (Some(key), _) => key,
            (None, Some(pattern)) => pattern,
            (None, None) => {
                panic!("a `RawEvent` handler needs a pattern, e.g. #[handler(\"order.*\")]")
            }
        };
        Self {
            name,
            pattern,
            event_key: I::KEY,
            decoder: I::DECODER,
            service: None,
            timeout: None,
            retry: RetrySpec::Default,
            module_path,
            file,
            line,
            call,
        }
    }

    /// Sets the per-invocation timeout.
    pub const fn timeout_ms(mut self, millis: u64) -> Self {
        self.timeout = Some(Duration::from_millis(millis));
        self
    }

    /// Uses the default retry policy with `retries` retries.
    pub const fn retries(mut self, retries: u32) -> Self {
        self.retry = RetrySpec::Retries(retries);
        self
    }

    /// Uses the retry policy the bus builder defines under `name`.
    pub const fn use_retry_policy(mut self, name: &'static str) -> Self {
        self.retry = RetrySpec::Named(name);
        self
    }

    /// Runs this handler only on buses of `service`.
    pub const fn service(mut self, service: &'static str) -> Self {
        self.service = Some(service);
        self
    }
}

inventory::collect!(HandlerRegistration);
