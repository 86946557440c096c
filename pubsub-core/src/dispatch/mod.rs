//! The dispatcher: from one delivery to the settlement the bus hands the transport.
//!
//! Bad input and poison messages are dead-lettered before any handler runs; every matching
//! handler runs isolated ([`attempt`]) with its own retries; the payload is decoded once
//! per event type ([`decode`]); the delivery is acked only if every handler succeeded,
//! otherwise retried later or dead-lettered with a bounded reason ([`reason`]).

mod attempt;
mod decode;
mod reason;
mod respond;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures::FutureExt;
use smallvec::SmallVec;

pub(crate) use attempt::Abandon;
use attempt::AttemptResult;
pub use attempt::Isolation;
use decode::{Decoded, decode_caught, decode_once, superseded};

use crate::codec::CodecError;
use crate::context::{Context, DeliveryScope};
use crate::handler::DynCall;
use crate::handler_error::{HandlerError, HandlerErrorKind};
use crate::handler_input::{Answer, Decoder, Input, Shared};
use crate::metadata::Message;
use crate::publish::Publisher;
use crate::retry::RetryPolicy;
use crate::router::Router;
use crate::state::StateMap;
use crate::stats::Counters;
use crate::transport::{DeadLetter, Retry, Settlement};

thread_local! {
    /// Reused routing buffer: a lookup allocates nothing.
    static ROUTE_SCRATCH: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A handler with its policy resolved for one bus.
pub(crate) struct ResolvedHandler {
    pub(crate) name: Arc<str>,
    pub(crate) decoder: Option<Decoder>,
    pub(crate) timeout: Duration,
    pub(crate) policy: RetryPolicy,
    pub(crate) call: DynCall,
    /// Its runs now (attempts and in-process backoffs), for the shutdown log.
    pub(crate) running: AtomicUsize,
}

/// Counts one run of a handler while it lasts.
struct Running<'a>(&'a AtomicUsize);

impl<'a> Running<'a> {
    fn start(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One handler attempt, as reported to an observer. Only the test harness observes (the
/// `testing` feature); without it the fields are never read.
#[derive(Debug)]
#[cfg_attr(not(feature = "testing"), allow(dead_code))]
pub(crate) struct Attempt<'a> {
    pub(crate) handler: &'a str,
    pub(crate) message: &'a Arc<Message>,
    /// The bus's sequence number of the delivery (a redelivery gets a new one).
    pub(crate) delivery: u64,
    pub(crate) attempt: u32,
    pub(crate) result: Result<(), &'a HandlerError>,
}

/// Watches the dispatcher (used by the test harness).
pub(crate) trait Observer: Send + Sync + 'static {
    fn attempt(&self, attempt: &Attempt<'_>);
}

/// What the dispatcher needs of a delivery.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) message: Arc<Message>,
    pub(crate) redelivered: bool,
    pub(crate) delivery_count: Option<u32>,
    /// Its position in the stream it was read from; `None` for queues.
    pub(crate) offset: Option<u64>,
}

/// How handling a delivery ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    Settle(Settlement),
    /// Given up at the shutdown deadline: the bus requeues it (or leaves it unsettled).
    Abandoned,
}

/// How the dispatcher retries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetrySettings {
    /// Backoffs longer than this leave the prefetch window, when the transport can
    /// deliver again after a delay.
    pub(crate) in_process_limit: Duration,
    /// The transport can deliver again after a delay.
    pub(crate) delayed_redelivery: bool,
}

pub(crate) struct Dispatcher {
    pub(crate) handlers: Vec<ResolvedHandler>,
    pub(crate) router: Router,
    pub(crate) publisher: Publisher,
    pub(crate) state: Arc<StateMap>,
    pub(crate) max_message_size: usize,
    /// Deliveries past this count are dead-lettered as poison.
    pub(crate) max_deliveries: Option<u32>,
    pub(crate) retry: RetrySettings,
    pub(crate) isolation: Isolation,
    /// Consuming the service's dead-letter queue: every handler runs (the failed-handler
    /// names are the original service's), and a failure delivers the message again after
    /// this delay instead of dead-lettering it a second time.
    pub(crate) dead_letter_source: Option<Duration>,
    pub(crate) observer: Option<Arc<dyn Observer>>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) sequence: AtomicU64,
}

