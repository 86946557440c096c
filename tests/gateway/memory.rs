//! The gateway example on the in-memory broker: gateway and processor in one process.

use std::time::Duration;

use crate::client::{counts, events, health};
use crate::process::Example;
use crate::scenarios;

#[tokio::test]
async fn two_hundred_sockets_and_fifty_streams_each_get_their_own_answer() {
    let (_gateway, address) = Example::gateway("memory", &[]).await;
    let (status, body) = health(&address).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("healthy")),
        "{body}"
    );
    scenarios::crowd(&address).await;
}

#[tokio::test]
async fn an_answer_too_slow_is_an_error_frame_at_the_deadline_and_the_socket_stays_open() {
    let timeout = Duration::from_millis(700);
    let (_gateway, address) =
        Example::gateway("memory", &["--timeout-ms", "700", "--delay-ms", "60000"]).await;
    let sockets = scenarios::too_slow(&address, 5, timeout).await;
    // and an event stream ends with an error event
    let streamed = events(&address, "late").await;
    assert_eq!(streamed.len(), 1, "{streamed:?}");
    assert_eq!(streamed[0].0, "error", "{streamed:?}");
    assert_eq!(streamed[0].1["request"], "late", "{streamed:?}");
    drop(sockets);
    let body =
        crate::client::health_until(&address, "without sockets", |_, h| counts(h) == (0, 0)).await;
    assert_eq!(body["status"], "healthy");
}

#[tokio::test]
async fn a_gateway_or_processor_of_its_own_needs_rabbitmq() {
    for role in ["gateway", "processor"] {
        let (status, output) = Example::start("memory", &["--role", role]).finish();
        assert!(!status.success(), "--role {role} on memory ran: {output}");
        assert!(
            output.contains("talk through RabbitMQ") && output.contains("PUBSUB_TRANSPORT=amqp"),
            "--role {role} on memory: {output}"
        );
    }
}
