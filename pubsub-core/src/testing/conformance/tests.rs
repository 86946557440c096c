//! The suite checks itself: one list, and skips that say why.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;

use super::{Broker, CASES, Need, Ran, run_case, run_named};
use crate::memory::MemoryTransport;
use crate::metadata::Message;
use crate::transport::TransportError;
use crate::transport::{Capabilities, Confirmation, Consumer, Outgoing, Subscription, Transport};

/// The names of the `pub async fn`s of cases.rs and stream_cases.rs, read from their source.
fn cases_in_source() -> Vec<&'static str> {
    [include_str!("cases.rs"), include_str!("stream_cases.rs")]
        .into_iter()
        .flat_map(str::lines)
        .filter_map(|line| line.strip_prefix("pub async fn "))
        .map(|rest| rest.split(['(', '<']).next().unwrap_or(rest).trim())
        .collect()
}

#[test]
fn every_case_in_cases_rs_is_listed_once() {
    let written: BTreeSet<&str> = cases_in_source().into_iter().collect();
    let listed: BTreeSet<&str> = CASES.iter().map(|c| c.name).collect();
    assert_eq!(
        listed.len(),
        CASES.len(),
        "a case is listed twice in __conformance_cases!"
    );
    let unlisted: Vec<&&str> = written.difference(&listed).collect();
    assert!(
        unlisted.is_empty(),
        "cases written in conformance/cases.rs but missing from __conformance_cases! in conformance/mod.rs: {unlisted:?}"
    );
    assert_eq!(written, listed);
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
