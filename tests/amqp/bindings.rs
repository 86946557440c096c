//! The broker converges on the code: a service restarted without a handler no longer gets
//! that handler's events, because its start removes the binding nothing asks for; and
//! without the management API the start goes on and says so once. Against `RABBITMQ_URL`
//! and `RABBITMQ_MANAGEMENT_URL` (see `support::broker`).

use std::time::Duration;

use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use pubsub::amqp::{AmqpConfig, AmqpTransport, connect};
use pubsub::prelude::*;
use pubsub::{Handler, HandlerSelection};

use crate::management;
use crate::support::{self, broker, logs::CapturedLogs};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "conf-bindings", action = "kept")]
struct Kept {
    n: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "conf-bindings", action = "dropped")]
struct Dropped {
    n: u32,
}

fn kept_handler() -> Handler {
    Handler::typed("kept", |_: Kept, _: Context| async {
        Ok::<_, HandlerError>(())
    })
}

fn dropped_handler() -> Handler {
    Handler::typed("dropped", |_: Dropped, _: Context| async {
        Ok::<_, HandlerError>(())
    })
}

/// A wildcard: its binding's key is percent-encoded in the management API's answers.
fn dropped_anywhere_handler() -> Handler {
    Handler::raw(
        "dropped_anywhere",
        "#.dropped",
        |_: RawEvent, _: Context| async { Ok::<_, HandlerError>(()) },
    )
}

/// A bus of `service` with these handlers, built (its topology declared), not consuming.
async fn start(config: &AmqpConfig, service: &str, handlers: Vec<Handler>) -> Bus {
    let mut builder = Bus::builder()
        .service(service)
        .transport(AmqpTransport::new(config.clone()))
        .select_handlers(HandlerSelection::None);
    for handler in handlers {
        builder = builder.handler(handler);
    }
    builder.build().await.expect("the bus starts")
}

/// The routing keys of the bindings from `exchange` to `queue`, sorted, as the management
/// API lists them.
fn bound_keys(exchange: &str, queue: &str) -> Vec<String> {
    let bindings = management::get(&format!("/queues/%2F/{queue}/bindings")).expect("the queue");
    let mut keys: Vec<String> = bindings
        .as_array()
        .expect("a list")
        .iter()
        .filter(|b| b["source"] == exchange)
        .filter_map(|b| b["routing_key"].as_str().map(str::to_owned))
        .collect();
    keys.sort();
    keys
}

/// Waits (20 s at most) until `bus` has settled one delivery, then closes it.
async fn settle_one_and_close(bus: &Bus, task: tokio::task::JoinHandle<pubsub::Result<()>>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while bus.stats().acked < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing was handled: {:?}",
            bus.stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bus.close().await.expect("closes");
    task.await.expect("the task").expect("ran");
}

/// Deletes the service's queues and exchanges (the test script would too, by prefix).
async fn remove(config: &AmqpConfig, service: &str) {
    let connection = connect(config, "cleanup").await.expect("connects");
    let channel = connection.create_channel().await.expect("a channel");
    for queue in [service.to_owned(), format!("{service}.dead-letters")] {
        let _ = channel
            .queue_delete(queue.as_str().into(), Default::default())
            .await;
    }
    for exchange in [format!("{service}.dlx"), config.exchange.clone()] {
        let _ = channel
            .exchange_delete(exchange.as_str().into(), Default::default())
            .await;
    }
    let _ = connection.close(200, "done".into()).await;
}

