//! A service queue of one process (exclusive, named with a uuid: a live reader) leaves
//! nothing on the broker once its bus is closed: not the queue, nor its dead-letter queue,
//! dead-letter exchange or the wait queue a delayed retry used. Against `RABBITMQ_URL` and
//! `RABBITMQ_MANAGEMENT_URL` (see `support::broker`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use pubsub::amqp::{AmqpTransport, QueueOptions, connect};
use pubsub::prelude::*;
use pubsub::{Handler, HandlerSelection, RetryPolicy};

use crate::management;
use crate::support::{self, broker};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "conf-live", action = "seen")]
struct Seen {
    n: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_process_service_leaves_nothing_behind() {
    let Some(config) = support::amqp_config() else {
        return;
    };
    if broker::required("RABBITMQ_MANAGEMENT_URL").is_none() {
        return;
    }
    let ns = support::namespace("conf-live");
    let mut queue = QueueOptions::default();
    queue.durable = false;
    queue.exclusive = true;
    let config = config
        .exchange(format!("{ns}.events"))
        .connection_attempts(3)
        .queue_options(queue);
    let service = format!("{ns}-reader-{}", pubsub::Uuid::now_v7().simple());

    // fails once, so the retry waits in a wait queue on the broker
    let attempts = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&attempts);
    let handler = Handler::typed("seen", move |_: Seen, _: Context| {
        let attempt = counted.fetch_add(1, Ordering::SeqCst);
        async move {
            if attempt == 0 {
                Err(HandlerError::new("the first attempt fails"))
            } else {
                Ok(())
            }
        }
    });
    let bus = Bus::builder()
        .service(service.as_str())
        .transport(AmqpTransport::new(config.clone()))
        .select_handlers(HandlerSelection::None)
        .handler(handler)
        .retry(RetryPolicy::exponential(2, Duration::from_millis(50)))
        .in_process_retry_limit(Duration::ZERO)
        .build()
        .await
        .expect("the bus starts");
    let task = bus.spawn().await.expect("consumes");
    bus.publish(&Seen { n: 1 }).await.expect("published");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while bus.stats().acked < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not handled: {:?}",
            bus.stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(bus.stats().retried, 1, "{:?}", bus.stats());

    // the retry's delay is jittered: its wait queue is the 50 ms or the 71 ms step
    let retry = format!("{service}.retry.");
    let wait_queue = management::get("/queues/%2F")
        .and_then(|all| {
            all.as_array()?
                .iter()
                .filter_map(|q| q["name"].as_str())
                .find(|name| name.starts_with(&retry))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("no wait queue {retry}* while the bus runs"));
    let queues = [
        service.clone(),
        format!("{service}.dead-letters"),
        wait_queue,
    ];
    // the management API may show a queue declared a moment ago a little later: wait for it
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for name in &queues {
        let queue = loop {
            match management::get(&format!("/queues/%2F/{name}")) {
                Some(queue) => break queue,
                None if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                None => panic!("{name} does not exist while the bus runs"),
            }
        };
        assert_eq!(queue["exclusive"], true, "{name}: {queue}");
    }
    let dlx = format!("/exchanges/%2F/{service}.dlx");
    let exchange = management::get(&dlx).expect("the dead-letter exchange exists");
    assert_eq!(exchange["auto_delete"], true, "{exchange}");

    bus.close().await.expect("closes");
    task.await.expect("the task").expect("ran");
    let paths: Vec<String> = queues
        .iter()
        .map(|name| format!("/queues/%2F/{name}"))
        .chain([dlx])
        .collect();
    // the broker deletes them as the connections close: wait for it
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for path in &paths {
        while management::get(path).is_some() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path} outlived the bus"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // the events exchange is shared by design: this test's own goes
    let connection = connect(&config, "cleanup").await.expect("connects");
    let channel = connection.create_channel().await.expect("a channel");
    channel
        .exchange_delete(config.exchange.as_str().into(), Default::default())
        .await
        .expect("deleted");
    let _ = connection.close(200, "done".into()).await;
}
