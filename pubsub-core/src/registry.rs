//! Which handlers a bus runs: link-time registrations (`#[handler]`), a selection of them,
//! and handlers built at run time.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::context::Context;
use crate::error::Error;
use crate::event::Event;
use crate::handler::{
    Decoder, HandlerError, HandlerInput, HandlerRegistration, Input, IntoHandlerResult, RawEvent,
    RetrySpec,
};

/// A description of a handler, as `#[handler]` registered it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandlerInfo {
    /// The handler's name (the fn name unless `name = "..."`).
    pub name: String,
    /// The pattern its service's queue is bound with (a typed handler's event key).
    pub pattern: String,
    /// The key of its typed event; `None` for `RawEvent` handlers.
    pub event_key: Option<String>,
    /// The service it is reserved for (`service = "..."`), if any.
    pub service: Option<String>,
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
            pattern: r.pattern.to_owned(),
            event_key: r.event_key.map(str::to_owned),
            service: r.service.map(str::to_owned),
            module_path: r.module_path.to_owned(),
            file: r.file.to_owned(),
            line: r.line,
        }
    }
}

/// Where a handler was declared, so that an error about it (such as
/// [`Error::DuplicateHandler`]) can point at the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HandlerOrigin {
    /// A `#[handler]` fn.
    Attribute {
        /// The module the fn is declared in.
        module_path: &'static str,
        /// The source file, as `file!()` names it.
        file: &'static str,
        /// The line of the fn's name.
        line: u32,
    },
    /// A [`Handler::typed`] or [`Handler::raw`] call.
    Runtime {
        /// The source file of the call, as `file!()` names it.
        file: &'static str,
        /// The line of the call.
        line: u32,
    },
}

impl HandlerOrigin {
    /// The source file.
    pub fn file(&self) -> &'static str {
        match *self {
            Self::Attribute { file, .. } | Self::Runtime { file, .. } => file,
        }
    }

    /// The line in [`file`](Self::file).
    pub fn line(&self) -> u32 {
        match *self {
            Self::Attribute { line, .. } | Self::Runtime { line, .. } => line,
        }
    }
}

impl HandlerOrigin {
    #[track_caller]
    fn caller() -> Self {
        let location = std::panic::Location::caller();
        Self::Runtime {
            file: location.file(),
            line: location.line(),
        }
    }
}

impl std::fmt::Display for HandlerOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Attribute {
                module_path,
                file,
                line,
            } => write!(f, "the #[handler] fn in {module_path} ({file}:{line})"),
            Self::Runtime { file, line } => write!(f, "the Handler built at {file}:{line}"),
        }
    }
}

/// Every handler `#[handler]` registered in this binary, in a stable order (module, name).
///
/// ```
/// for handler in pubsub::registered_handlers() {
///     println!("{} <- {}", handler.name, handler.pattern);
/// }
/// ```
pub fn registered_handlers() -> Vec<HandlerInfo> {
    let mut all: Vec<HandlerInfo> = registrations().map(|(_, info)| info).collect();
    all.sort_by(|a, b| (&a.module_path, &a.name).cmp(&(&b.module_path, &b.name)));
    all
}

fn registrations() -> impl Iterator<Item = (&'static HandlerRegistration, HandlerInfo)> {
    inventory::iter::<HandlerRegistration>
        .into_iter()
        .map(|r| (r, HandlerInfo::of(r)))
}

/// Which of the link-time handlers a bus runs.
///
/// ```
/// use pubsub::HandlerSelection;
/// // only two handlers, e.g. in a unit test; `pubsub::handlers![send_email, audit]` does
/// // the same with paths to the fns, which the compiler checks
/// let only = HandlerSelection::named(["send_email", "audit"]);
/// // everything declared under a module
/// let email = HandlerSelection::matching(|h| h.module_path.starts_with("shop::email"));
/// # let _ = (only, email);
/// ```
#[derive(Clone, Default)]
pub enum HandlerSelection {
    /// Handlers without `service = "..."`, plus those reserved for this bus's service
    /// (the default).
    #[default]
    ForService,
    /// Every registered handler.
    All,
    /// None: only handlers added with [`BusBuilder::handler`](crate::BusBuilder::handler).
    None,
    /// Handlers with these names.
    Named(Vec<String>),
    /// These `#[handler]` fns, named by path with [`handlers!`](crate::handlers).
    Fns(Vec<HandlerFn>),
    /// Handlers for which the predicate holds.
    Matching(Arc<dyn Fn(&HandlerInfo) -> bool + Send + Sync>),
}

