//! The suite checks itself: one list, and skips that say why.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;

use super::{Broker, CASES, Need, Ran, expect_skipped, run_case, run_named};
use crate::memory::MemoryTransport;
use crate::metadata::Message;
use crate::transport::TransportError;
use crate::transport::{Capabilities, Confirmation, Consumer, Outgoing, Subscription, Transport};

/// Each case once in the list. (A case fn left out of the list does not compile: the
/// cases are `pub(crate)`, used only by the list, and `cases/mod.rs` denies dead code.)
#[test]
fn every_case_is_listed_once() {
    let listed: BTreeSet<&str> = CASES.iter().map(|c| c.name).collect();
    assert_eq!(
        listed.len(),
        CASES.len(),
        "a case is listed twice in __conformance_cases!: {CASES:?}"
    );
    for case in CASES {
        let found = super::case(case.name).map(|found| (found.name, found.needs));
        assert_eq!(
            found,
            Some((case.name, case.needs)),
            "case(name) finds {case:?}"
        );
    }
}

#[test]
fn needs_follow_the_capabilities() {
    let queue = Capabilities::queue();
    let stream = Capabilities::stream();
    for need in [
        Need::Requeue,
        Need::CompetingConsumers,
        Need::PerMessageSettlement,
        Need::DelayedRedelivery,
    ] {
        assert!(need.met_by(&queue), "{need}");
        assert!(!need.met_by(&stream), "{need}");
    }
    assert!(Need::Replay.met_by(&stream) && !Need::Replay.met_by(&queue));
    assert!(!Need::RequestReply.met_by(&queue));
    assert!(!Need::DeliveryCount.met_by(&stream));
    assert_eq!(
        Need::CompetingConsumers.skip_reason("streams"),
        "needs competing consumers (the streams transport cannot share one service's messages among several consumers)"
    );
}

/// The memory broker, claiming a stream transport's capabilities.
struct StreamLike(MemoryTransport);

impl Broker for StreamLike {
    fn connect(&self) -> BoxFuture<'_, Arc<dyn Transport>> {
        let transport: Arc<dyn Transport> = Arc::new(StreamLike(self.0.connection()));
        Box::pin(std::future::ready(transport))
    }

    fn dead_letters<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Vec<Message>> {
        Broker::dead_letters(&self.0, service)
    }
}

#[async_trait]
impl Transport for StreamLike {
    fn name(&self) -> &'static str {
        "stream-like"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::stream()
    }
    async fn send(&self, outgoing: Outgoing) -> Result<Confirmation, TransportError> {
        self.0.send(outgoing).await
    }
    async fn declare(&self, subscription: &Subscription) -> Result<(), TransportError> {
        self.0.declare(subscription).await
    }
    async fn consume(
        &self,
        subscription: &Subscription,
    ) -> Result<Box<dyn Consumer>, TransportError> {
        self.0.consume(subscription).await
    }
    async fn request(
        &self,
        request: Outgoing,
        timeout: Duration,
    ) -> Result<Message, TransportError> {
        self.0.request(request, timeout).await
    }
    async fn close(&self) -> Result<(), TransportError> {
        self.0.close().await
    }
}

#[tokio::test]
async fn a_case_the_transport_cannot_run_is_skipped() {
    let broker = StreamLike(MemoryTransport::new());
    let stream = Capabilities::stream();
    let unmet = |c: &&super::Case| c.needs.iter().any(|need| !need.met_by(&stream));
    for case in CASES.iter().filter(unmet) {
        let ran = run_case(&broker, case).await;
        assert!(
            matches!(ran, Ran::Skipped(need) if case.needs.contains(&need)),
            "{}: {ran:?}",
            case.name
        );
    }
    assert_eq!(
        run_named(&broker, "competing_consumers").await,
        Ran::Skipped(Need::CompetingConsumers)
    );
}

#[test]
fn expected_skips_must_match_how_a_case_ended() {
    let skips = ["competing_consumers"];
    expect_skipped(
        "competing_consumers",
        Ran::Skipped(Need::CompetingConsumers),
        &skips,
    );
    expect_skipped("fan_out", Ran::Passed, &skips);
    let fails = |case: &'static str, ran: Ran, skips: &'static [&'static str]| {
        std::panic::catch_unwind(|| expect_skipped(case, ran, skips)).is_err()
    };
    assert!(
        fails(
            "fan_out",
            Ran::Skipped(Need::Requeue),
            &["competing_consumers"]
        ),
        "a case skipped but not expected to be"
    );
    assert!(
        fails("competing_consumers", Ran::Passed, &["competing_consumers"]),
        "a case run but expected to be skipped"
    );
    assert!(
        fails("fan_out", Ran::Passed, &["no_such_case"]),
        "an expected skip that is no case"
    );
}
