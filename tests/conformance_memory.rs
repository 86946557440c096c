//! The transport conformance suite, run against the in-memory transport.

use pubsub::{MemoryTransport, conformance};

macro_rules! conformance_cases {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            conformance::$case(&MemoryTransport::new()).await;
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
    in_flight_bounded_by_prefetch,
    ordering_per_producer,
);