impl std::fmt::Debug for HandlerSelection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ForService => f.write_str("ForService"),
            Self::All => f.write_str("All"),
            Self::None => f.write_str("None"),
            Self::Named(names) => f.debug_tuple("Named").field(names).finish(),
            Self::Fns(fns) => f.debug_tuple("Fns").field(fns).finish(),
            Self::Matching(_) => f.write_str("Matching(..)"),
        }
    }
}

impl HandlerSelection {
    /// Handlers with these names.
    pub fn named<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::Named(names.into_iter().map(Into::into).collect())
    }

    /// Handlers for which `predicate` holds.
    pub fn matching(predicate: impl Fn(&HandlerInfo) -> bool + Send + Sync + 'static) -> Self {
        Self::Matching(Arc::new(predicate))
    }

    fn selects(&self, info: &HandlerInfo, service: &str) -> bool {
        match self {
            Self::ForService => info.service.as_deref().is_none_or(|s| s == service),
            Self::All => true,
            Self::None => false,
            Self::Named(names) => names.contains(&info.name),
            Self::Fns(fns) => fns.iter().any(|f| f.is(info)),
            Self::Matching(predicate) => predicate(info),
        }
    }
}

/// A `#[handler]` fn as [`handlers!`](crate::handlers) names it, for
/// [`HandlerSelection::Fns`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HandlerFn {
    name: &'static str,
    module_path: &'static str,
}

impl HandlerFn {
    pub(crate) const fn new(name: &'static str, module_path: &'static str) -> Self {
        Self { name, module_path }
    }

    /// The handler's registered name (the fn's name unless `#[handler(name = "...")]`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The module the fn is declared in.
    pub fn module_path(&self) -> &'static str {
        self.module_path
    }

    /// Whether `info` describes this fn's registration.
    fn is(&self, info: &HandlerInfo) -> bool {
        info.name == self.name && info.module_path == self.module_path
    }
}

/// Implemented by the hidden item `#[handler]` declares under its fn's name (in the type
/// namespace, beside the fn), so that [`handlers!`](crate::handlers) can turn a path to the
/// fn into a [`HandlerFn`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a `#[handler]` fn",
    label = "not a `#[handler]` fn",
    note = "`pubsub::handlers![..]` takes paths to fns annotated with `#[handler]`"
)]
pub trait IsHandlerFn {
    /// The fn's registration, as a selection names it.
    const HANDLER: HandlerFn;
}

