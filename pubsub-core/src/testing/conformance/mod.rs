//! The transport conformance suite: the semantics every [`Transport`] must share, written
//! once. The memory transport runs it in this workspace's tests; the AMQP and Streams
//! transports run the same cases against a real broker.
//!
//! Each case takes a [`Broker`] — connections to the broker under test, and a way to read
//! a service's dead-letter queue — uses its own random namespace for keys and service
//! names, counts every event it publishes and every one handled, and panics with a clear
//! message when the transport falls short.
//!
//! [`CASES`] is the one list of cases, each with what it [`Need`]s of the transport. A
//! case whose need the transport lacks (by its [`Capabilities`]) is skipped, and says why
//! on stderr: `skipped competing_consumers: needs competing consumers (the streams
//! transport cannot share one service's messages among several consumers)`.
//!
//! A runner generates one test per case with [`conformance_tests!`](crate::conformance_tests)
//! (so it cannot miss a case), optionally with the exact set of cases the transport must
//! skip; or runs one case by name with [`run_named`], or them all with [`run_all`]:
//!
//! ```ignore
//! // tests/conformance_memory.rs
//! pubsub::conformance_tests!(pubsub::MemoryTransport::new());
//! ```
//!
//! ```no_run
//! use pubsub::{MemoryTransport, testing::conformance};
//!
//! # async fn run() {
//! let broker = MemoryTransport::new(); // implements conformance::Broker
//! conformance::run_named(&broker, "fan_out").await; // one case, skipped if it cannot run
//! conformance::run_all(&broker).await; // every case, skipping what the transport cannot
//! # }
//! ```
//!
//! The cases live in `cases/`, one file per topic (routing, settlement, retries,
//! concurrency, the connection, streams); a case is reachable only through the list, so a
//! case left out of it does not compile.

mod cases;
mod support;

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::memory::MemoryTransport;
use crate::metadata::Message;
use crate::transport::{Capabilities, DelayedRedelivery, SettlementModel, Transport};

/// The broker under test, as the suite sees it.
pub trait Broker: Send + Sync {
    /// A new connection; every call must reach the same broker.
    fn connect(&self) -> BoxFuture<'_, Arc<dyn Transport>>;
    /// The messages in the dead-letter queue of `service`, oldest first (on a stream
    /// transport, its error stream).
    fn dead_letters<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Vec<Message>>;
}

impl Broker for MemoryTransport {
    fn connect(&self) -> BoxFuture<'_, Arc<dyn Transport>> {
        let transport: Arc<dyn Transport> = Arc::new(self.connection());
        Box::pin(std::future::ready(transport))
    }

    fn dead_letters<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Vec<Message>> {
        let messages = MemoryTransport::dead_lettered(self, service)
            .unwrap_or_default()
            .into_iter()
            .map(|d| d.message)
            .collect();
        Box::pin(std::future::ready(messages))
    }
}

/// What a case needs of the transport, beyond what every transport does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Need {
    /// [`Capabilities::requeue`].
    Requeue,
    /// [`Capabilities::competing_consumers`].
    CompetingConsumers,
    /// Per-message settlement ([`SettlementModel::PerMessage`]).
    PerMessageSettlement,
    /// Delayed redelivery ([`Capabilities::delayed_redelivery`] other than `None`).
    DelayedRedelivery,
    /// [`Capabilities::request_reply`].
    RequestReply,
    /// [`Capabilities::replay`].
    Replay,
    /// [`Capabilities::delivery_count`].
    DeliveryCount,
}

impl Need {
    /// Whether a transport with `capabilities` has it.
    pub fn met_by(self, capabilities: &Capabilities) -> bool {
        match self {
            Self::Requeue => capabilities.requeue,
            Self::CompetingConsumers => capabilities.competing_consumers,
            Self::PerMessageSettlement => capabilities.settlement == SettlementModel::PerMessage,
            Self::DelayedRedelivery => capabilities.delayed_redelivery != DelayedRedelivery::None,
            Self::RequestReply => capabilities.request_reply,
            Self::Replay => capabilities.replay,
            Self::DeliveryCount => capabilities.delivery_count,
        }
    }

    /// What a transport without it cannot do (`the streams transport cannot …`).
    pub fn cannot(self) -> &'static str {
        match self {
            Self::Requeue => "give a delivery back to its queue to be delivered again",
            Self::CompetingConsumers => "share one service's messages among several consumers",
            Self::PerMessageSettlement => "settle each delivery on its own",
            Self::DelayedRedelivery => "deliver a message again after a delay",
            Self::RequestReply => "send a request and wait for its reply",
            Self::Replay => "read again from an earlier position",
            Self::DeliveryCount => "tell how often it delivered a message",
        }
    }

    /// Why a case (or a part of one) does not run on `transport`.
    pub fn skip_reason(self, transport: &str) -> String {
        format!(
            "needs {self} (the {transport} transport cannot {})",
            self.cannot()
        )
    }
}

