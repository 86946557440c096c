//! The conformance suite's own negative control: a transport that breaks one rule must
//! fail exactly the cases that hold transports to that rule, and pass all the others. A
//! suite whose cases pass whatever the transport does would show nothing.
//!
//! [`Broken`] wraps the in-memory broker (queue mode) and breaks one [`Rule`] in how it
//! settles deliveries, while reporting every settlement as done. Every case of
//! `conformance::CASES` runs against it, each in a task of its own, so that a failing case
//! (a panic) is seen as the task's `JoinError`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use pubsub::testing::conformance::{self, Broker, CASES, Ran};
use pubsub::transport::{
    Acker, Capabilities, Confirmation, Consumer, DeadLetteredMessage, Delivery, Outgoing,
    Settlement, Subscription, Transport, TransportError,
};
use pubsub::{MemoryTransport, Message, health::TransportHealth};

/// The rule a [`Broken`] transport breaks.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// A requeued delivery is delivered again: this transport acks it instead (the message
    /// is gone) and says it requeued it.
    RequeueRedelivers,
    /// A dead-lettered message goes to the dead-letter queue: this transport acks it
    /// instead (nothing reaches the queue) and says it dead-lettered it.
    DeadLetterKeepsTheMessage,
}

/// The in-memory broker, breaking `rule` when a delivery is settled.
struct Broken {
    memory: MemoryTransport,
    rule: Rule,
}

impl Broker for Broken {
    fn connect(&self) -> BoxFuture<'_, Arc<dyn Transport>> {
        let connection: Arc<dyn Transport> = Arc::new(Broken {
            memory: self.memory.connection(),
            rule: self.rule,
        });
        Box::pin(std::future::ready(connection))
    }

    fn dead_letters<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Vec<Message>> {
        Broker::dead_letters(&self.memory, service)
    }
}

#[async_trait::async_trait]
impl Transport for Broken {
    fn name(&self) -> &'static str {
        "broken"
    }
    fn capabilities(&self) -> Capabilities {
        self.memory.capabilities()
    }
    fn health(&self) -> TransportHealth {
        self.memory.health()
    }
    async fn send(&self, outgoing: Outgoing) -> Result<Confirmation, TransportError> {
        self.memory.send(outgoing).await
    }
    async fn declare(&self, subscription: &Subscription) -> Result<(), TransportError> {
        self.memory.declare(subscription).await
    }
    async fn consume(
        &self,
        subscription: &Subscription,
    ) -> Result<Box<dyn Consumer>, TransportError> {
        let inner = self.memory.consume(subscription).await?;
        Ok(Box::new(BrokenConsumer {
            inner,
            rule: self.rule,
        }))
    }
    async fn request(
        &self,
        request: Outgoing,
        timeout: Duration,
    ) -> Result<Message, TransportError> {
        self.memory.request(request, timeout).await
    }
    async fn dead_letters(
        &self,
        service: &str,
    ) -> Result<Vec<DeadLetteredMessage>, TransportError> {
        Transport::dead_letters(&self.memory, service).await
    }
    async fn close(&self) -> Result<(), TransportError> {
        self.memory.close().await
    }
}

/// Hands out the memory consumer's deliveries, each settled by a [`BrokenAcker`].
struct BrokenConsumer {
    inner: Box<dyn Consumer>,
    rule: Rule,
}

#[async_trait::async_trait]
impl Consumer for BrokenConsumer {
    async fn next(&mut self) -> Option<Result<Delivery, TransportError>> {
        let mut delivery = match self.inner.next().await? {
            Ok(delivery) => delivery,
            Err(error) => return Some(Err(error)),
        };
        let acker = std::mem::replace(&mut delivery.acker, Box::new(Gone));
        delivery.acker = Box::new(BrokenAcker {
            inner: acker,
            rule: self.rule,
        });
        Some(Ok(delivery))
    }
    async fn cancel(&mut self) -> Result<(), TransportError> {
        self.inner.cancel().await
    }
    async fn close(self: Box<Self>) -> Result<(), TransportError> {
        self.inner.close().await
    }
}

