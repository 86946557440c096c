//! Link-time registration: what `#[handler]` submits to `inventory`, and what the binary's
//! registry says about it.

use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::context::Context;
use crate::handler_error::HandlerError;
use crate::handler_input::{Answer, Decoder, HandlerInput, Input};
use crate::typed_binding::typed_binding;

/// Which retry policy a handler uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetrySpec {
    /// The bus's default policy.
    Default,
    /// The default policy with this many retries (0: fail at once).
    Retries(u32),
    /// A policy the bus builder defines under this name.
    Named(&'static str),
}

/// The type-erased call of a handler.
pub type CallFn = fn(Input, Context) -> BoxFuture<'static, Result<Answer, HandlerError>>;

/// A handler as `#[handler]` registers it at link time.
///
/// Built in `const` context by the macro; users see it through
/// [`HandlerInfo`](crate::registry::HandlerInfo).
#[derive(Clone, Copy)]
pub struct HandlerRegistration {
    pub(crate) name: &'static str,
    /// The pattern written, or a typed event's pattern.
    pub(crate) pattern: &'static str,
    pub(crate) event_key: Option<&'static str>,
    /// A typed event's pattern, which the one written narrows ([`typed_binding`]).
    pub(crate) event_pattern: Option<&'static str>,
    pub(crate) decoder: Option<Decoder>,
    pub(crate) service: Option<&'static str>,
    pub(crate) foreign: bool,
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
    /// typed handler is bound to its event's pattern, narrowed by `pattern` if given;
    /// `pattern` is required for [`RawEvent`] handlers.
    pub const fn new<I: HandlerInput>(
        name: &'static str,
        pattern: Option<&'static str>,
        module_path: &'static str,
        file: &'static str,
        line: u32,
        call: CallFn,
    ) -> Self {
        let pattern = match (I::PATTERN, pattern) {
            (_, Some(pattern)) => pattern,
            (Some(event_pattern), None) => event_pattern,
            (None, None) => {
                panic!("a `RawEvent` handler needs a pattern, e.g. #[handler(\"order.*\")]")
            }
        };
        Self {
            name,
            pattern,
            event_key: I::KEY,
            event_pattern: I::PATTERN,
            decoder: I::DECODER,
            service: None,
            foreign: false,
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

    /// Its pattern is for events other services define (`foreign`).
    pub const fn expects_foreign_events(mut self) -> Self {
        self.foreign = true;
        self
    }
}

impl HandlerRegistration {
    /// The pattern the handler binds: a typed handler's event pattern narrowed by the one
    /// written (`#[handler]` checked at compile time that they overlap).
    pub(crate) fn binding(&self) -> String {
        match self.event_pattern {
            Some(event) => typed_binding(self.pattern, event).unwrap_or_else(|| event.to_owned()),
            None => self.pattern.to_owned(),
        }
    }
}

inventory::collect!(HandlerRegistration);

/// A description of a handler, as `#[handler]` registered it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandlerInfo {
    /// The handler's name (the fn name unless `name = "..."`).
    pub name: String,
    /// The pattern its service's queue is bound with: a typed handler's event pattern
    /// ([`Event::PATTERN`](crate::Event::PATTERN)), narrowed by the pattern written in
    /// `#[handler("...")]`.
    pub pattern: String,
    /// The key of its typed event; `None` for `RawEvent` handlers.
    pub event_key: Option<String>,
    /// The service it is reserved for (`service = "..."`), if any.
    pub service: Option<String>,
    /// Whether its pattern is for events other services define (`foreign`): `build()`
    /// does not warn when it matches none of the event types linked into the binary.
    pub expects_foreign_events: bool,
    /// The module it was declared in.
    pub module_path: String,
    /// The source file it was declared in, as `file!()` names it.
    pub file: String,
    /// The line of the fn's name in [`file`](Self::file).
    pub line: u32,
}

impl HandlerInfo {
    fn of(r: &HandlerRegistration) -> Self {
        Self {
            name: r.name.to_owned(),
            pattern: r.binding(),
            event_key: r.event_key.map(str::to_owned),
            service: r.service.map(str::to_owned),
            expects_foreign_events: r.foreign,
            module_path: r.module_path.to_owned(),
            file: r.file.to_owned(),
            line: r.line,
        }
    }
}

/// Every handler `#[handler]` registered in this binary, in a stable order (module, name).
///
/// ```
/// for handler in pubsub::registry::registered_handlers() {
///     println!("{} <- {}", handler.name, handler.pattern);
/// }
/// ```
pub fn registered_handlers() -> Vec<HandlerInfo> {
    let mut all: Vec<HandlerInfo> = registrations().map(|(_, info)| info).collect();
    all.sort_by(|a, b| (&a.module_path, &a.name).cmp(&(&b.module_path, &b.name)));
    all
}

pub(crate) fn registrations() -> impl Iterator<Item = (&'static HandlerRegistration, HandlerInfo)> {
    inventory::iter::<HandlerRegistration>
        .into_iter()
        .map(|r| (r, HandlerInfo::of(r)))
}
