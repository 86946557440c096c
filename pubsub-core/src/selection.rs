//! Which link-time handlers a bus runs: [`HandlerSelection`] and [`handlers!`](crate::handlers).

use std::sync::Arc;

use crate::error::Error;
use crate::handler::Handler;
use crate::registration::{HandlerInfo, HandlerRegistration, registered_handlers, registrations};

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
    /// Handlers reserved for this bus's service, plus those without `service = "..."`
    /// (the default). As the default (no [`select_handlers`](crate::BusBuilder::select_handlers)
    /// call), those without a service run on one service's buses per process (see
    /// [Which bus runs a handler](crate::BusBuilder#which-bus-runs-a-handler)); selected
    /// explicitly, they run on this bus whatever other bus runs them.
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
/// use pubsub::testing::TestHarness;
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
