//! Per-entity subscriptions through RabbitMQ (`Bus::subscribe` with `.param`): each is an
//! exclusive, auto-delete queue bound to its entity's key, so the broker routes it only
//! that entity's events, and the broker removes it when the stream is dropped (checked
//! with `rabbitmqctl list_queues`). Against `RABBITMQ_URL` (see `support::broker`).

use std::time::Duration;

use pubsub::amqp::AmqpTransport;
use pubsub::prelude::*;

use crate::desks;
use crate::support;

/// The live queues of `service` the broker has now.
fn live_queues(service: &str) -> Vec<String> {
    let listed = support::broker::ctl(&["-q", "list_queues", "name", "--no-table-headers"]);
    let prefix = format!("{service}.live.");
    listed
        .lines()
        .map(str::trim)
        .filter(|name| name.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_desks_each_get_their_own_and_their_queues_go_with_them() {
    let ns = support::namespace("conf-desks");
    let Some(config) = support::amqp_config() else {
        return;
    };
    if !support::broker::has_rabbitmqctl() {
        return;
    }
    let config = config.exchange(format!("{ns}.events"));
    let bus = Bus::publisher(ns.clone(), AmqpTransport::new(config));
    let streams = desks::each_desk_gets_its_own(&bus, 0, 20).await;
    let open = live_queues(&ns);
    assert_eq!(open.len(), 100, "one queue per subscription: {open:?}");
    drop(streams);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = live_queues(&ns);
        if left.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} live queues are left 20 s after their streams were dropped: {left:?}",
            left.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bus.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instance_key_survives_retries_dead_letters_and_requests() {
    let ns = support::namespace("conf-keys");
    let Some(config) = support::amqp_config() else {
        return;
    };
    let transport = AmqpTransport::new(config.exchange(format!("{ns}.events")));
    desks::the_instance_key_survives_retries_dead_letters_and_requests(transport, &ns).await;
}
