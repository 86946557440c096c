//! The transport conformance suite: the semantics every [`Transport`] must share, written
//! once. The memory transport runs it in this workspace's tests; the AMQP and Streams
//! transports run the same functions against a real broker.
//!
//! Each case takes a [`Broker`] — connections to the broker under test, and a way to read
//! a service's dead-letter queue — uses its own random namespace for keys and service
//! names, counts every event it publishes and every one handled, and panics with a clear
//! message when the transport falls short.
//!
//! ```no_run
//! use pubsub::{MemoryTransport, conformance};
//!
//! # async fn run() {
//! let broker = MemoryTransport::new(); // implements conformance::Broker
//! conformance::fan_out(&broker).await;
//! conformance::run_all(&broker).await;
//! # }
//! ```

mod cases;
mod support;

use std::sync::Arc;

use futures::future::BoxFuture;

pub use cases::*;

use crate::memory::MemoryTransport;
use crate::metadata::Message;
use crate::transport::Transport;

/// The broker under test, as the suite sees it.
pub trait Broker: Send + Sync {
    /// A new connection; every call must reach the same broker.
    fn connect(&self) -> BoxFuture<'_, Arc<dyn Transport>>;
    /// The messages in the dead-letter queue of `service`, oldest first.
    fn dead_letters<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Vec<Message>>;
}

impl Broker for MemoryTransport {
    fn connect(&self) -> BoxFuture<'_, Arc<dyn Transport>> {
        let transport: Arc<dyn Transport> = Arc::new(self.connection());
        Box::pin(std::future::ready(transport))
    }

    fn dead_letters<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Vec<Message>> {
        let messages = MemoryTransport::dead_letters(self, service)
            .unwrap_or_default()
            .into_iter()
            .map(|d| d.message)
            .collect();
        Box::pin(std::future::ready(messages))
    }
}

/// Runs every case in sequence.
pub async fn run_all(broker: &dyn Broker) {
    publish_subscribe(broker).await;
    fan_out(broker).await;
    ack_all_or_nack(broker).await;
    retry_then_dead_letter(broker).await;
    competing_consumers(broker).await;
    no_loss_across_resubscribe(broker).await;
    concurrent_publishes(broker).await;
    in_flight_bounded_by_prefetch(broker).await;
    ordering_per_producer(broker).await;
}
