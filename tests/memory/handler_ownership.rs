//! Which bus runs a `#[handler]` that names no service: the buses of one service per
//! process. A second service's bus that would run it too fails to build, naming it, unless
//! its builder chose its handlers. (This binary has such handlers: `dispatch.rs`.)
//!
//! The claim is process-wide; no other test of this binary builds a bus with the default
//! selection, so this one test goes through the whole story in order.

use pubsub::{Bus, Error, HandlerSelection, MemoryTransport, RetryPolicy};

fn builder(service: &str, broker: &MemoryTransport) -> pubsub::BusBuilder {
    Bus::builder()
        .service(service)
        .transport(broker.clone())
        // the policy a handler of `dispatch.rs` names
        .define_retry_policy("quick", RetryPolicy::default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_without_a_service_run_on_one_service_per_process() {
    let broker = MemoryTransport::new();
    let gateway = builder("own-gateway", &broker).build().await.unwrap();
    assert!(
        gateway.handler_names().contains(&"pack".to_owned()),
        "{:?}",
        gateway.handler_names()
    );
    // more buses of the same service share its queue: they run the same handlers
    let second_gateway = builder("own-gateway", &broker).build().await.unwrap();

    let refused = builder("own-processor", &broker).build().await.unwrap_err();
    let Error::UnassignedHandlersTaken {
        service,
        owner,
        handlers,
    } = &refused
    else {
        panic!("{refused:?}");
    };
    assert_eq!(
        (service.as_str(), owner.as_str()),
        ("own-processor", "own-gateway")
    );
    assert!(
        handlers
            .iter()
            .any(|h| h.starts_with("`pack` (tests/memory/dispatch.rs:")),
        "{handlers:?}"
    );
    let message = refused.to_string();
    assert!(
        message.contains("#[handler(service = \"...\")]"),
        "{message}"
    );
    assert!(message.contains(".select_handlers(..)"), "{message}");
    assert!(
        broker.queue_depth("own-processor").is_err(),
        "a refused bus declared nothing"
    );

    // an explicit selection is taken as it is, the default one included
    let chosen = builder("own-processor", &broker)
        .select_handlers(HandlerSelection::ForService)
        .build()
        .await
        .unwrap();
    assert_eq!(chosen.handler_names(), gateway.handler_names());
    drop(chosen);

    // once the gateway's buses are gone, another service may take them
    gateway.close().await.unwrap();
    assert!(matches!(
        builder("own-processor", &broker).build().await,
        Err(Error::UnassignedHandlersTaken { .. })
    ));
    drop(second_gateway);
    let processor = builder("own-processor", &broker).build().await.unwrap();
    assert_eq!(processor.handler_names(), gateway.handler_names());
}
