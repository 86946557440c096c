//! The gateway example over RabbitMQ: the gateway and its processors as processes of their
//! own, on an exchange and a service queue of this test's (`interop-gateway-…`, which
//! `scripts/test.sh` removes if a run leaves them behind), so that no other test's or
//! run's processor answers.

use std::time::Duration;

use crate::client::{Socket, counts, health_until, reply_to};
use crate::process::Example;
use crate::scenarios;
use crate::support::proxy::Proxy;
use crate::support::{self, broker};

/// The options naming this test's exchange and service queue, and the guard deleting its
/// queues at the end (with `rabbitmqctl`, where the environment gives one); `None`: no
/// broker, skipped.
fn names() -> Option<(Vec<String>, Option<broker::DeleteQueues>)> {
    broker::amqp_url()?;
    let name = support::namespace("interop-gateway");
    let cleanup = std::env::var_os(broker::RABBITMQCTL)
        .is_some()
        .then(|| broker::DeleteQueues(name.clone()));
    let options = ["--service", &name, "--exchange", &name].map(str::to_owned);
    Some((options.to_vec(), cleanup))
}

/// Starts a processor of its own with `options` (and `more`), ready.
async fn processor(options: &[String], more: &[&str]) -> Example {
    let args: Vec<&str> = ["--role", "processor"]
        .into_iter()
        .chain(options.iter().map(String::as_str))
        .chain(more.iter().copied())
        .collect();
    let mut processor = Example::start("amqp", &args);
    processor.processor_ready().await;
    processor
}

/// Starts a gateway of its own with `options` (and `more`): it and its address.
async fn gateway(options: &[String], more: &[&str]) -> (Example, String) {
    gateway_at(options, more, &[]).await
}

/// [`gateway`], with these environment variables too.
async fn gateway_at(options: &[String], more: &[&str], env: &[(&str, &str)]) -> (Example, String) {
    let args: Vec<&str> = ["--role", "gateway"]
        .into_iter()
        .chain(options.iter().map(String::as_str))
        .chain(more.iter().copied())
        .collect();
    Example::gateway_with("amqp", &args, env).await
}

#[tokio::test]
async fn two_hundred_sockets_and_fifty_streams_each_get_their_own_answer_over_rabbitmq() {
    let Some((options, _cleanup)) = names() else {
        return;
    };
    let _processor = processor(&options, &[]).await;
    let (_gateway, address) = gateway(&options, &[]).await;
    scenarios::crowd(&address).await;
}

#[tokio::test]
async fn gateway_and_processor_in_one_process_over_rabbitmq() {
    let Some((options, _cleanup)) = names() else {
        return;
    };
    let args: Vec<&str> = options.iter().map(String::as_str).collect();
    // its processor is ready before it listens
    let (_both, address) = Example::gateway("amqp", &args).await;
    let mut socket = Socket::open(&address).await;
    assert_eq!(socket.ask("hello").await, reply_to("hello"));
    socket.close().await;
}

#[tokio::test]
async fn a_processor_killed_mid_run_fails_its_requests_at_their_deadline_until_another_answers() {
    let Some((options, _cleanup)) = names() else {
        return;
    };
    let timeout = Duration::from_secs(2);
    // it takes a minute per text: every request is in its hands when it is killed
    let slow = processor(&options, &["--delay-ms", "60000"]).await;
    let (_gateway, address) = gateway(&options, &["--timeout-ms", "2000"]).await;
    let sockets = {
        let killed = async {
            // the requests are pending, the processor is working on them: kill it
            health_until(&address, "with pending requests", |_, health| {
                counts(health).1 == 10
            })
            .await;
            slow.kill();
        };
        let (sockets, ()) = futures::join!(scenarios::too_slow(&address, 10, timeout), killed);
        sockets
    };
    // a new processor: the same sockets' requests succeed again
    let _fresh = processor(&options, &[]).await;
    let _sockets = scenarios::ask_each(sockets, "after").await;
    let body = health_until(&address, "10 sockets, nothing pending", |status, health| {
        status == 200 && counts(health) == (10, 0)
    })
    .await;
    assert_eq!(body["status"], "healthy");
}

#[tokio::test]
async fn health_is_503_while_the_gateway_has_no_connection_and_the_socket_outlives_it() {
    let (Some((options, _cleanup)), Some(url), Some(address)) =
        (names(), broker::amqp_url(), broker::amqp_address())
    else {
        return;
    };
    let _processor = processor(&options, &[]).await;
    // the gateway reaches the broker through a proxy that this test breaks
    let proxy = Proxy::start(&address).await;
    let through = url.replacen(&address, &format!("127.0.0.1:{}", proxy.port()), 1);
    let env = [("RABBITMQ_URL", through.as_str())];
    let (_gateway, web) = gateway_at(&options, &["--timeout-ms", "2000"], &env).await;
    let mut socket = Socket::open(&web).await;
    assert_eq!(socket.ask("before").await, reply_to("before"));
    health_until(&web, "healthy", |status, health| {
        status == 200 && health["status"] == "healthy"
    })
    .await;

    proxy.refuse();
    proxy.cut();
    health_until(&web, "unhealthy", |status, health| {
        status == 503 && health["status"] == "unhealthy" && counts(health) == (1, 0)
    })
    .await;
    let answer = socket.ask("during").await;
    assert_eq!(answer["request"], "during", "{answer}");
    let error = answer["error"].as_str().unwrap_or_default();
    assert!(error.contains("no connection to RabbitMQ"), "{answer}");

    proxy.restore();
    health_until(&web, "healthy again", |status, health| {
        status == 200 && health["status"] == "healthy"
    })
    .await;
    assert_eq!(socket.ask("after").await, reply_to("after"));
    socket.close().await;
}