/// How one handler's run (its attempts) ended.
enum HandlerOutcome {
    /// With the reply of a request handler.
    Succeeded(Answer),
    Failed {
        error: HandlerError,
        attempts: u32,
    },
    /// Worth retrying after `delay`, outside the prefetch window.
    Later {
        error: HandlerError,
        attempts: u32,
        delay: Duration,
    },
    Abandoned,
}

impl Dispatcher {
    /// The handlers running now, each with how many runs if more than one (`name ×3`).
    pub(crate) fn running_handlers(&self) -> Vec<String> {
        self.handlers
            .iter()
            .filter_map(|h| match h.running.load(Ordering::Relaxed) {
                0 => None,
                1 => Some(h.name.to_string()),
                n => Some(format!("{} ×{n}", h.name)),
            })
            .collect()
    }

    /// Handles one delivery. Never panics: a panic in handling dead-letters the message.
    pub(crate) async fn dispatch(&self, incoming: &Incoming, abandon: &Abandon) -> Outcome {
        let handled = std::panic::AssertUnwindSafe(self.handle(incoming, abandon))
            .catch_unwind()
            .await;
        let outcome = handled.unwrap_or_else(|panic| {
            let reason = format!("the dispatcher panicked: {}", attempt::panic_message(panic));
            Outcome::Settle(self.dead_letter(&incoming.message, reason, Vec::new()))
        });
        match (outcome, self.dead_letter_source) {
            (Outcome::Settle(Settlement::DeadLetter(_)), Some(delay))
                if self.retry.delayed_redelivery =>
            {
                // a dead letter stays one, with its original headers, and comes back later
                let metadata = &incoming.message.metadata;
                let handlers = metadata
                    .failed_handlers()
                    .map(|names| names.into_iter().map(str::to_owned).collect())
                    .unwrap_or_default();
                let retry = Retry::new(delay, metadata.attempts_spent(), handlers);
                Outcome::Settle(Settlement::Retry(retry))
            }
            (outcome, _) => outcome,
        }
    }

    async fn handle(&self, incoming: &Incoming, abandon: &Abandon) -> Outcome {
        let message = &incoming.message;
        if let Some(reason) = self.reject_reason(message) {
            return Outcome::Settle(self.dead_letter(message, reason, Vec::new()));
        }
        if let Some(reason) = self.poison_reason(incoming.delivery_count) {
            self.counters.poisoned();
            return Outcome::Settle(self.dead_letter(message, reason, Vec::new()));
        }
        if let Some(expired) = self.expired(message) {
            return expired;
        }
        let mut matched: SmallVec<[usize; 8]> = ROUTE_SCRATCH.with_borrow_mut(|scratch| {
            self.router.route_into(&message.metadata.key, scratch);
            SmallVec::from_slice(scratch)
        });
        // A replayed dead letter or a delayed retry runs only the handlers that failed.
        let only = match self.dead_letter_source {
            None => message.metadata.failed_handlers(),
            Some(_) => None,
        };
        if let Some(only) = only {
            matched.retain(|i| only.contains(&&*self.handlers[*i].name));
            if matched.is_empty() {
                tracing::warn!(failed_handlers = ?only, "none of the handlers to run again is on this bus; acked");
            }
        }
        if matched.is_empty() {
            self.counters.unhandled();
            tracing::debug!("no handler matches; acked");
            return Outcome::Settle(Settlement::Ack);
        }
        let spent = message.metadata.attempts_spent();
        let scope = Arc::new(DeliveryScope {
            message: Arc::clone(message),
            redelivered: incoming.redelivered,
            delivery_count: incoming.delivery_count,
            offset: incoming.offset,
            delivery: self.sequence.fetch_add(1, Ordering::Relaxed),
            publisher: self.publisher.clone(),
            state: Arc::clone(&self.state),
        });
        let mut decoded = decode_once(&self.handlers, &matched, message);
        matched.retain(|index| !superseded(&self.handlers[*index], &decoded));
        let run = |index: usize, decoded: &Decoded| {
            let handler = &self.handlers[index];
            let payload = handler
                .decoder
                .and_then(|d| decoded.iter().find(|(t, _, _)| *t == (d.type_id)()))
                .map(|(_, _, result)| result.clone());
            self.run_handler(handler, Arc::clone(&scope), payload, spent + 1, abandon)
                .map(move |outcome| (index, outcome))
        };
        // The runs are created before waiting, and the decoded payloads dropped, so that
        // only the handlers hold them: the last one takes its value without a copy.
        let outcomes: SmallVec<[(usize, HandlerOutcome); 2]> = if let [only] = matched[..] {
            let single = run(only, &decoded);
            decoded.clear();
            SmallVec::from_iter([single.await])
        } else {
            let all = futures::future::join_all(matched.iter().map(|&index| run(index, &decoded)));
            decoded.clear();
            all.await.into_iter().collect()
        };
        match &message.metadata.reply_to {
            Some(reply_to) => self.respond(message, reply_to, outcomes).await,
            None => self.conclude(&scope.message, outcomes),
        }
    }

