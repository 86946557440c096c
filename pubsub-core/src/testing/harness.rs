//! [`TestHarness`]: unit-test handlers on the in-memory transport.

use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::builder::BusBuilder;
use crate::bus::{Bus, RequestCall};
use crate::dispatch::{Attempt, Observer};
use crate::error::{Error, Result};
use crate::event::{Event, is_type_of};
use crate::handler_error::{HandlerError, HandlerErrorKind};
use crate::memory::MemoryTransport;
use crate::metadata::Message;
use crate::request::Request;
use crate::transport::DeadLetteredMessage;

/// Runs a bus on a [`MemoryTransport`] and records what happened, so that a test can
/// publish, wait until everything settled, and assert.
///
/// ```
/// use pubsub::prelude::*;
/// use pubsub::{Bus, HandlerSelection, testing::TestHarness};
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
/// #[event(domain = "cart", action = "checked-out")]
/// struct CheckedOut { cart: u32 }
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
/// #[event(domain = "invoice", action = "issued")]
/// struct InvoiceIssued { cart: u32 }
///
/// #[handler]
/// async fn issue_invoice(event: CheckedOut, ctx: Context) -> Result<(), HandlerError> {
///     ctx.publish(&InvoiceIssued { cart: event.cart }).await?;
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> pubsub::Result<()> {
/// let harness = TestHarness::start(
///     Bus::builder().select_handlers(HandlerSelection::named(["issue_invoice"])),
/// )
/// .await?;
/// harness.publish(&CheckedOut { cart: 7 }).await?;
/// harness.settled().await?;
/// assert_eq!(harness.consumed::<CheckedOut>("issue_invoice"), [CheckedOut { cart: 7 }]);
/// assert_eq!(harness.published::<InvoiceIssued>(), [InvoiceIssued { cart: 7 }]);
/// assert!(harness.dead_letters().is_empty());
/// harness.shutdown().await
/// # }
/// ```
#[derive(Debug)]
pub struct TestHarness {
    bus: Bus,
    transport: MemoryTransport,
    log: Arc<CallLog>,
    task: JoinHandle<Result<()>>,
    timeout: Duration,
}

/// One handler attempt seen by the harness.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandlerCall {
    /// Handler name.
    pub handler: String,
    /// The message it was given.
    pub message: Message,
    /// The bus's sequence number of the delivery: attempts of one delivery share it, a
    /// redelivery of the same event gets a new one.
    pub delivery: u64,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// `None` on success, the failure otherwise.
    pub error: Option<String>,
    /// The kind of the failure (`None` on success).
    pub kind: Option<HandlerErrorKind>,
}

impl HandlerCall {
    /// The routing key of the message the handler was given (`session.42.code_updated`).
    pub fn key(&self) -> &str {
        &self.message.metadata.key
    }
}

#[derive(Debug, Default)]
struct CallLog {
    calls: Mutex<Vec<HandlerCall>>,
    changed: Notify,
}

impl Observer for CallLog {
    fn attempt(&self, attempt: &Attempt<'_>) {
        let call = HandlerCall {
            handler: attempt.handler.to_owned(),
            message: Message::clone(attempt.message),
            delivery: attempt.delivery,
            attempt: attempt.attempt,
            error: attempt.result.err().map(ToString::to_string),
            kind: attempt.result.err().map(HandlerError::kind),
        };
        self.calls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(call);
        self.changed.notify_waiters();
    }
}

impl TestHarness {
    /// Builds the bus on a fresh [`MemoryTransport`] (service `test` unless the builder
    /// names one) and starts it; a bus that reads streams
    /// ([`BusBuilder::stream_consumption`](crate::BusBuilder::stream_consumption)) gets one in stream mode
    /// ([`MemoryTransport::stream_backed`]), whose error stream [`dead_letters`](Self::dead_letters)
    /// reads.
    pub async fn start(builder: BusBuilder) -> Result<Self> {
        let transport = if builder.reads_streams() {
            MemoryTransport::stream_backed()
        } else {
            MemoryTransport::new()
        };
        Self::start_on(builder, transport).await
    }

