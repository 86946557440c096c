//! The dispatcher: from one delivery to a settlement.
//!
//! Every matching handler runs isolated (caught panic, own timeout, own retries), the
//! payload is decoded once per event type, and the delivery is acked only if every
//! handler succeeded; otherwise it is dead-lettered with the reason and the names of the
//! handlers that failed.

use std::any::{Any, TypeId};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::FutureExt;
use smallvec::SmallVec;
use tracing::Instrument;

use crate::context::{Context, DeliveryScope};
use crate::error::CodecError;
use crate::handler::{Decoder, HandlerError, HandlerErrorKind, Input, Shared};
use crate::metadata::Message;
use crate::publish::Publisher;
use crate::registry::DynCall;
use crate::retry::RetryPolicy;
use crate::router::Router;

thread_local! {
    /// Reused routing buffer: a lookup allocates nothing.
    static ROUTE_SCRATCH: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

use crate::state::StateMap;
use crate::transport::{DeadLetter, Delivery, Settlement};

/// A handler with its policy resolved for one bus.
pub(crate) struct ResolvedHandler {
    pub(crate) name: Arc<str>,
    pub(crate) decoder: Option<Decoder>,
    pub(crate) timeout: Duration,
    pub(crate) policy: RetryPolicy,
    pub(crate) call: DynCall,
}

/// One handler attempt, as reported to an observer.
#[derive(Debug)]
pub(crate) struct Attempt<'a> {
    pub(crate) handler: &'a str,
    pub(crate) message: &'a Arc<Message>,
    pub(crate) attempt: u32,
    pub(crate) result: Result<(), &'a HandlerError>,
}

/// Watches the dispatcher (used by the test harness).
pub(crate) trait Observer: Send + Sync + 'static {
    fn attempt(&self, attempt: &Attempt<'_>);
}

/// Counters of one bus, readable through [`Bus::stats`](crate::Bus::stats).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) deliveries: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) unhandled: AtomicU64,
    pub(crate) handler_failures: AtomicU64,
    pub(crate) settle_errors: AtomicU64,
    pub(crate) requeued: AtomicU64,
}

pub(crate) struct Dispatcher {
    pub(crate) handlers: Vec<ResolvedHandler>,
    pub(crate) router: Router,
    pub(crate) publisher: Publisher,
    pub(crate) state: Arc<StateMap>,
    pub(crate) max_message_size: usize,
    pub(crate) observer: Option<Arc<dyn Observer>>,
    pub(crate) counters: Arc<Counters>,
}