    /// One settlement from the handlers' outcomes: abandoned if any was; dead-lettered if
    /// any failed for good (naming every handler that failed); retried later if some wait
    /// for a delayed retry; acked otherwise.
    fn conclude(
        &self,
        message: &Message,
        outcomes: SmallVec<[(usize, HandlerOutcome); 2]>,
    ) -> Outcome {
        if outcomes
            .iter()
            .any(|(_, o)| matches!(o, HandlerOutcome::Abandoned))
        {
            return Outcome::Abandoned;
        }
        let mut failed_for_good = false;
        let mut later: Option<(Duration, u32)> = None;
        let mut failures = Vec::new();
        for (index, outcome) in &outcomes {
            let name = &*self.handlers[*index].name;
            match outcome {
                HandlerOutcome::Failed { error, attempts } => {
                    failed_for_good = true;
                    failures.push((name, *attempts, error.to_string()));
                }
                HandlerOutcome::Later {
                    error,
                    attempts,
                    delay,
                } => {
                    let (d, a) = later.unwrap_or_default();
                    later = Some((d.max(*delay), a.max(*attempts)));
                    failures.push((name, *attempts, error.to_string()));
                }
                HandlerOutcome::Succeeded(_) | HandlerOutcome::Abandoned => {}
            }
        }
        let names: Vec<String> = failures.iter().map(|(n, _, _)| (*n).to_owned()).collect();
        match later {
            _ if failed_for_good => {
                let reason = reason::combine(failures);
                Outcome::Settle(self.dead_letter(message, reason, names))
            }
            Some((delay, attempts)) => {
                let (id, key) = (&message.metadata.id, &message.metadata.key);
                tracing::warn!(%id, %key, handlers = ?names, retry_in = ?delay, "handlers failed; delivering again later");
                Outcome::Settle(Settlement::Retry(Retry::new(delay, attempts, names)))
            }
            None => Outcome::Settle(Settlement::Ack),
        }
    }

    /// A dead-letter settlement, its reason bounded, logged with the event id and key.
    fn dead_letter(&self, message: &Message, reason: String, handlers: Vec<String>) -> Settlement {
        let reason = reason::truncate(&reason, reason::TOTAL);
        let (id, key) = (&message.metadata.id, &message.metadata.key);
        tracing::error!(%id, %key, %reason, "dead-lettering");
        Settlement::DeadLetter(DeadLetter::new(reason, handlers))
    }

    /// Input that no handler should see: oversize, or without a key.
    fn reject_reason(&self, message: &Message) -> Option<String> {
        if message.body.len() > self.max_message_size {
            return Some(format!(
                "message of {} bytes exceeds the limit of {} bytes",
                message.body.len(),
                self.max_message_size
            ));
        }
        if message.metadata.key.is_empty() {
            return Some("message has no routing key or type".to_owned());
        }
        None
    }

