//! [`Handler`]: a handler as a bus runs it, from `#[handler]` or built at run time.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::context::Context;
use crate::error::Error;
use crate::event::Event;
use crate::handler_error::HandlerError;
use crate::handler_input::{Answer, Decoder, HandlerInput, Input, IntoHandlerResult, RawEvent};
use crate::origin::HandlerOrigin;
use crate::registration::{HandlerRegistration, RetrySpec};

pub(crate) type DynCall =
    Arc<dyn Fn(Input, Context) -> BoxFuture<'static, Result<Answer, HandlerError>> + Send + Sync>;

/// A handler built at run time and added with [`BusBuilder::handler`](crate::BusBuilder::handler)
/// — the counterpart of `registry.subscribe("order.*", handler)`.
///
/// ```
/// use pubsub::prelude::*;
/// use pubsub::Handler;
///
/// #[derive(Debug, Clone, Serialize, Deserialize, Event)]
/// #[event(domain = "user", action = "registered")]
/// struct UserRegistered { email: String }
///
/// // retried with the policy the bus defines as "patient" (`.define_retry_policy(..)`)
/// let welcome = Handler::typed("welcome", |user: UserRegistered, _ctx: Context| async move {
///     tracing::info!(email = %user.email, "welcome mail");
///     Ok::<_, HandlerError>(())
/// })
/// .use_retry_policy("patient");
/// let audit = Handler::raw("audit", "user.#", |event: RawEvent, _ctx: Context| async move {
///     tracing::info!(key = event.key(), "audit");
///     Ok::<_, HandlerError>(())
/// })
/// .retries(0);
/// # let _ = (welcome, audit);
/// ```
#[derive(Clone)]
pub struct Handler {
    pub(crate) name: Arc<str>,
    pub(crate) pattern: String,
    pub(crate) decoder: Option<Decoder>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) retry: RetrySpecOwned,
    pub(crate) origin: HandlerOrigin,
    /// Its pattern is for events other services define: no warning when it matches none
    /// of the event types linked into the binary.
    pub(crate) foreign: bool,
    pub(crate) call: DynCall,
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler")
            .field("name", &self.name)
            .field("pattern", &self.pattern)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// [`RetrySpec`] with an owned policy name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RetrySpecOwned {
    Default,
    Retries(u32),
    Named(String),
}

impl From<RetrySpec> for RetrySpecOwned {
    fn from(spec: RetrySpec) -> Self {
        match spec {
            RetrySpec::Default => Self::Default,
            RetrySpec::Retries(n) => Self::Retries(n),
            RetrySpec::Named(name) => Self::Named(name.to_owned()),
        }
    }
}

impl Handler {
    /// A handler for the typed event `E`, bound to [`E::PATTERN`](Event::PATTERN) (its key,
    /// with each key parameter as `*`). Errors about it name the
    /// caller's file and line. It returns `Result<(), E>` for an event, and
    /// `Result<E::Reply, _>` for a request, whose reply goes back to the caller.
    #[track_caller]
    pub fn typed<E, F, Fut, R>(name: impl Into<String>, f: F) -> Self
    where
        E: Event + Clone,
        F: Fn(E, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoHandlerResult<E::Reply>,
    {
        let origin = HandlerOrigin::caller();
        Self::from_fn::<E, _, _, _>(name, E::PATTERN.to_owned(), origin, f)
    }

    /// A handler for every event whose key matches `pattern` (checked by `build()`). Errors
    /// about it name the caller's file and line.
    #[track_caller]
    pub fn raw<F, Fut, R>(name: impl Into<String>, pattern: impl Into<String>, f: F) -> Self
    where
        F: Fn(RawEvent, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoHandlerResult<()>,
    {
        let origin = HandlerOrigin::caller();
        Self::from_fn::<RawEvent, _, _, _>(name, pattern.into(), origin, f)
    }

    fn from_fn<I, F, Fut, R>(
        name: impl Into<String>,
        pattern: String,
        origin: HandlerOrigin,
        f: F,
    ) -> Self
    where
        I: HandlerInput,
        F: Fn(I, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoHandlerResult<I::Reply>,
    {
        let f = Arc::new(f);
        let call: DynCall = Arc::new(move |input: Input, ctx: Context| {
            let f = Arc::clone(&f);
            Box::pin(async move {
                let event = I::take(input)?;
                f(event, ctx).await.into_handler_result()
            })
        });
        Self {
            name: Arc::from(name.into()),
            pattern,
            decoder: I::DECODER,
            timeout: None,
            retry: RetrySpecOwned::Default,
            origin,
            foreign: false,
            call,
        }
    }

    /// Its pattern is for events other services define, not for event types of this
    /// binary: [`BusBuilder::build`](crate::BusBuilder::build) does not warn that it
    /// matches none of them, like `#[handler("partner.#", foreign)]`.
    #[must_use]
    pub fn expects_foreign_events(mut self) -> Self {
        self.foreign = true;
        self
    }

    /// Fails an invocation that runs longer than `timeout` (then retried).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Uses the bus's default policy with `retries` retries.
    #[must_use]
    pub fn retries(mut self, retries: u32) -> Self {
        self.retry = RetrySpecOwned::Retries(retries);
        self
    }

    /// Uses the retry policy the bus defines under `name` with
    /// [`BusBuilder::define_retry_policy`](crate::BusBuilder::define_retry_policy) (checked by
    /// `build()`), like `#[handler(retry = "name")]`.
    #[must_use]
    pub fn use_retry_policy(mut self, name: impl Into<String>) -> Self {
        self.retry = RetrySpecOwned::Named(name.into());
        self
    }

    /// The handler's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pattern its service's queue is bound with.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Where it was declared.
    pub fn origin(&self) -> HandlerOrigin {
        self.origin
    }

    pub(crate) fn from_registration(r: &'static HandlerRegistration) -> Self {
        let call = r.call;
        Self {
            name: Arc::from(r.name),
            pattern: r.binding(),
            decoder: r.decoder,
            timeout: r.timeout,
            retry: r.retry.into(),
            origin: HandlerOrigin::Attribute {
                module_path: r.module_path,
                file: r.file,
                line: r.line,
            },
            foreign: r.foreign,
            call: Arc::new(move |input, ctx| call(input, ctx)),
        }
    }
}

/// Handler names travel in a comma-separated dead-letter header: keep them plain.
pub(crate) fn check_name(handler: &Handler) -> Result<(), Error> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':');
    if handler.name.is_empty() || !handler.name.chars().all(plain) {
        return Err(Error::InvalidHandlerName {
            name: handler.name.to_string(),
            origin: handler.origin,
        });
    }
    Ok(())
}
