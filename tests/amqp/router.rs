//! In-process pattern matching and RabbitMQ's topic exchange agree on every key/pattern
//! pair: random patterns bound to real queues, random keys published, and each queue holds
//! exactly what `Pattern::matches` says (the router that dispatches deliveries is held to
//! `Pattern::matches` by its own property tests) (edge cases: the empty key, `#` matching zero words, long
//! keys, uppercase and non-ASCII words). Against `RABBITMQ_URL` (see `support::broker`).

use std::collections::BTreeSet;

use lapin::BasicProperties;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use pubsub::amqp::connect;
use pubsub::pattern::Pattern;

use crate::support;

const WORDS: [&str; 5] = ["a", "b", "c", "Ü", "Order"];

fn word(rng: &mut fastrand::Rng) -> &'static str {
    WORDS[rng.usize(..WORDS.len())]
}

fn pattern(rng: &mut fastrand::Rng) -> String {
    let n = rng.usize(1..=4);
    (0..n)
        .map(|_| match rng.u8(..10) {
            0..=1 => "*",
            2..=3 => "#",
            _ => word(rng),
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn key(rng: &mut fastrand::Rng) -> String {
    let n = rng.usize(0..=6);
    (0..n).map(|_| word(rng)).collect::<Vec<_>>().join(".")
}

#[tokio::test]
async fn every_queue_gets_exactly_what_the_router_says() {
    let Some(config) = support::amqp_config() else {
        return;
    };
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut patterns: Vec<String> = vec!["#".into(), "#.#".into(), "*".into(), "a.#.b".into()];
    patterns.extend((0..36).map(|_| pattern(&mut rng)));
    let mut keys: Vec<String> = vec![String::new(), "a.b".into(), "a".into(), "a.x.y.z.b".into()];
    keys.push(vec!["a"; 120].join(".")); // a long key (239 bytes)
    keys.extend((0..150).map(|_| key(&mut rng)));

    let connection = connect(&config.connection_attempts(3), "router test")
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let ns = support::namespace("router");
    channel
        .exchange_declare(
            ns.as_str().into(),
            lapin::ExchangeKind::Topic,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    // exclusive: the queues go with the connection
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        ..QueueDeclareOptions::default()
    };
    let queues: Vec<String> = (0..patterns.len()).map(|i| format!("{ns}.q{i}")).collect();
    for (queue, pattern) in queues.iter().zip(&patterns) {
        channel
            .queue_declare(queue.as_str().into(), exclusive, FieldTable::default())
            .await
            .unwrap();
        channel
            .queue_bind(
                queue.as_str().into(),
                ns.as_str().into(),
                pattern.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
    }
    // confirmed publishes: once acked, each copy is in its queues
    for (i, key) in keys.iter().enumerate() {
        channel
            .basic_publish(
                ns.as_str().into(),
                key.as_str().into(),
                BasicPublishOptions::default(),
                i.to_string().as_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let compiled: Vec<Pattern> = patterns
        .iter()
        .map(|p| Pattern::new(p.as_str()).unwrap())
        .collect();
    let mut mismatches = Vec::new();
    for (q, queue) in queues.iter().enumerate() {
        let mut got = BTreeSet::new();
        while let Some(message) = channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            let index: usize = String::from_utf8(message.delivery.data)
                .unwrap()
                .parse()
                .unwrap();
            got.insert(index);
        }
        let expected: BTreeSet<usize> = keys
            .iter()
            .enumerate()
            .filter(|(_, key)| compiled[q].matches(key))
            .map(|(i, _)| i)
            .collect();
        if got != expected {
            let show =
                |set: &BTreeSet<usize>| set.iter().map(|&i| keys[i].clone()).collect::<Vec<_>>();
            mismatches.push(format!(
                "pattern {:?}: broker only {:?}, router only {:?}",
                patterns[q],
                show(&got.difference(&expected).copied().collect()),
                show(&expected.difference(&got).copied().collect()),
            ));
        }
    }
    channel
        .exchange_delete(ns.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .unwrap();
    connection.close(200, "done".into()).await.unwrap();
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
