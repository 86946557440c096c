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
//! (so it cannot miss a case), or runs them all with [`run_all`]:
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
//! conformance::fan_out(&broker).await; // one case, whatever the capabilities
//! conformance::run_all(&broker).await; // every case, skipping what the transport cannot
//! # }
//! ```

mod cases;
mod stream_cases;
mod support;

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;

pub use cases::*;
pub use stream_cases::*;

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
/// use: `name [needs…]`. Calls the macro `$crate::$then!` with `$args` and the list.
/// Every `pub async fn` of `cases.rs` and `stream_cases.rs` must be here: a const assertion
/// below counts them.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($then:ident $args:tt) => {
        $crate::$then! { $args
            publish_subscribe [],
            fan_out [],
            every_service_gets_every_event [],
            many_services_at_once [],
            ack_all_or_nack [],
            retry_then_dead_letter [],
            retry_waits_its_delay [],
            delayed_retry_waits_its_delay [DelayedRedelivery],
            dead_letter_keeps_the_envelope [],
            settled_stays_settled [],
            competing_consumers [CompetingConsumers],
            no_loss_across_resubscribe [Requeue],
            concurrent_publishes [],
            in_flight_bounded_by_prefetch [],
            ordering_per_producer [],
            closed_transport_refuses [],
            request_reply [RequestReply],
            request_times_out [RequestReply],
            resume_after_restart [Replay],
            only_handled_prefix_is_stored [Replay],
            failures_go_to_the_error_stream [Replay],
            single_active_consumer_takes_over [Replay],
            start_positions [Replay],
            new_service_reads_history [Replay],
        }
    };
}

/// Builds [`CASES`] from the list.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_case_table {
    (() $($name:ident [$($need:ident),*]),* $(,)?) => {
        &[$(
            $crate::testing::conformance::Case {
                name: ::core::stringify!($name),
                needs: &[$($crate::testing::conformance::Need::$need),*],
                run: |broker| ::std::boxed::Box::pin($crate::testing::conformance::$name(broker)),
            }
        ),*]
    };
}

/// Generates the tests of [`conformance_tests!`](crate::conformance_tests) from the list.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_test_fns {
    (($broker:expr) $($name:ident [$($need:ident),*]),* $(,)?) => {$(
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let broker = $broker;
            $crate::testing::conformance::run_named(&broker, ::core::stringify!($name)).await;
        }
    )*};
}

/// Generates one `#[tokio::test]` (multi-threaded, 2 workers) per conformance case, named
/// after the case, from the same list as [`conformance::CASES`](crate::testing::conformance::CASES):
/// a runner cannot miss a case. `$broker` is evaluated in each test (inside its async
/// body, so it may `.await`, or `return` to skip every test when no broker is configured)
/// and must give a value that implements [`conformance::Broker`](crate::testing::conformance::Broker).
/// A case the transport cannot run passes after printing why it was skipped.
///
/// The calling crate needs `tokio` with the `macros` and `rt-multi-thread` features.
///
/// ```ignore
/// // tests/conformance_memory.rs
/// pubsub::conformance_tests!(pubsub::MemoryTransport::new());
///
/// // tests/conformance_amqp.rs: skipped without a broker
/// pubsub::conformance_tests!(match amqp_broker().await {
///     Some(broker) => broker,
///     None => return,
/// });
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($broker:expr $(,)?) => {
        $crate::__conformance_cases!(__conformance_test_fns($broker));
    };
}

/// Every case, each with what it needs; [`run_all`] and
/// [`conformance_tests!`](crate::conformance_tests) run exactly these.
pub const CASES: &[Case] = __conformance_cases!(__conformance_case_table());

/// Counts the lines of `source` that start with `pub async fn `.
const fn count_cases(source: &str) -> usize {
    const NEEDLE: &[u8] = b"\npub async fn ";
    let bytes = source.as_bytes();
    let mut count = 0;
    let mut i = 0;
    while i + NEEDLE.len() <= bytes.len() {
        if bytes[i] == b'\n' {
            let mut j = 1;
            while j < NEEDLE.len() && bytes[i + j] == NEEDLE[j] {
                j += 1;
            }
            if j == NEEDLE.len() {
                count += 1;
            }
        }
        i += 1;
    }
    count
}

// A case written in cases.rs but missing from the list would never run anywhere: refuse
// to compile. (A name in the list without its function fails to compile anyway.)
const _: () = assert!(
    count_cases(include_str!("cases.rs")) + count_cases(include_str!("stream_cases.rs"))
        == CASES.len(),
    "every `pub async fn` of conformance/cases.rs and stream_cases.rs must be in the case list of conformance/mod.rs (__conformance_cases!), and every case there must be one"
);

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