/// Selects `#[handler]` fns by their paths, checked by the compiler: a
/// [`HandlerSelection`] for [`BusBuilder::select_handlers`](crate::BusBuilder::select_handlers).
///
/// A path that does not lead to a `#[handler]` fn — a typo, a plain fn — does not compile,
/// where [`HandlerSelection::named`] would fail only when the bus is built. A path selects
/// exactly that fn, even if a handler in another module has the same name. The paths are
/// written as for calling the fn: relative to the current module, through `use`
/// declarations and re-exports, and only where the fn is visible.
///
/// Each path names the hidden struct `#[handler]` declares under the fn's name, which is
/// how the compiler words its errors: "expected type, found function `plain`" for a fn
/// without `#[handler]`, "cannot find type `sned_email`" for a typo, "struct `audit` is
/// private" for a fn that is not visible here.
///
/// ```
/// use pubsub::prelude::*;
/// use pubsub::TestHarness;
///
/// #[derive(Debug, Clone, Serialize, Deserialize, Event)]
/// #[event(domain = "user", action = "registered")]
/// struct UserRegistered { email: String }
///
/// #[handler]
/// async fn send_welcome(_user: UserRegistered) -> Result<(), HandlerError> {
///     Ok(())
/// }
///
/// #[handler]
/// async fn add_to_newsletter(_user: UserRegistered) -> Result<(), HandlerError> {
///     Ok(())
/// }
///
/// mod billing {
///     use pubsub::prelude::*;
///
///     #[handler("user.*", name = "billing-audit")]
///     pub(crate) async fn audit(_event: RawEvent) -> Result<(), HandlerError> {
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> pubsub::Result<()> {
/// let harness = TestHarness::start(
///     Bus::builder().select_handlers(pubsub::handlers![send_welcome, billing::audit]),
/// )
/// .await?;
/// harness.publish(&UserRegistered { email: "ada@example.com".into() }).await?;
/// harness.settled().await?;
/// // the bus runs these two, not `add_to_newsletter`
/// assert_eq!(harness.bus().handler_names(), ["send_welcome", "billing-audit"]);
/// assert_eq!(harness.calls("send_welcome").len(), 1);
/// assert_eq!(harness.calls("billing-audit").len(), 1); // its registered name
/// harness.shutdown().await
/// # }
/// ```
///
/// A path to anything but a `#[handler]` fn is a compile error:
///
/// ```compile_fail
/// async fn plain(_event: pubsub::RawEvent) -> Result<(), pubsub::HandlerError> {
///     Ok(())
/// }
/// let selection = pubsub::handlers![plain]; // expected type, found function `plain`
/// ```
#[macro_export]
macro_rules! handlers {
    ($($handler:path),* $(,)?) => {
        $crate::HandlerSelection::Fns(::std::vec![
            $(<$handler as $crate::__private::IsHandlerFn>::HANDLER),*
        ])
    };
}

pub(crate) type DynCall =
    Arc<dyn Fn(Input, Context) -> BoxFuture<'static, Result<(), HandlerError>> + Send + Sync>;

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
    /// A handler for the typed event `E`, bound to `E::KEY`. Errors about it name the
    /// caller's file and line.
    #[track_caller]
    pub fn typed<E, F, Fut, R>(name: impl Into<String>, f: F) -> Self
    where
        E: Event + Clone,
        F: Fn(E, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoHandlerResult,
    {
        let origin = HandlerOrigin::caller();
        Self::from_fn::<E, _, _, _>(name, E::KEY.to_owned(), origin, f)
    }

    /// A handler for every event whose key matches `pattern` (checked by `build()`). Errors
    /// about it name the caller's file and line.
    #[track_caller]
    pub fn raw<F, Fut, R>(name: impl Into<String>, pattern: impl Into<String>, f: F) -> Self
    where
        F: Fn(RawEvent, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoHandlerResult,
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
        R: IntoHandlerResult,
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
            call,
        }
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

    fn from_registration(r: &'static HandlerRegistration) -> Self {
        let call = r.call;
        Self {
            name: Arc::from(r.name),
            pattern: r.pattern.to_owned(),
            decoder: r.decoder,
            timeout: r.timeout,
            retry: r.retry.into(),
            origin: HandlerOrigin::Attribute {
                module_path: r.module_path,
                file: r.file,
                line: r.line,
            },
            call: Arc::new(move |input, ctx| call(input, ctx)),
        }
    }
}

/// The link-time handlers `selection` picks for `service`, as runtime handlers. Naming a
/// handler that does not exist is an error (a typo would otherwise test nothing).
pub(crate) fn select(selection: &HandlerSelection, service: &str) -> Result<Vec<Handler>, Error> {
    let mut picked: Vec<(&'static HandlerRegistration, HandlerInfo)> = registrations()
        .filter(|(_, info)| selection.selects(info, service))
        .collect();
    let missing: Vec<String> = match selection {
        HandlerSelection::Named(names) => names
            .iter()
            .filter(|n| !picked.iter().any(|(_, info)| info.name == **n))
            .cloned()
            .collect(),
        // Cannot happen while a fn's registration is linked whenever its path is used.
        HandlerSelection::Fns(fns) => fns
            .iter()
            .filter(|f| !picked.iter().any(|(_, info)| f.is(info)))
            .map(|f| format!("{}::{}", f.module_path, f.name))
            .collect(),
        _ => Vec::new(),
    };
    if !missing.is_empty() {
        let registered = registered_handlers().into_iter().map(|h| h.name).collect();
        return Err(Error::UnknownHandler {
            names: missing,
            registered,
        });
    }
    picked.sort_by(|(_, a), (_, b)| (&a.module_path, &a.name).cmp(&(&b.module_path, &b.name)));
    Ok(picked
        .into_iter()
        .map(|(r, _)| Handler::from_registration(r))
        .collect())
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