    /// A message the broker delivered more often than the limit: whatever handles it
    /// kills or hangs its consumer, so it is not handled again.
    fn poison_reason(&self, delivery_count: Option<u32>) -> Option<String> {
        let (count, limit) = (delivery_count?, self.max_deliveries?);
        (count > limit).then(|| {
            format!(
                "delivered {count} times, over the limit of {limit}: its handling never settled (did it crash or hang the consumer?)"
            )
        })
    }

    /// Runs one handler: attempts from `first_attempt`, retried in process while the
    /// backoff is short.
    async fn run_handler(
        &self,
        handler: &ResolvedHandler,
        scope: Arc<DeliveryScope>,
        payload: Option<Result<Shared, CodecError>>,
        first_attempt: u32,
        abandon: &Abandon,
    ) -> HandlerOutcome {
        let _running = Running::start(&handler.running);
        let mut first = match payload {
            Some(Err(error)) => return self.decode_failed(handler, &scope, first_attempt, error),
            Some(Ok(shared)) => Some(shared),
            None => None,
        };
        let mut attempt = first_attempt;
        // a request is retried in process only while its caller waits
        let request = respond::request_deadline(&scope.message);
        loop {
            // The first attempt gets the payload decoded for every handler of its type; a
            // retry decodes again (rare, and it lets the first attempt own the value).
            let decoded = match (first.take(), handler.decoder) {
                (Some(shared), _) => Some(shared),
                (None, Some(decoder)) => match decode_caught(decoder, &scope.message) {
                    Ok(shared) => Some(shared),
                    Err(error) => return self.decode_failed(handler, &scope, attempt, error),
                },
                (None, None) => None,
            };
            let input = Input {
                message: Arc::clone(&scope.message),
                decoded,
            };
            let event_key = handler.decoder.map(|decoder| decoder.key);
            let ctx = Context::new(Arc::clone(&scope), Arc::clone(&handler.name), attempt)
                .of_event(event_key);
            let result = match attempt::run(self.isolation, handler, input, ctx, abandon).await {
                AttemptResult::Done(result) => result,
                AttemptResult::Abandoned => return HandlerOutcome::Abandoned,
            };
            self.observe(handler, &scope, attempt, result.as_ref().map(|_| ()));
            let error = match result {
                Ok(answer) => return HandlerOutcome::Succeeded(answer),
                Err(error) => error,
            };
            self.counters.handler_failed();
            let retries_spent = attempt - 1;
            let wait = handler.policy.backoff(attempt);
            if !error.is_retryable()
                || retries_spent >= handler.policy.max_retries
                || request.is_some_and(|deadline| respond::past(deadline, wait))
            {
                return HandlerOutcome::Failed {
                    error,
                    attempts: attempt,
                };
            }
            if request.is_none()
                && self.retry.delayed_redelivery
                && wait > self.retry.in_process_limit
            {
                return HandlerOutcome::Later {
                    error,
                    attempts: attempt,
                    delay: wait,
                };
            }
            let (id, key) = (&scope.message.metadata.id, &scope.message.metadata.key);
            tracing::warn!(%id, %key, handler = %handler.name, attempt, %error, retry_in = ?wait, "handler failed; retrying");
            tokio::select! {
                biased;
                () = abandon.raised() => return HandlerOutcome::Abandoned,
                () = tokio::time::sleep(wait) => {}
            }
            attempt += 1;
        }
    }

    fn decode_failed(
        &self,
        handler: &ResolvedHandler,
        scope: &DeliveryScope,
        attempt: u32,
        error: CodecError,
    ) -> HandlerOutcome {
        let error = HandlerError::with_kind(HandlerErrorKind::Decode, error.to_string());
        self.counters.handler_failed();
        self.observe(handler, scope, attempt, Err(&error));
        HandlerOutcome::Failed {
            error,
            attempts: attempt,
        }
    }

    fn observe(
        &self,
        handler: &ResolvedHandler,
        scope: &DeliveryScope,
        attempt: u32,
        result: Result<(), &HandlerError>,
    ) {
        if let Some(observer) = &self.observer {
            observer.attempt(&Attempt {
                handler: &handler.name,
                message: &scope.message,
                delivery: scope.delivery,
                attempt,
                result,
            });
        }
    }
}