/// Settles through the memory broker's acker, but breaks the rule.
struct BrokenAcker {
    inner: Box<dyn Acker>,
    rule: Rule,
}

#[async_trait::async_trait]
impl Acker for BrokenAcker {
    async fn settle(self: Box<Self>, settlement: Settlement) -> Result<(), TransportError> {
        let settlement = match (self.rule, settlement) {
            (Rule::RequeueRedelivers, Settlement::Requeue)
            | (Rule::DeadLetterKeepsTheMessage, Settlement::DeadLetter(_)) => Settlement::Ack,
            (_, kept) => kept,
        };
        self.inner.settle(settlement).await
    }
}

/// The placeholder acker while the real one is moved into a [`BrokenAcker`]; never used.
struct Gone;

#[async_trait::async_trait]
impl Acker for Gone {
    async fn settle(self: Box<Self>, _: Settlement) -> Result<(), TransportError> {
        unreachable!("replaced at once")
    }
}

/// How one case ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Passed,
    Skipped,
    /// It panicked, with this message.
    Failed(String),
}

/// Runs every case against a fresh [`Broken`] breaking `rule`, each in a task of its own
/// (all at once: a failing case waits out its patience before it panics); how each ended,
/// by name.
async fn run_every_case(rule: Rule) -> BTreeMap<&'static str, Outcome> {
    let tasks: Vec<_> = CASES
        .iter()
        .map(|case| {
            let broker = Broken {
                memory: MemoryTransport::new(),
                rule,
            };
            (
                case.name,
                tokio::spawn(async move { conformance::run_case(&broker, case).await }),
            )
        })
        .collect();
    let mut outcomes = BTreeMap::new();
    for (name, task) in tasks {
        let outcome = match task.await {
            Ok(Ran::Passed) => Outcome::Passed,
            Ok(_) => Outcome::Skipped,
            Err(error) if error.is_panic() => {
                let panic = error.into_panic();
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                Outcome::Failed(message)
            }
            Err(error) => panic!("{name}: {error}"),
        };
        outcomes.insert(name, outcome);
    }
    outcomes
}

/// Checks that against `rule`, exactly the cases `failing` fail, the stream cases are
/// skipped (queue mode), and every other case passes; prints how each ended.
async fn exactly_these_fail(rule: Rule, failing: &[&str]) {
    let outcomes = run_every_case(rule).await;
    for (name, outcome) in &outcomes {
        eprintln!("{rule:?}: {name}: {outcome:?}");
    }
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|(_, outcome)| matches!(outcome, Outcome::Failed(_)))
        .map(|(name, _)| *name)
        .collect();
    let mut expected = failing.to_vec();
    expected.sort_unstable();
    assert_eq!(failed, expected, "{rule:?}: {outcomes:#?}");
    let skipped = outcomes
        .values()
        .filter(|o| **o == Outcome::Skipped)
        .count();
    assert_eq!(skipped, 6, "the six stream cases: {outcomes:#?}");
}

/// Losing requeued deliveries fails `no_loss_across_resubscribe`, the one case whose
/// deliveries are requeued (by the bus at shutdown, for those still unfinished), and no
/// other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transport_that_loses_requeued_deliveries_fails_exactly_the_requeue_case() {
    exactly_these_fail(Rule::RequeueRedelivers, &["no_loss_across_resubscribe"]).await;
}

/// Dropping dead letters fails the four queue cases that read the dead-letter queue
/// (`Broker::dead_letters`), and no other: the handling goes on as before, only nothing
/// reaches the queue. (The fifth case that reads it, `failures_go_to_the_error_stream`,
/// is a stream case, skipped here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transport_that_drops_dead_letters_fails_exactly_the_dead_letter_cases() {
    exactly_these_fail(
        Rule::DeadLetterKeepsTheMessage,
        &[
            "ack_all_or_nack",
            "retry_then_dead_letter",
            "settled_stays_settled",
            "dead_letter_keeps_the_envelope",
        ],
    )
    .await;
}