    /// Like [`start`](Self::start) on a given broker, e.g. one shared with other buses.
    /// The harness always uses `transport`, whatever the builder was given.
    pub async fn start_on(builder: BusBuilder, transport: MemoryTransport) -> Result<Self> {
        transport.record_published();
        let log = Arc::new(CallLog::default());
        let builder = if builder.has_service() {
            builder
        } else {
            builder.service("test")
        };
        let bus = builder
            .transport(transport.clone())
            .private_to_test()
            .observer(Arc::clone(&log) as Arc<dyn Observer>)
            .build()
            .await?;
        let task = bus.spawn().await?;
        Ok(Self {
            bus,
            transport,
            log,
            task,
            timeout: Duration::from_secs(5),
        })
    }

    /// How long waits last before they fail (default 5 s).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The bus under test.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// The in-memory broker.
    pub fn transport(&self) -> &MemoryTransport {
        &self.transport
    }

    /// Publishes through the bus under test.
    pub async fn publish<E: Event>(&self, event: &E) -> Result<Uuid> {
        self.bus.publish(event).await
    }

    /// Sends `request` through the bus under test and waits for its reply, at most the
    /// harness's timeout (or `.timeout(..)`): request handlers unit-test this way.
    ///
    /// ```
    /// use pubsub::prelude::*;
    ///
    /// #[derive(Debug, Clone, Serialize, Deserialize, Event)]
    /// #[event(domain = "math", action = "double_requested", reply = u64)]
    /// struct Double { n: u64 }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> pubsub::Result<()> {
    /// let double = Handler::typed("double", |req: Double, _ctx: Context| async move {
    ///     Ok::<_, HandlerError>(req.n * 2)
    /// });
    /// let builder = Bus::builder().select_handlers(HandlerSelection::None).handler(double);
    /// let harness = TestHarness::start(builder).await?;
    /// assert_eq!(harness.request(&Double { n: 21 }).await?, 42);
    /// assert_eq!(harness.replies().len(), 1);
    /// harness.shutdown().await
    /// # }
    /// ```
    pub fn request<'a, R: Request>(&'a self, request: &'a R) -> RequestCall<'a, R> {
        self.bus.request(request).timeout(self.timeout)
    }

    /// Every reply sent on the broker by request handlers (an answer or an error, see
    /// [`HEADER_REPLY_STATUS`](crate::headers::HEADER_REPLY_STATUS)), in order.
    pub fn replies(&self) -> Vec<Message> {
        self.transport
            .published()
            .into_iter()
            .filter(is_reply)
            .collect()
    }

