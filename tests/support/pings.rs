//! A bus that reports what it handles: [`Ping`] events, each one's number passed on to a
//! channel the test reads, for the tests of buses sharing a transport.
//!
//! Included by the binaries that use it (`memory`, `amqp`), not by `support`: a derived
//! event is a domain of the binary, and the stream tests read every domain.

use std::time::Duration;

use pubsub::prelude::*;
use pubsub::transport::{Transport, TransportError};
use pubsub::{Bus, Error, HandlerSelection};
use tokio::sync::mpsc;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(domain = "share", action = "ping")]
pub(crate) struct Ping {
    pub(crate) n: u32,
}

/// A bus of `service` on `transport`, not yet running, whose one handler passes the number
/// of each ping on to the receiver.
pub(crate) async fn ping_bus(
    service: impl Into<String>,
    transport: impl Transport,
) -> (Bus, mpsc::UnboundedReceiver<u32>) {
    let (seen, got) = mpsc::unbounded_channel();
    let handler = pubsub::Handler::typed("seen", move |ping: Ping, _ctx: Context| {
        let seen = seen.clone();
        async move {
            let _ = seen.send(ping.n);
            Ok::<_, HandlerError>(())
        }
    });
    let bus = Bus::builder()
        .service(service)
        .transport(transport)
        .select_handlers(HandlerSelection::None)
        .handler(handler)
        .build()
        .await
        .expect("a ping bus");
    (bus, got)
}

/// The number of the next ping handled; panics if none comes `within`.
pub(crate) async fn next_ping(got: &mut mpsc::UnboundedReceiver<u32>, within: Duration) -> u32 {
    tokio::time::timeout(within, got.recv())
        .await
        .unwrap_or_else(|_| panic!("no ping handled within {within:?}"))
        .expect("the bus's handler is gone")
}

/// Runs two ping buses of `services` on `first` and `second`, one transport given twice
/// (clones, or one `Arc`), and closes the first: it publishes nothing more, while the
/// second still publishes and consumes (and `between` checks what else the test wants
/// there). Then closes the second, the last bus on the transport.
pub(crate) async fn close_the_first_of_two(
    services: [String; 2],
    first: impl Transport,
    second: impl Transport,
    within: Duration,
    between: impl FnOnce(),
) {
    let [a, b] = services;
    let (a, mut a_got) = ping_bus(a, first).await;
    let (b, mut b_got) = ping_bus(b, second).await;
    let (a_task, b_task) = (a.spawn().await.unwrap(), b.spawn().await.unwrap());
    a.publish(&Ping { n: 1 }).await.unwrap();
    assert_eq!(next_ping(&mut a_got, within).await, 1);
    assert_eq!(next_ping(&mut b_got, within).await, 1);

    a.close().await.unwrap();
    a_task.await.unwrap().unwrap();
    let refused = a.publish(&Ping { n: 0 }).await;
    assert!(
        matches!(refused, Err(Error::Transport(TransportError::Closed))),
        "a closed bus publishes nothing: {refused:?}"
    );
    between();
    b.publish(&Ping { n: 2 }).await.unwrap();
    assert_eq!(
        next_ping(&mut b_got, within).await,
        2,
        "the other bus consumes"
    );
    assert!(b.health().is_healthy(), "{:?}", b.health());

    b.close().await.unwrap();
    b_task.await.unwrap().unwrap();
}
