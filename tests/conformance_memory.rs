//! The transport conformance suite, run against the in-memory transport.

use std::sync::Arc;

use pubsub::{MemoryTransport, Transport, conformance};

/// Every connection reaches the same in-memory broker, as connections to one RabbitMQ do.
fn broker() -> impl Fn() -> std::future::Ready<Arc<dyn Transport>> + Send + Sync {
    let broker = MemoryTransport::new();
    move || std::future::ready(Arc::new(broker.clone()) as Arc<dyn Transport>)
}

macro_rules! conformance_cases {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            conformance::$case(&broker()).await;
        }
    )*};
}

conformance_cases!(
    publish_subscribe,
    fan_out,
    ack_all_or_nack,
    retry_then_dead_letter,
    competing_consumers,
    no_loss_across_resubscribe,
    concurrent_publishes,
    ordering_per_producer,
);
