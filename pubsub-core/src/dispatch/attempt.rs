//! One handler attempt, isolated: panics caught, time bounded from outside the handler,
//! abandoned at the shutdown deadline.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::watch;
use tracing::Instrument;

use super::ResolvedHandler;
use crate::context::Context;
use crate::handler_error::{HandlerError, HandlerErrorKind};
use crate::handler_input::{Answer, Input};

/// How handlers run.
///
/// ```
/// use pubsub::{Bus, Isolation};
/// let builder = Bus::builder().isolation(Isolation::Inline); // measured speed, no guard
/// # let _ = builder;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Isolation {
    /// Every handler attempt runs in a task of its own (the default). Its timeout is
    /// enforced from outside that task, so it fires even when the handler blocks its
    /// thread or spins (on a multi-threaded runtime); handlers of different deliveries
    /// use every core; a panic is that attempt's failure.
    #[default]
    Task,
    /// Handlers run on the bus's consumer task, concurrently up to the prefetch: cheaper
    /// (no task spawn per attempt), but a handler that blocks its thread stalls every
    /// delivery of the bus, and its timeout is only noticed when it yields. For handlers
    /// that only await I/O, measured to be worth it.
    Inline,
}

/// How long an abandoned (aborted) handler task is awaited at shutdown before the bus
/// stops waiting for it.
const ABORT_GRACE: Duration = Duration::from_secs(2);

/// The bus's "give up on in-flight deliveries" signal, raised at the shutdown deadline.
#[derive(Debug, Clone)]
pub(crate) struct Abandon(pub(crate) watch::Receiver<bool>);

impl Abandon {
    /// Completes once raised (or once the bus is gone).
    pub(crate) async fn raised(&self) {
        let mut receiver = self.0.clone();
        let _ = receiver.wait_for(|raised| *raised).await;
    }
}

/// How one attempt ended.
pub(super) enum AttemptResult {
    Done(Result<Answer, HandlerError>),
    /// Given up at the shutdown deadline.
    Abandoned,
}

/// Runs one attempt of `handler`.
pub(super) async fn run(
    isolation: Isolation,
    handler: &ResolvedHandler,
    input: Input,
    ctx: Context,
    abandon: &Abandon,
) -> AttemptResult {
    match isolation {
        Isolation::Task => in_task(handler, input, ctx, abandon).await,
        Isolation::Inline => {
            tokio::select! {
                biased;
                result = inline(handler, input, ctx) => AttemptResult::Done(result),
                () = abandon.raised() => AttemptResult::Abandoned,
            }
        }
    }
}

async fn in_task(
    handler: &ResolvedHandler,
    input: Input,
    ctx: Context,
    abandon: &Abandon,
) -> AttemptResult {
    let call = std::sync::Arc::clone(&handler.call);
    // the task is logged within the delivery's span, as an inline handler would be
    let span = tracing::Span::current();
    let mut task = tokio::spawn(async move { call(input, ctx).await }.instrument(span));
    let timeout = handler.timeout;
    let joined = tokio::select! {
        biased;
        joined = tokio::time::timeout(timeout, &mut task) => joined,
        () = abandon.raised() => {
            task.abort();
            if tokio::time::timeout(ABORT_GRACE, task).await.is_err() {
                tracing::error!(handler = %handler.name, grace = ?ABORT_GRACE, "an abandoned handler did not stop (does it block its thread?)");
            }
            return AttemptResult::Abandoned;
        }
    };
    // `main` returned under a running bus: not a handler failure (the run loop says it)
    if matches!(&joined, Ok(Err(join)) if join.is_cancelled())
        && crate::runtime_end::runtime_is_ending().await
    {
        return AttemptResult::Abandoned;
    }
    AttemptResult::Done(match joined {
        Ok(Ok(result)) => result,
        Ok(Err(join)) if join.is_panic() => Err(panicked(join.into_panic())),
        Ok(Err(join)) => Err(HandlerError::with_kind(
            HandlerErrorKind::Panicked,
            format!("the handler task ended: {join}"),
        )),
        Err(_) => {
            // Aborting takes effect at the handler's next await; one that blocks its
            // thread finishes that block first, but the delivery does not wait for it.
            task.abort();
            Err(timed_out(timeout))
        }
    })
}

/// On the caller's task: panics caught, time bounded when the handler yields.
async fn inline(
    handler: &ResolvedHandler,
    input: Input,
    ctx: Context,
) -> Result<Answer, HandlerError> {
    let future = match std::panic::catch_unwind(AssertUnwindSafe(|| (handler.call)(input, ctx))) {
        Ok(future) => future,
        Err(panic) => return Err(panicked(panic)),
    };
    // a handler that finishes on its first poll arms no timer; one that waits gets its
    // timeout from then on
    let guarded = AssertUnwindSafe(future).catch_unwind();
    match crate::deadline::within(handler.timeout, guarded).await {
        Some(outcome) => outcome.unwrap_or_else(|panic| Err(panicked(panic))),
        None => Err(timed_out(handler.timeout)),
    }
}

fn timed_out(timeout: Duration) -> HandlerError {
    HandlerError::with_kind(
        HandlerErrorKind::TimedOut,
        format!("no result within {timeout:?}"),
    )
}

fn panicked(panic: Box<dyn Any + Send>) -> HandlerError {
    HandlerError::with_kind(HandlerErrorKind::Panicked, panic_message(panic))
}

/// The message of a panic payload.
pub(super) fn panic_message(panic: Box<dyn Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}