impl fmt::Display for Need {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Requeue => "requeue",
            Self::CompetingConsumers => "competing consumers",
            Self::PerMessageSettlement => "per-message settlement",
            Self::DelayedRedelivery => "delayed redelivery",
            Self::RequestReply => "request/reply",
            Self::Replay => "replay",
            Self::DeliveryCount => "delivery counts",
        })
    }
}

/// One case of the suite: its name (that of its function), what it needs, and how to run
/// it.
#[derive(Clone, Copy)]
pub struct Case {
    /// The case's name, that of its function in this module.
    pub name: &'static str,
    /// What the transport must be able to do for the case to run.
    pub needs: &'static [Need],
    /// Runs the case (panics when the transport falls short).
    pub run: for<'a> fn(&'a dyn Broker) -> BoxFuture<'a, ()>,
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Case")
            .field("name", &self.name)
            .field("needs", &self.needs)
            .finish_non_exhaustive()
    }
}

/// How [`run_case`] ended (a failing case panics instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ran {
    /// The case ran and passed.
    Passed,
    /// The transport lacks what the case needs; the case did not run.
    Skipped(Need),
}

/// The one list of cases, in the order [`CASES`] and [`conformance_tests!`](crate::conformance_tests)
/// use: `topic::name [needs…]`, the case being the `pub(crate)` fn `cases::topic::name`.
/// Calls the macro `$crate::$then!` with `$args` and the list. A case fn missing here is
/// dead code, which `cases/mod.rs` denies: it does not compile.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($then:ident $args:tt) => {
        $crate::$then! { $args
            routing::publish_subscribe [],
            routing::fan_out [],
            routing::every_service_gets_every_event [],
            routing::many_services_at_once [],
            settlement::ack_all_or_nack [],
            retries::retry_then_dead_letter [],
            retries::retry_waits_its_delay [],
            retries::delayed_retry_waits_its_delay [DelayedRedelivery],
            settlement::dead_letter_keeps_the_envelope [],
            settlement::settled_stays_settled [],
            concurrency::competing_consumers [CompetingConsumers],
            concurrency::no_loss_across_resubscribe [Requeue],
            concurrency::concurrent_publishes [],
            concurrency::in_flight_bounded_by_prefetch [],
            concurrency::ordering_per_producer [],
            connection::closed_transport_refuses [],
            requests::request_reply [RequestReply],
            requests::request_times_out [RequestReply],
            requests::request_without_responder [RequestReply],
            requests::first_reply_wins [RequestReply],
            requests::closing_fails_waiting_requests [RequestReply],
            streams::resume_after_restart [Replay],
            streams::only_handled_prefix_is_stored [Replay],
            streams::failures_go_to_the_error_stream [Replay],
            streams::single_active_consumer_takes_over [Replay],
            streams::start_positions [Replay],
            streams::new_service_reads_history [Replay],
        }
    };
}

/// Builds [`CASES`] from the list (inside this crate only: the cases are `pub(crate)`).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_case_table {
    (() $($topic:ident :: $name:ident [$($need:ident),*]),* $(,)?) => {
        &[$(
            $crate::testing::conformance::Case {
                name: ::core::stringify!($name),
                needs: &[$($crate::testing::conformance::Need::$need),*],
                run: |broker| ::std::boxed::Box::pin(
                    $crate::testing::conformance::cases::$topic::$name(broker)
                ),
            }
        ),*]
    };
}

/// Generates the tests of [`conformance_tests!`](crate::conformance_tests) from the list:
/// `(($broker))` runs each case (a skip passes), `(($broker; skips))` also checks that
/// exactly the cases `skips` (an array of names) are skipped.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_test_fns {
    (($broker:expr) $($topic:ident :: $name:ident [$($need:ident),*]),* $(,)?) => {$(
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let broker = $broker;
            $crate::testing::conformance::run_named(&broker, ::core::stringify!($name)).await;
        }
    )*};
    (($broker:expr; $skips:expr) $($topic:ident :: $name:ident [$($need:ident),*]),* $(,)?) => {$(
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let broker = $broker;
            let ran =
                $crate::testing::conformance::run_named(&broker, ::core::stringify!($name)).await;
            $crate::testing::conformance::expect_skipped(
                ::core::stringify!($name),
                ran,
                &$skips,
            );
        }
    )*};
}

