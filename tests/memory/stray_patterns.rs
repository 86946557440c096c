//! A `RawEvent` handler whose pattern matches none of the event types linked into the
//! binary is reported by `build()` with the closest known key (a typo such as `ordr.*`
//! would otherwise bind, and never receive anything), unless it says it expects foreign
//! events.

use pubsub::prelude::*;
use pubsub::{HandlerSelection, MemoryTransport};

use crate::support::logs::CapturedLogs;

/// The one event type of the domain these tests are about: registered at link time by
/// its derive, never constructed.
#[allow(dead_code)]
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "strayorder", action = "created")]
struct StrayOrderCreated {
    id: u32,
}

#[handler("strayordr.*", service = "stray-typo")]
async fn audit_stray_orders(_event: RawEvent) -> Result<(), HandlerError> {
    Ok(())
}

#[handler("strayorder.*", service = "stray-right")]
async fn audit_orders_spelt_right(_event: RawEvent) -> Result<(), HandlerError> {
    Ok(())
}

#[handler("partner.#", service = "stray-foreign", foreign)]
async fn partner_events(_event: RawEvent) -> Result<(), HandlerError> {
    Ok(())
}

/// What `build()` logs for a bus of `service` running `handlers`.
async fn build_log(service: &str, handlers: HandlerSelection) -> String {
    let (logs, _capturing) = CapturedLogs::capture();
    Bus::builder()
        .service(service)
        .transport(MemoryTransport::new())
        .select_handlers(handlers)
        .build()
        .await
        .expect("built");
    logs.text()
}

#[tokio::test]
async fn a_raw_pattern_that_matches_no_linked_event_is_reported_with_the_closest_key() {
    let log = build_log("stray-typo", pubsub::handlers![audit_stray_orders]).await;
    assert!(
        log.contains("WARN")
            && log.contains("strayordr.*")
            && log.contains("the closest key is \"strayorder.created\""),
        "{log}"
    );
}

#[tokio::test]
async fn a_pattern_that_matches_or_expects_foreign_events_is_not_reported() {
    let right = build_log("stray-right", pubsub::handlers![audit_orders_spelt_right]).await;
    assert!(!right.contains("matches none"), "{right}");
    let foreign = build_log("stray-foreign", pubsub::handlers![partner_events]).await;
    assert!(!foreign.contains("matches none"), "{foreign}");
    assert!(
        pubsub::registry::registered_handlers()
            .iter()
            .any(|h| h.name == "partner_events" && h.expects_foreign_events),
        "the registry says so"
    );
}
