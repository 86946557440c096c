//! Per-entity subscriptions through RabbitMQ (`Bus::subscribe` with `.param`): each is an
//! exclusive, auto-delete queue bound to its entity's key, so the broker routes it only
//! that entity's events, and the broker removes it when the stream is dropped (checked
//! with `rabbitmqctl list_queues`). Against `RABBITMQ_URL` (see `support::broker`).

use std::time::Duration;

use pubsub::amqp::AmqpTransport;
use pubsub::prelude::*;

use crate::desks;
use crate::support;

/// The live queues of `service` the broker has now, each with the connection that owns it
/// (an exclusive queue's `owner_pid`).
fn live_queues(service: &str) -> Vec<String> {
    let listed = support::broker::ctl(&[
        "-q",
        "list_queues",
        "name",
        "owner_pid",
        "--no-table-headers",
    ]);
    let prefix = format!("{service}.live.");
    listed
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|line| line.starts_with(&prefix))
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

/// A subscription whose connection is cut (through a proxy: as a broker SIGKILLed looks)
/// comes back on the next connection with a new private queue, and the old one is gone:
/// events published from then on reach it. Events published while it was away are not
/// seen (a live queue holds nothing for it then), which the README says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_comes_back_after_its_connection_is_cut() {
    let ns = support::namespace("conf-cut");
    let (Some(direct), Some(address), Some(url)) = (
        support::amqp_config(),
        support::broker::amqp_address(),
        support::broker::amqp_url(),
    ) else {
        return;
    };
    if !support::broker::has_rabbitmqctl() {
        return;
    }
    let proxy = crate::support::proxy::Proxy::start(&address).await;
    let through = url.replacen(&address, &format!("127.0.0.1:{}", proxy.port()), 1);
    let exchange = format!("{ns}.events");
    let proxied = pubsub::amqp::AmqpConfig::from_url(&through)
        .expect("the proxied URL")
        .exchange(exchange.clone());
    let reader = Bus::publisher(ns.clone(), AmqpTransport::new(proxied));
    let writer = Bus::publisher("writer", AmqpTransport::new(direct.exchange(exchange)));
    let mut desk_3 = reader
        .subscribe::<desks::Edited>()
        .param(desks::Edited::DESK, 3)
        .await
        .unwrap();
    let before = live_queues(&ns);
    assert_eq!(before.len(), 1, "{before:?}");
    writer
        .publish(&desks::Edited { desk: 3, n: 0 })
        .await
        .unwrap();
    let first = tokio::time::timeout(
        Duration::from_secs(10),
        futures::StreamExt::next(&mut desk_3),
    );
    assert_eq!(first.await.unwrap().unwrap().unwrap().event.n, 0);

    proxy.cut();
    // publish until the subscription gets one again (each at most 100 ms apart, 30 s)
    let mut got = None;
    for n in 1..=300 {
        writer.publish(&desks::Edited { desk: 3, n }).await.unwrap();
        let next = tokio::time::timeout(
            Duration::from_millis(100),
            futures::StreamExt::next(&mut desk_3),
        );
        if let Ok(item) = next.await {
            got = Some(item.expect("the stream goes on").expect("decodes").event.n);
            break;
        }
    }
    let resumed_at = got.expect("the subscription got an edit within 30 s of the cut");
    println!("after the cut, the subscription got edit {resumed_at} (edits 100 ms apart)");
    let after = live_queues(&ns);
    assert_eq!(
        after.len(),
        1,
        "one live queue, on the new connection: {after:?}"
    );
    assert_ne!(
        after, before,
        "the old exclusive queue went with its connection"
    );
    drop(desk_3);
    reader.close().await.unwrap();
    writer.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unread_subscription_keeps_the_newest() {
    let ns = support::namespace("conf-unread");
    let Some(config) = support::amqp_config() else {
        return;
    };
    let bus = Bus::publisher(
        ns.clone(),
        AmqpTransport::new(config.exchange(format!("{ns}.events"))),
    );
    desks::an_unread_subscription_keeps_the_newest(&bus).await;
    bus.close().await.unwrap();
}