impl Dispatcher {
    /// Handles one delivery and settles it with the transport. Never panics: a panic in
    /// handling dead-letters the message with the reason.
    pub(crate) async fn dispatch(self: Arc<Self>, delivery: Delivery) {
        let Delivery {
            message,
            redelivered,
            acker,
        } = delivery;
        let span = tracing::info_span!(
            "delivery",
            service = %self.publisher.service,
            id = %message.metadata.id,
            key = %message.metadata.key,
            redelivered,
        );
        async move {
            self.counters.deliveries.fetch_add(1, Ordering::Relaxed);
            let handled = AssertUnwindSafe(self.handle(Arc::clone(&message), redelivered))
                .catch_unwind()
                .await;
            let (id, key) = (&message.metadata.id, &message.metadata.key);
            let settlement = handled.unwrap_or_else(|panic| {
                let reason = format!("the dispatcher panicked: {}", panicked(panic));
                tracing::error!(%id, %key, %reason, "dead-lettering");
                dead_letter(reason, Vec::new())
            });
            let counter = match &settlement {
                Settlement::Ack => &self.counters.acked,
                Settlement::DeadLetter(_) => &self.counters.dead_lettered,
                Settlement::Requeue => &self.counters.requeued,
            };
            match acker.settle(settlement).await {
                Ok(()) => {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => {
                    self.counters.settle_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(%id, %key, %error, "could not settle the delivery; the broker will redeliver it");
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn handle(&self, message: Arc<Message>, redelivered: bool) -> Settlement {
        if let Some(reason) = self.reject_reason(&message) {
            let (id, key) = (&message.metadata.id, &message.metadata.key);
            tracing::error!(%id, %key, %reason, "bad input: dead-lettering");
            return dead_letter(reason, Vec::new());
        }
        let matched: SmallVec<[usize; 8]> = ROUTE_SCRATCH.with_borrow_mut(|scratch| {
            self.router.route_into(&message.metadata.key, scratch);
            SmallVec::from_slice(scratch)
        });
        if matched.is_empty() {
            self.counters.unhandled.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("no handler matches; acked");
            return Settlement::Ack;
        }
        let scope = Arc::new(DeliveryScope {
            message,
            redelivered,
            publisher: self.publisher.clone(),
            state: Arc::clone(&self.state),
        });
        let mut decoded = decode_once(&self.handlers, &matched, &scope.message);
        let mut matched = matched;
        matched.retain(|index| !superseded(&self.handlers[*index], &decoded));
        let run = |index: usize, decoded: &Decoded| {
            let handler = &self.handlers[index];
            let payload = handler
                .decoder
                .and_then(|d| decoded.iter().find(|(t, _, _)| *t == (d.type_id)()))
                .map(|(_, _, result)| result.clone());
            self.run_handler(handler, Arc::clone(&scope), payload)
                .map(move |result| {
                    result
                        .err()
                        .map(|(error, attempts)| (index, error, attempts))
                })
        };
        // The runs are created before waiting, and the decoded payloads dropped, so that
        // only the handlers hold them: the last one takes its value without a copy.
        let failures: SmallVec<[(usize, HandlerError, u32); 2]> = if let [only] = matched[..] {
            let single = run(only, &decoded);
            decoded.clear();
            single.await.into_iter().collect()
        } else {
            let all = futures::future::join_all(matched.iter().map(|&index| run(index, &decoded)));
            decoded.clear();
            all.await.into_iter().flatten().collect()
        };
        if failures.is_empty() {
            return Settlement::Ack;
        }
        let reason = failures
            .iter()
            .map(|(i, e, attempts)| {
                format!(
                    "handler `{}` failed after {attempts} attempt(s): {e}",
                    self.handlers[*i].name
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        let names = failures
            .iter()
            .map(|(i, _, _)| self.handlers[*i].name.to_string())
            .collect();
        let (id, key) = (&scope.message.metadata.id, &scope.message.metadata.key);
        tracing::error!(%id, %key, %reason, "dead-lettering");
        dead_letter(reason, names)
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

    /// Runs one handler with its retries; the error carries the number of attempts made.
    /// The first attempt gets the payload decoded for every handler of its type; a retry
    /// decodes again (rare, and it lets the first attempt own the value without a copy).
    async fn run_handler(
        &self,
        handler: &ResolvedHandler,
        scope: Arc<DeliveryScope>,
        payload: Option<Result<Shared, CodecError>>,
    ) -> Result<(), (HandlerError, u32)> {
        let mut first = match payload {
            Some(Err(error)) => {
                let error = HandlerError::with_kind(HandlerErrorKind::Decode, error.to_string());
                self.counters
                    .handler_failures
                    .fetch_add(1, Ordering::Relaxed);
                self.observe(handler, &scope.message, 1, Err(&error));
                return Err((error, 1));
            }
            Some(Ok(shared)) => Some(shared),
            None => None,
        };
        let mut attempt = 1;
        loop {
            let decoded = match (first.take(), handler.decoder) {
                (Some(shared), _) => Some(shared),
                (None, Some(decoder)) => match decode_caught(decoder, &scope.message) {
                    Ok(shared) => Some(shared),
                    Err(error) => {
                        let error =
                            HandlerError::with_kind(HandlerErrorKind::Decode, error.to_string());
                        self.counters
                            .handler_failures
                            .fetch_add(1, Ordering::Relaxed);
                        self.observe(handler, &scope.message, attempt, Err(&error));
                        return Err((error, attempt));
                    }
                },
                (None, None) => None,
            };
            let input = Input {
                message: Arc::clone(&scope.message),
                decoded,
            };
            let ctx = Context::new(Arc::clone(&scope), Arc::clone(&handler.name), attempt);
            let result = run_once(handler, input, ctx).await;
            self.observe(
                handler,
                &scope.message,
                attempt,
                result.as_ref().map(|_| ()),
            );
            match result {
                Ok(()) => return Ok(()),
                Err(error) => {
                    self.counters
                        .handler_failures
                        .fetch_add(1, Ordering::Relaxed);
                    if !error.is_retryable() || attempt > handler.policy.max_retries {
                        return Err((error, attempt));
                    }
                    let wait = handler.policy.backoff(attempt);
                    let (id, key) = (&scope.message.metadata.id, &scope.message.metadata.key);
                    tracing::warn!(%id, %key, handler = %handler.name, attempt, %error, retry_in = ?wait, "handler failed; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }

    fn observe(
        &self,
        handler: &ResolvedHandler,
        message: &Arc<Message>,
        attempt: u32,
        result: Result<(), &HandlerError>,
    ) {
        if let Some(observer) = &self.observer {
            observer.attempt(&Attempt {
                handler: &handler.name,
                message,
                attempt,
                result,
            });
        }
    }
}

fn dead_letter(reason: String, failed_handlers: Vec<String>) -> Settlement {
    Settlement::DeadLetter(DeadLetter {
        reason,
        failed_handlers,
    })
}

/// Decodes the payload once per distinct event type among the matched handlers.
fn decode_once(handlers: &[ResolvedHandler], matched: &[usize], message: &Message) -> Decoded {
    let mut decoded = Decoded::new();
    for decoder in matched.iter().filter_map(|&i| handlers[i].decoder) {
        let type_id = (decoder.type_id)();
        if !decoded.iter().any(|(t, _, _)| *t == type_id) {
            decoded.push((type_id, decoder.key, decode_caught(decoder, message)));
        }
    }
    decoded
}

/// Payloads decoded for one delivery: per event type, its key and the result.
type Decoded = SmallVec<[(TypeId, &'static str, Result<Shared, CodecError>); 2]>;

/// Whether a handler's payload failed only because the message is another version (or
/// encoding) of its key, which another event type of this consumer did decode: then the
/// message is that type's, not a failure of this handler.
fn superseded(handler: &ResolvedHandler, decoded: &Decoded) -> bool {
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
fn decode_caught(decoder: Decoder, message: &Message) -> Result<Shared, CodecError> {
    std::panic::catch_unwind(AssertUnwindSafe(|| (decoder.decode)(message))).unwrap_or_else(
        |panic| {
            Err(CodecError::Malformed {
                key: decoder.key,
                content_type: "payload",
                reason: format!("the decoder panicked: {}", panicked(panic)),
            })
        },
    )
}

/// One attempt: panics caught, time bounded.
async fn run_once(
    handler: &ResolvedHandler,
    input: Input,
    ctx: Context,
) -> Result<(), HandlerError> {
    let future = match std::panic::catch_unwind(AssertUnwindSafe(|| (handler.call)(input, ctx))) {
        Ok(future) => future,
        Err(panic) => return Err(panicked_error(panic)),
    };
    let mut guarded = std::pin::pin!(AssertUnwindSafe(future).catch_unwind());
    // A handler that finishes on its first poll never arms a timer (no clock read, no
    // timer-wheel entry); one that waits gets its timeout from then on.
    let outcome = match futures::poll!(guarded.as_mut()) {
        std::task::Poll::Ready(outcome) => outcome,
        std::task::Poll::Pending => match tokio::time::timeout(handler.timeout, guarded).await {
            Ok(outcome) => outcome,
            Err(_) => {
                return Err(HandlerError::with_kind(
                    HandlerErrorKind::TimedOut,
                    format!("no result within {:?}", handler.timeout),
                ));
            }
        },
    };
    outcome.unwrap_or_else(|panic| Err(panicked_error(panic)))
}

fn panicked_error(panic: Box<dyn Any + Send>) -> HandlerError {
    HandlerError::with_kind(HandlerErrorKind::Panicked, panicked(panic))
}

/// The message of a panic payload.
fn panicked(panic: Box<dyn Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}
