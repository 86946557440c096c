//! One transport shared by several buses, as the e-commerce example shares one among five:
//! closing a bus closes its own run and consumer, and the transport only when it was the
//! last bus on it — whether the buses share the transport as clones or as one
//! `Arc<dyn Transport>`.

use std::sync::Arc;
use std::time::Duration;

use pubsub::prelude::*;
use pubsub::transport::{Bytes, Transport, TransportError};
use pubsub::{Bus, Error, MemoryTransport, health::ConnectionState};

use crate::pings::{Ping, close_the_first_of_two, ping_bus};

const WITHIN: Duration = Duration::from_secs(5);

fn connection_state(broker: &MemoryTransport) -> ConnectionState {
    Transport::health(broker).connections[0].state
}

/// Two buses on `first` and `second`, which are one transport (that of `broker`).
async fn closing_the_first_leaves_the_second(
    broker: &MemoryTransport,
    first: impl Transport,
    second: impl Transport,
) {
    let services = ["share-a".to_owned(), "share-b".to_owned()];
    close_the_first_of_two(services, first, second, WITHIN, || {
        let a_queue = broker.queue_depth("share-a").unwrap();
        assert_eq!(a_queue.consumers, 0, "a's consumer is closed");
        assert_eq!(
            connection_state(broker),
            ConnectionState::Up,
            "b still uses it"
        );
    })
    .await;
    assert_eq!(
        connection_state(broker),
        ConnectionState::Closed,
        "the last bus closed it"
    );
    let direct = broker
        .publish(Message::new(Ping::KEY, Bytes::from_static(b"{\"n\":3}")).into())
        .await;
    assert!(matches!(direct, Err(TransportError::Closed)), "{direct:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_of_a_transport_close_with_their_last_bus() {
    let broker = MemoryTransport::new();
    closing_the_first_leaves_the_second(&broker, broker.clone(), broker.clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shared_arc_closes_with_its_last_bus() {
    let broker = MemoryTransport::new();
    let shared: Arc<dyn Transport> = Arc::new(broker.clone());
    closing_the_first_leaves_the_second(&broker, Arc::clone(&shared), shared).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_dropped_without_close_does_not_keep_the_transport_open() {
    let broker = MemoryTransport::new();
    let dropped = Bus::publisher("share-dropped", broker.clone());
    let (kept, _got) = ping_bus("share-kept", broker.clone()).await;
    drop(dropped);
    kept.close().await.unwrap();
    assert_eq!(connection_state(&broker), ConnectionState::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_transport_itself_closes_it_for_every_bus() {
    let broker = MemoryTransport::new();
    let (a, b) = (
        Bus::publisher("share-x", broker.clone()),
        Bus::publisher("share-y", broker.clone()),
    );
    broker.close().await.unwrap();
    for bus in [a, b] {
        let refused = bus.publish(&Ping { n: 1 }).await;
        assert!(
            matches!(refused, Err(Error::Transport(TransportError::Closed))),
            "{refused:?}"
        );
        bus.close().await.unwrap(); // still fine to close
    }
}