/// Generates one `#[tokio::test]` (multi-threaded, 2 workers) per conformance case, named
/// after the case, from the same list as [`conformance::CASES`](crate::testing::conformance::CASES):
/// a runner cannot miss a case. `$broker` is evaluated in each test (inside its async
/// body, so it may `.await`, or `return` to skip every test when no broker is configured)
/// and must give a value that implements [`conformance::Broker`](crate::testing::conformance::Broker).
///
/// Without `skips`, a case the transport cannot run passes after printing why it was
/// skipped. With `skips = [case, …]`, those cases must be skipped and every other case must
/// run (see [`expect_skipped`](crate::testing::conformance::expect_skipped)): a change of
/// the transport's capabilities that skips one more case fails its test.
///
/// The calling crate needs `tokio` with the `macros` and `rt-multi-thread` features.
///
/// ```ignore
/// // tests/conformance_memory.rs
/// pubsub::conformance_tests!(pubsub::MemoryTransport::new());
///
/// // stream mode: what a log cannot do is skipped, and nothing else
/// pubsub::conformance_tests!(
///     pubsub::MemoryTransport::stream_backed(),
///     skips = [competing_consumers, no_loss_across_resubscribe, request_reply],
/// );
///
/// // tests/conformance_amqp.rs: skipped without a broker
/// pubsub::conformance_tests!(match amqp_broker().await {
///     Some(broker) => broker,
///     None => return,
/// });
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($broker:expr, skips = [$($skip:ident),* $(,)?] $(,)?) => {
        $crate::__conformance_cases!(__conformance_test_fns(
            $broker; [$(::core::stringify!($skip)),*]
        ));
    };
    ($broker:expr $(,)?) => {
        $crate::__conformance_cases!(__conformance_test_fns($broker));
    };
}

/// Every case, each with what it needs; [`run_all`] and
/// [`conformance_tests!`](crate::conformance_tests) run exactly these.
pub const CASES: &[Case] = __conformance_cases!(__conformance_case_table());

/// Checks how the case named `case` ended against `skips`, the cases the transport under
/// test must skip: it must have been skipped if it is one of them, and run otherwise.
///
/// # Panics
/// If `skips` names something that is not a case, or if `case` was skipped but is not
/// among `skips` (the transport lost a capability, or a case gained a need), or ran but is
/// among them.
pub fn expect_skipped(case: &str, ran: Ran, skips: &[&str]) {
    let unknown: Vec<&&str> = skips
        .iter()
        .filter(|skip| self::case(skip).is_none())
        .collect();
    assert!(
        unknown.is_empty(),
        "the expected skips {unknown:?} are not conformance cases; the cases are {:?}",
        CASES.iter().map(|c| c.name).collect::<Vec<_>>()
    );
    match ran {
        Ran::Skipped(need) => assert!(
            skips.contains(&case),
            "{case} was skipped (it needs {need}), but the transport is expected to run it: \
             it is not among the expected skips {skips:?}"
        ),
        Ran::Passed => assert!(
            !skips.contains(&case),
            "{case} ran, but the transport is expected to skip it (one of {skips:?})"
        ),
    }
}

/// The case named `name`.
pub fn case(name: &str) -> Option<&'static Case> {
    CASES.iter().find(|case| case.name == name)
}

/// Runs `case` unless the transport lacks what it needs; then prints
/// `skipped <case>: needs <capability> (the <transport> transport cannot <…>)` to stderr.
/// The capabilities are those of a fresh connection, closed afterwards.
pub async fn run_case(broker: &dyn Broker, case: &Case) -> Ran {
    let (transport, capabilities) = support::probe(broker).await;
    if let Some(&need) = case.needs.iter().find(|need| !need.met_by(&capabilities)) {
        eprintln!("skipped {}: {}", case.name, need.skip_reason(transport));
        return Ran::Skipped(need);
    }
    (case.run)(broker).await;
    Ran::Passed
}

/// Runs the case named `name` (see [`run_case`]).
///
/// # Panics
/// If there is no such case.
pub async fn run_named(broker: &dyn Broker, name: &str) -> Ran {
    match case(name) {
        Some(case) => run_case(broker, case).await,
        None => panic!(
            "no conformance case is named {name:?}; the cases are {:?}",
            CASES.iter().map(|c| c.name).collect::<Vec<_>>()
        ),
    }
}

/// Runs every case in sequence, skipping (and saying so) those the transport cannot run;
/// returns how each ended, in the order of [`CASES`].
pub async fn run_all(broker: &dyn Broker) -> Vec<(&'static str, Ran)> {
    let mut ran = Vec::with_capacity(CASES.len());
    for case in CASES {
        ran.push((case.name, run_case(broker, case).await));
    }
    ran
}

#[cfg(test)]
mod tests;
