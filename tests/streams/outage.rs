//! The Streams transport when the broker goes away under it, as a TCP proxy between the
//! two makes it look (`support::proxy`; `load_balancer_mode` makes every connection go
//! through it): once the port accepts again, every connection is back within about 2 s.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pubsub::prelude::*;
use pubsub::streams::StreamTransport;
use pubsub::{Handler, HandlerSelection, stream::StreamNaming, transport::Transport};

use crate::support::counted::{Tick, time_to_recover, wait_until};
use crate::support::proxy::Proxy;
use crate::support::{self, broker};

/// Producer, consumer, admin client: all lost (reset) and refused for a while with their
/// backoff at its cap (8 s from the first wait); once the port accepts again, the first
/// publish is confirmed and the bus is healthy within 2.5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_is_back_soon_after_the_broker() {
    let Some(config) = support::stream_config() else {
        return;
    };
    let Some(address) = broker::stream_address() else {
        return;
    };
    let ns = support::namespace("conf-back");
    let proxy = Proxy::start(&address).await;
    const CAP: Duration = Duration::from_secs(8);
    let mut proxied = config.clone();
    proxied.host = "127.0.0.1".into();
    proxied.port = proxy.port();
    let proxied = proxied
        .load_balancer_mode(true)
        .naming(StreamNaming::new(ns.clone()))
        .backoff(CAP, CAP);
    let transport = StreamTransport::new(proxied.clone());
    let handled = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&handled);
    let handler = Handler::typed("count", move |_: Tick, _: Context| {
        let counter = Arc::clone(&counter);
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok::<_, HandlerError>(())
        }
    });
    let bus = Bus::builder()
        .service(format!("{ns}-svc"))
        .transport(transport.clone())
        .select_handlers(HandlerSelection::None)
        .handler(handler)
        .build()
        .await
        .expect("building the bus");
    let running = bus.spawn().await.expect("running the bus");
    bus.publish(&Tick { n: 0, note: None })
        .await
        .expect("published before the outage");
    wait_until("handled", Duration::from_secs(20), || {
        handled.load(Ordering::SeqCst) >= 1 && bus.health().is_healthy()
    })
    .await;

    proxy.refuse();
    proxy.cut();
    wait_until(
        "the producer and the consumer lost",
        Duration::from_secs(20),
        || {
            let health = bus.health();
            !health.is_healthy()
                && health
                    .transport
                    .consumers
                    .iter()
                    .all(|c| c.state != pubsub::health::ConsumerState::Running)
                && health
                    .transport
                    .connections
                    .iter()
                    .all(|c| c.state != pubsub::health::ConnectionState::Up)
        },
    )
    .await;
    // past the first attempts: every connection waits its capped backoff now
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.restore();
    proxy.listening().await;
    let (confirmed, healthy) = time_to_recover(&bus).await;
    eprintln!(
        "streams, port reopened after its backoff reached {CAP:?}: first confirm in {confirmed:?}, healthy in {healthy:?}"
    );
    wait_until(
        "the event after the outage handled",
        Duration::from_secs(20),
        || handled.load(Ordering::SeqCst) >= 2,
    )
    .await;
    assert!(
        confirmed <= Duration::from_millis(2500) && healthy <= Duration::from_millis(2500),
        "first confirm {confirmed:?}, healthy {healthy:?}"
    );
    bus.shutdown();
    running.await.expect("the bus task").expect("the bus run");
    for stream in [
        proxied.naming.stream_of_domain("faults"),
        proxied.naming.error_stream(&format!("{ns}-svc")),
    ] {
        transport.delete_stream(&stream).await.expect("deleting");
    }
    transport.close().await.expect("closing");
}