#[tokio::test]
async fn a_restart_without_a_handler_removes_its_binding() {
    let Some(config) = support::amqp_config() else {
        return;
    };
    if broker::required("RABBITMQ_MANAGEMENT_URL").is_none() {
        return;
    }
    let ns = support::namespace("conf-bindings");
    let config = config
        .exchange(format!("{ns}.events"))
        .connection_attempts(3);
    let service = format!("{ns}-svc");

    let handlers = vec![
        kept_handler(),
        dropped_handler(),
        dropped_anywhere_handler(),
    ];
    let first = start(&config, &service, handlers).await;
    first.close().await.expect("closes");
    assert_eq!(
        bound_keys(&config.exchange, &service),
        ["#.dropped", Dropped::KEY, Kept::KEY],
        "the first start binds every pattern"
    );

    // restarted with only `kept`
    let (logs, capturing) = CapturedLogs::capture();
    let second = start(&config, &service, vec![kept_handler()]).await;
    drop(capturing);
    assert_eq!(
        bound_keys(&config.exchange, &service),
        [Kept::KEY],
        "the binding no handler asks for is gone"
    );
    let logged = logs.text();
    let removed: Vec<&str> = logged
        .lines()
        .filter(|l| l.contains("removed a stale binding"))
        .collect();
    assert_eq!(removed.len(), 2, "each removal logged: {logged}");
    for line in &removed {
        assert!(
            line.contains(" INFO ") && line.contains(&format!("queue=\"{service}\"")),
            "{line}"
        );
    }
    for key in ["#.dropped", Dropped::KEY] {
        let key = format!("key=\"{key}\"");
        assert!(removed.iter().any(|l| l.contains(&key)), "{key}: {logged}");
    }

    // a `dropped` event no longer reaches the queue; a `kept` one does
    let raw = connect(&config, "raw publisher").await.expect("connects");
    let channel = raw.create_channel().await.expect("a channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    for (key, body) in [(Dropped::KEY, r#"{"n":1}"#), (Kept::KEY, r#"{"n":2}"#)] {
        channel
            .basic_publish(
                config.exchange.as_str().into(),
                key.into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default(),
            )
            .await
            .expect("published")
            .await
            .expect("confirmed");
    }
    // confirmed publishes are enqueued: the queue holds exactly what was routed to it
    let queue = channel
        .queue_declare(
            service.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("the queue exists");
    assert_eq!(queue.message_count(), 1, "only the kept event is queued");

    // and the bus handles it, with nothing unhandled
    let task = second.spawn().await.expect("consumes");
    settle_one_and_close(&second, task).await;
    let stats = second.stats();
    assert_eq!((stats.deliveries, stats.unhandled), (1, 0), "{stats:?}");
    let _ = raw.close(200, "done".into()).await;
    remove(&config, &service).await;
}

#[tokio::test]
async fn without_the_management_api_the_start_goes_on_and_warns_once() {
    let Some(config) = support::amqp_config() else {
        return;
    };
    // a port nothing listens on: the connection is refused
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let unreachable = format!("http://127.0.0.1:{closed}");
    starts_and_warns_once(config, &unreachable, "Connection refused").await;
}

#[tokio::test]
async fn with_credentials_the_management_api_refuses_the_start_goes_on_and_warns_once() {
    let Some(config) = support::amqp_config() else {
        return;
    };
    let Some(api) = broker::required("RABBITMQ_MANAGEMENT_URL") else {
        return;
    };
    let (scheme, host) = api.split_once("://").expect("a URL");
    let refused = format!("{scheme}://nobody:Wr0ng-9c1e@{host}");
    starts_and_warns_once(config, &refused, "HTTP 401").await;
}

/// A bus of a new service whose management API is `management` starts, consumes and
/// handles an event, and logs exactly one warning that names the queue, the API (password
/// hidden), `reason` and the patterns asked for.
async fn starts_and_warns_once(config: AmqpConfig, management: &str, reason: &str) {
    let ns = support::namespace("conf-nomgmt");
    let config = config
        .exchange(format!("{ns}.events"))
        .connection_attempts(3)
        .management_url(management)
        .expect("a URL");
    let service = format!("{ns}-svc");

    let (logs, capturing) = CapturedLogs::capture();
    let bus = start(&config, &service, vec![kept_handler()]).await;
    // consuming declares again: still one warning
    let task = bus.spawn().await.expect("consumes");
    bus.publish(&Kept { n: 1 }).await.expect("published");
    settle_one_and_close(&bus, task).await;
    drop(capturing);
    remove(&config, &service).await;

    let logged = logs.text();
    let warnings: Vec<&str> = logged
        .lines()
        .filter(|l| l.contains("cannot check the queue for bindings"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning: {logged}");
    let warning = warnings[0];
    let shown = config.management_endpoint().expect("the check is on");
    for part in [
        " WARN ",
        &format!("queue=\"{service}\""),
        &format!("management={shown} "),
        reason,
        &format!("asked_for=[\"{}\"]", Kept::KEY),
    ] {
        assert!(warning.contains(part), "{part} missing in {warning}");
    }
    for password in ["Wr0ng-9c1e", ":guest@"] {
        assert!(!warning.contains(password), "a password shows: {warning}");
    }
}
