//! One `AmqpTransport` shared by two buses, through RabbitMQ: closing the first bus closes
//! its consumer only, the second keeps publishing and consuming over the same connections,
//! and closing the second closes the transport. Against `RABBITMQ_URL` (see
//! `support::broker`).

use std::time::Duration;

use pubsub::amqp::AmqpTransport;
use pubsub::prelude::*;
use pubsub::transport::{Bytes, Transport, TransportError};

use crate::pings::{Ping, close_the_first_of_two};
use crate::support;

const WITHIN: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_one_bus_leaves_the_other_on_the_shared_transport() {
    // "interop": scripts/test.sh removes what a failed run leaves under that prefix
    let ns = support::namespace("interop-shared");
    let Some(config) = support::amqp_config() else {
        return;
    };
    let _cleanup =
        support::broker::has_rabbitmqctl().then(|| support::broker::DeleteQueues(ns.clone()));
    let transport = AmqpTransport::new(config.exchange(format!("{ns}.events")));
    let services = [format!("{ns}-a"), format!("{ns}-b")];
    close_the_first_of_two(
        services,
        transport.clone(),
        transport.clone(),
        WITHIN,
        || {},
    )
    .await;
    let direct = transport
        .publish(Message::new(Ping::KEY, Bytes::from_static(b"{\"n\":3}")).into())
        .await;
    assert!(
        matches!(direct, Err(TransportError::Closed)),
        "the last bus closed the transport: {direct:?}"
    );
}