    /// Waits until nothing is in flight: every delivery settled, including those caused by
    /// handlers' own publishes and retries, and counted: [`Bus::stats`] read afterwards is
    /// exact.
    pub async fn settled(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let counters = self.bus.counters();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            self.transport.wait_idle(left).await?;
            let mut ended = pin!(counters.ended.notified());
            ended.as_mut().enable();
            // the transport sees a delivery settled just before the bus counts it
            if counters.in_flight() == 0 {
                if self.transport.is_idle() {
                    return Ok(());
                }
                continue;
            }
            if tokio::time::timeout_at(deadline, ended).await.is_err() {
                return Err(Error::Timeout(
                    self.timeout,
                    "the bus under test did not finish its deliveries".into(),
                ));
            }
        }
    }

    /// Waits until `condition` holds, re-checking after every handler attempt; fails with
    /// `what` in the error after the timeout.
    pub async fn wait_until(&self, what: &str, condition: impl Fn(&Self) -> bool) -> Result<()> {
        let wait = async {
            loop {
                let mut changed = pin!(self.log.changed.notified());
                changed.as_mut().enable();
                if condition(self) {
                    return;
                }
                let _ = tokio::time::timeout(Duration::from_millis(20), changed).await;
            }
        };
        tokio::time::timeout(self.timeout, wait)
            .await
            .map_err(|_| Error::Timeout(self.timeout, format!("waiting until {what}")))
    }

    /// Every attempt of `handler`, in order.
    ///
    /// # Panics
    /// If the bus runs no handler of that name: a typo must not make an assertion pass.
    pub fn calls(&self, handler: &str) -> Vec<HandlerCall> {
        assert!(
            self.bus.handler_names().iter().any(|h| h == handler),
            "the bus under test runs no handler named {handler:?}; it runs {:?}",
            self.bus.handler_names()
        );
        self.all_calls()
            .into_iter()
            .filter(|c| c.handler == handler)
            .collect()
    }

    /// Every attempt of every handler, in order.
    pub fn all_calls(&self) -> Vec<HandlerCall> {
        self.log
            .calls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The events of type `E` that `handler` was given, once per delivery however often it
    /// was retried within it: an event the broker delivered twice shows twice, as
    /// at-least-once tests need to see. Messages that could not be decoded never reached
    /// the handler: they are in [`failures`](Self::failures), with kind `Decode`.
    ///
    /// # Panics
    /// If the bus runs no handler of that name, or a message the handler was given does
    /// not decode as `E` (it takes another type).
    pub fn consumed<E: Event>(&self, handler: &str) -> Vec<E> {
        let mut seen = std::collections::HashSet::new();
        self.calls(handler)
            .into_iter()
            .filter(|c| c.kind != Some(HandlerErrorKind::Decode))
            .filter(|c| is_type_of::<E>(&c.message.metadata) && seen.insert(c.delivery))
            .map(|c| match E::decode_message(&c.message) {
                Ok(event) => event,
                Err(error) => panic!(
                    "{handler} was given a {} it could not decode: {error}",
                    E::KEY
                ),
            })
            .collect()
    }

    /// Failed attempts of `handler`.
    pub fn failures(&self, handler: &str) -> Vec<HandlerCall> {
        self.calls(handler)
            .into_iter()
            .filter(|c| c.error.is_some())
            .collect()
    }

    /// Every event of type `E` published on the broker (by the test or by handlers), in order.
    ///
    /// # Panics
    /// If a message published under `E`'s key does not decode as `E` (another version or
    /// encoding): the assertion would otherwise silently miss it.
    pub fn published<E: Event>(&self) -> Vec<E> {
        self.transport
            .published()
            .iter()
            .filter(|m| is_type_of::<E>(&m.metadata) && !is_reply(m))
            .map(|m| match E::decode_message(m) {
                Ok(event) => event,
                Err(error) => panic!(
                    "message {} was published as {} but does not decode as that type: {error}",
                    m.metadata.id,
                    E::KEY
                ),
            })
            .collect()
    }

    /// The routing keys of every event of type `E` published on the broker, in order: for an
    /// event with key parameters, its key template filled in (`session.42.code_updated`).
    ///
    /// ```
    /// use pubsub::prelude::*;
    ///
    /// #[derive(Debug, Clone, Serialize, Deserialize, Event)]
    /// #[event(key = "session.{session_id}.code_updated")]
    /// struct CodeUpdated { session_id: u64 }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> pubsub::Result<()> {
    /// let harness = TestHarness::start(Bus::builder().service("editor")).await?;
    /// harness.bus().publish(&CodeUpdated { session_id: 42 }).await?;
    /// assert_eq!(harness.published_keys::<CodeUpdated>(), ["session.42.code_updated"]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn published_keys<E: Event>(&self) -> Vec<String> {
        self.transport
            .published()
            .into_iter()
            .filter(|m| is_type_of::<E>(&m.metadata) && !is_reply(m))
            .map(|m| m.metadata.key)
            .collect()
    }

    /// Every message published on the broker, in order (replies included).
    pub fn published_messages(&self) -> Vec<Message> {
        self.transport.published()
    }

    /// The one message in the dead-letter queue of the bus's service.
    ///
    /// # Panics
    /// Unless exactly one message was dead-lettered (the panic lists them).
    pub fn single_dead_letter(&self) -> DeadLetteredMessage {
        match <[DeadLetteredMessage; 1]>::try_from(self.dead_letters()) {
            Ok([dead]) => dead,
            Err(all) => panic!(
                "expected exactly one dead letter, found {}: {all:#?}",
                all.len()
            ),
        }
    }

    /// The dead-letter queue of the bus's service.
    ///
    /// # Panics
    /// If the bus has no queue (it runs no handler).
    pub fn dead_letters(&self) -> Vec<DeadLetteredMessage> {
        match self.transport.dead_lettered(self.bus.service()) {
            Ok(dead) => dead,
            Err(error) => panic!("{error}"),
        }
    }

    /// Stops the bus gracefully and reports how its run ended.
    pub async fn shutdown(mut self) -> Result<()> {
        self.bus.shutdown();
        match (&mut self.task).await {
            Ok(result) => result,
            Err(join) => Err(Error::Task(join.to_string())),
        }
    }
}

impl Drop for TestHarness {
    /// A test that forgets [`shutdown`](Self::shutdown) does not leave its bus running.
    fn drop(&mut self) {
        self.bus.shutdown();
    }
}

/// Whether `message` is a reply to a request (it carries a reply status).
fn is_reply(message: &Message) -> bool {
    message
        .metadata
        .headers
        .contains_key(crate::headers::HEADER_REPLY_STATUS)
}
