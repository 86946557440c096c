//! A bus meant only to publish stays a publisher; the harness shows what happened, and
//! fails loudly where an assertion could otherwise pass by mistake.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use pubsub::prelude::*;
use pubsub::{
    Bus, Handler, HandlerSelection, MemoryTransport, testing::TestHarness, transport::Bytes,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(domain = "ph", action = "clicked")]
struct Clicked {
    button: String,
}

// Linked into this binary: a publisher-only bus must not pick it up.
#[handler]
async fn count_clicks(_event: Clicked) -> Result<(), HandlerError> {
    Ok(())
}

#[tokio::test]
async fn a_publisher_only_bus_declares_and_consumes_nothing() {
    let broker = MemoryTransport::new();
    let web = Bus::publisher("web", broker.clone());
    assert!(web.handler_names().is_empty());
    web.publish(&Clicked {
        button: "buy".into(),
    })
    .await
    .unwrap();
    assert!(
        broker.queue_depth("web").is_err(),
        "no queue was declared for the publisher"
    );
    assert_eq!(broker.unroutable(), 1, "nobody listens yet");
    // running it only waits for the signal
    web.run_until(std::future::ready(())).await.unwrap();
}

/// The usual pipelining loop, in a spawned task: it holds `&FuturesUnordered` of pending
/// publishes across `bus.begin_publish(..).await`, which compiles only if a pending publish is
/// `Sync` (its transport's confirmation future need not be).
#[tokio::test]
async fn a_spawned_task_can_pipeline_publishes_in_a_futures_unordered() {
    use futures::stream::{FuturesUnordered, StreamExt};
    let broker = MemoryTransport::new();
    let web = Bus::publisher("web", broker.clone());
    let confirmed = tokio::spawn(async move {
        let mut pending: FuturesUnordered<pubsub::PendingPublish> = FuturesUnordered::new();
        for n in 0..10 {
            if pending.len() >= 4 {
                pending.next().await.expect("a publish").expect("confirmed");
            }
            pending.push(
                web.begin_publish(&Clicked {
                    button: format!("b{n}"),
                })
                .await
                .expect("sent"),
            );
        }
        let mut rest = 0;
        while let Some(publish) = pending.next().await {
            publish.expect("confirmed");
            rest += 1;
        }
        rest
    })
    .await
    .expect("the task");
    assert_eq!(confirmed, 4, "the last window");
    assert_eq!(broker.unroutable(), 10, "all ten went to the broker");
}

#[tokio::test]
async fn unroutable_publishes_can_be_made_errors() {
    let bus = Bus::builder()
        .service("strict")
        .transport(MemoryTransport::new())
        .select_handlers(HandlerSelection::None)
        .unroutable_is_error(true)
        .build()
        .await
        .unwrap();
    let error = bus
        .publish(&Clicked { button: "x".into() })
        .await
        .unwrap_err();
    assert!(error.to_string().contains("unroutable"), "{error}");
}

#[tokio::test]
async fn consumed_shows_each_delivery_of_an_event() {
    let broker = MemoryTransport::new();
    let fail_once = Arc::new(AtomicBool::new(true));
    let flag = Arc::clone(&fail_once);
    let clicks = Handler::typed("clicks", move |_c: Clicked, _ctx: Context| {
        let flag = Arc::clone(&flag);
        async move {
            if flag.swap(false, Ordering::SeqCst) {
                return Err(HandlerError::permanent("first delivery fails"));
            }
            Ok::<_, HandlerError>(())
        }
    });
    let h = TestHarness::start_on(
        Bus::builder()
            .select_handlers(HandlerSelection::None)
            .handler(clicks),
        broker.clone(),
    )
    .await
    .unwrap();
    h.publish(&Clicked { button: "a".into() }).await.unwrap();
    h.settled().await.unwrap();
    broker.replay_dead_letters("test").unwrap();
    h.settled().await.unwrap();
    assert_eq!(
        h.consumed::<Clicked>("clicks").len(),
        2,
        "delivered twice: at-least-once tests see the duplicate"
    );
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn published_fails_loudly_on_a_message_it_cannot_decode() {
    let h = TestHarness::start(
        Bus::builder().select_handlers(HandlerSelection::named(["count_clicks"])),
    )
    .await
    .unwrap();
    h.bus()
        .publish_message(Message::new(Clicked::KEY, Bytes::from_static(b"not json")))
        .await
        .unwrap();
    h.settled().await.unwrap();
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| h.published::<Clicked>()));
    assert!(
        result.is_err(),
        "an undecodable Clicked must not be skipped"
    );
    h.shutdown().await.unwrap();
}

/// A shared transport is a transport: `Bus::publisher` and the builder take an
/// `Arc<dyn Transport>` as they take the transport itself, and every call reaches the
/// shared transport, not the trait's defaults (no stream naming, no health, no dead letters).
#[tokio::test]
async fn an_arc_of_a_transport_is_that_transport() {
    use pubsub::transport::{Transport, TransportError};

    let shared: Arc<dyn Transport> = Arc::new(MemoryTransport::stream_backed());
    assert!(Transport::stream_naming(&shared).is_some(), "stream-backed");
    assert_eq!(Transport::name(&shared), "memory-streams");
    assert_eq!(Transport::health(&shared).connections.len(), 1);
    let unknown = Transport::dead_letters(&shared, "nobody").await;
    assert!(
        matches!(unknown, Err(TransportError::Topology { .. })),
        "the memory broker's answer, not Unsupported: {unknown:?}"
    );
    let web = Bus::publisher("web", shared.clone());
    web.publish(&Clicked {
        button: "buy".into(),
    })
    .await
    .expect("published through the shared transport");
    let bus = Bus::builder()
        .service("clicks")
        .transport(shared.clone())
        .select_handlers(HandlerSelection::None)
        .build()
        .await
        .expect("built on the shared transport");
    assert_eq!(bus.capabilities(), Transport::capabilities(&shared));
}
