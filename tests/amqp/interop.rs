//! Talking to the bus from a plain AMQP client, both ways, through RabbitMQ: a raw lapin
//! publish that sets none of our fields is handled as a typed event, a raw consumer
//! reads every field of what the bus publishes, and requests are answered both ways. Against `RABBITMQ_URL` (see
//! `support::broker`).

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use lapin::BasicProperties;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use pubsub::amqp::{AmqpConfig, AmqpTransport, connect};
use pubsub::prelude::*;
use pubsub::{HandlerSelection, PublishOptions};

use crate::support;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(domain = "interop", action = "signed-up")]
struct SignedUp {
    email: String,
}

/// The broker's config with an exchange of the test's own, or `None` to skip.
fn config(ns: &str) -> Option<AmqpConfig> {
    Some(
        support::amqp_config()?
            .exchange(format!("{ns}.events"))
            .connection_attempts(3),
    )
}

fn namespace() -> String {
    support::namespace("interop")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_publish_is_handled_as_a_typed_event() {
    let ns = namespace();
    let Some(config) = config(&ns) else { return };
    let got: Arc<Mutex<Vec<(SignedUp, String, u32)>>> = Arc::default();
    let handled = Arc::new(tokio::sync::Notify::new());
    let (sink, done) = (Arc::clone(&got), Arc::clone(&handled));
    let handler = pubsub::Handler::typed("welcome", move |event: SignedUp, ctx: Context| {
        let (sink, done) = (Arc::clone(&sink), Arc::clone(&done));
        async move {
            sink.lock()
                .unwrap()
                .push((event, ctx.key().to_owned(), ctx.version()));
            done.notify_one();
            Ok::<_, HandlerError>(())
        }
    });
    let transport = AmqpTransport::new(config.clone());
    let bus = Bus::builder()
        .service(format!("{ns}-svc"))
        .transport(transport.clone())
        .select_handlers(HandlerSelection::None)
        .handler(handler)
        .build()
        .await
        .unwrap();
    let task = bus.spawn().await.unwrap();

    // as pika would: a routing key and a JSON body, nothing else
    let raw = connect(&config, "raw publisher").await.unwrap();
    let channel = raw.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    channel
        .basic_publish(
            config.exchange.as_str().into(),
            SignedUp::KEY.into(),
            BasicPublishOptions::default(),
            br#"{"email":"ada@example.com"}"#,
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while got.lock().unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the raw publish was not handled"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    bus.close().await.unwrap();
    task.await.unwrap().unwrap();
    raw.close(200, "done".into()).await.unwrap();
    let got = got.lock().unwrap().clone();
    assert_eq!(
        got,
        [(
            SignedUp {
                email: "ada@example.com".into()
            },
            SignedUp::KEY.to_owned(),
            1
        )]
    );
    assert_eq!(bus.stats().acked, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_consumer_reads_every_field_the_bus_publishes() {
    let ns = namespace();
    let Some(config) = config(&ns) else { return };
    let bus = Bus::publisher("storefront", AmqpTransport::new(config.clone()));
    // the exchange exists once a bus declared; a raw consumer binds its own queue
    let raw = connect(&config, "raw consumer").await.unwrap();
    let channel = raw.create_channel().await.unwrap();
    declare_exchange(&channel, &config.exchange).await;
    let queue = format!("{ns}.raw");
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.as_str().into(),
            config.exchange.as_str().into(),
            "interop.#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let id = bus
        .publish_with(
            &SignedUp {
                email: "grace@example.com".into(),
            },
            PublishOptions::new()
                .correlation_id("checkout-9")
                .header("tenant", "acme"),
        )
        .await
        .unwrap();
    let message = channel
        .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("a confirmed publish is in the bound queue");
    let d = message.delivery;
    let p = &d.properties;
    assert_eq!(d.routing_key.as_str(), SignedUp::KEY);
    assert_eq!(
        p.message_id().as_ref().map(|s| s.as_str()),
        Some(id.to_string().as_str())
    );
    assert_eq!(p.kind().as_ref().map(|s| s.as_str()), Some(SignedUp::KEY));
    assert_eq!(
        p.content_type().as_ref().map(|s| s.as_str()),
        Some("application/json")
    );
    assert_eq!(p.app_id().as_ref().map(|s| s.as_str()), Some("storefront"));
    assert_eq!(
        p.correlation_id().as_ref().map(|s| s.as_str()),
        Some("checkout-9")
    );
    assert_eq!(p.delivery_mode(), &Some(2), "persistent");
    assert!(p.timestamp().is_some());
    let headers = p.headers().as_ref().expect("headers").inner();
    assert!(matches!(
        headers.get("x-event-version"),
        Some(AMQPValue::LongLongInt(1))
    ));
    assert!(
        matches!(headers.get("tenant"), Some(AMQPValue::LongString(s)) if s.as_bytes() == b"acme")
    );
    let body: serde_json::Value = serde_json::from_slice(&d.data).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"email": "grace@example.com"}),
        "the body is the payload alone"
    );
    channel
        .exchange_delete(config.exchange.as_str().into(), Default::default())
        .await
        .unwrap();
    raw.close(200, "done".into()).await.unwrap();
}

/// A bus that only publishes declares the events exchange itself: on a broker where no
/// service declared anything, its first publish is confirmed (unroutable: a warning)
/// instead of failing with `NOT_FOUND - no exchange`, and the exchange is there after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_only_bus_declares_the_events_exchange() {
    let ns = namespace();
    let Some(config) = config(&ns) else { return };
    let web = Bus::publisher("web", AmqpTransport::new(config.clone()));
    let published = web
        .publish(&SignedUp {
            email: "ada@example.com".into(),
        })
        .await;
    let raw = connect(&config, "raw check").await.unwrap();
    let channel = raw.create_channel().await.unwrap();
    // passive: fails (and closes the channel) unless the exchange exists
    let exists = channel
        .exchange_declare(
            config.exchange.as_str().into(),
            lapin::ExchangeKind::Topic,
            lapin::options::ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await;
    if exists.is_ok() {
        channel
            .exchange_delete(config.exchange.as_str().into(), Default::default())
            .await
            .unwrap();
    }
    raw.close(200, "done".into()).await.unwrap();
    web.close().await.unwrap();
    assert!(
        published.is_ok(),
        "publishing on a fresh broker: {published:?}"
    );
    assert!(exists.is_ok(), "the exchange after the publish: {exists:?}");
}

/// A user without the configure permission (write and read only) publishes to an exchange
/// another declared: the broker refuses the publisher's own declaration, and it publishes
/// all the same, saying so, instead of failing every publish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_who_may_not_declare_publishes_to_an_existing_exchange() {
    use pubsub::amqp::{ENV_PASSWORD, ENV_URL, ENV_USERNAME};

    use crate::support::broker::{self, RestoreWith};

    let ns = namespace();
    let Some(config) = config(&ns) else { return };
    let Some(url) = broker::amqp_url() else {
        return;
    };
    if broker::required("PUBSUB_RABBITMQCTL").is_none() {
        return;
    }
    // the exchange, as a consuming service declares it
    let admin = connect(&config, "admin").await.unwrap();
    let channel = admin.create_channel().await.unwrap();
    declare_exchange(&channel, &config.exchange).await;
    let user = format!("{ns}-writer");
    broker::ctl(&["add_user", &user, "writer-pw"]);
    let _remove = RestoreWith(vec!["delete_user".into(), user.clone()]);
    broker::ctl(&["set_permissions", "-p", "/", &user, "'^$'", "'.*'", "'.*'"]);
    let writer = AmqpConfig::from_lookup(|name| match name {
        ENV_URL => Some(url.clone()),
        ENV_USERNAME => Some(user.clone()),
        ENV_PASSWORD => Some("writer-pw".to_owned()),
        _ => None,
    })
    .expect("the writer's config")
    .exchange(config.exchange.clone())
    .connection_attempts(3);
    let web = Bus::publisher("web", AmqpTransport::new(writer));
    let published = web
        .publish(&SignedUp {
            email: "grace@example.com".into(),
        })
        .await;
    web.close().await.unwrap();
    channel
        .exchange_delete(config.exchange.as_str().into(), Default::default())
        .await
        .unwrap();
    admin.close(200, "done".into()).await.unwrap();
    assert!(published.is_ok(), "a writer's publish: {published:?}");
}

/// Declares the events exchange as a consuming service does (durable, topic).
pub(crate) async fn declare_exchange(channel: &lapin::Channel, exchange: &str) {
    channel
        .exchange_declare(
            exchange.into(),
            lapin::ExchangeKind::Topic,
            lapin::options::ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("declaring the exchange");
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Quote {
    sku: String,
    cents: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "interop", action = "quote_requested", reply = Quote)]
struct GetQuote {
    sku: String,
}

/// A plain client's RPC (pika's and aio-pika's pattern: an exclusive callback queue as
/// `reply_to`, its own `correlation_id`) gets its answer from a bus's request handler, and
/// a bus's `request` gets its answer from a plain responder that replies to `reply_to`
/// with the request's `correlation_id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_clients_and_the_bus_answer_each_others_requests() {
    let ns = namespace();
    let Some(config) = config(&ns) else { return };
    let transport = AmqpTransport::new(config.clone());
    let quoting = pubsub::Handler::typed("quote", |req: GetQuote, _ctx: Context| async move {
        Ok::<_, HandlerError>(Quote {
            cents: 100 * req.sku.len() as u64,
            sku: req.sku,
        })
    });
    let pricing = Bus::builder()
        .service(format!("{ns}-pricing"))
        .transport(transport.clone())
        .select_handlers(HandlerSelection::None)
        .handler(quoting)
        .build()
        .await
        .unwrap();
    pricing.spawn().await.unwrap();
    // made now: once `pricing` closes, the transport closes with the last bus on it
    let caller = Bus::publisher("checkout", transport.clone());

    // a plain requester, as pika does it
    let raw = connect(&config, "raw requester").await.unwrap();
    let channel = raw.create_channel().await.unwrap();
    let callback = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut replies = consume_no_ack(&channel, callback.name().as_str()).await;
    channel
        .basic_publish(
            config.exchange.as_str().into(),
            GetQuote::KEY.into(),
            BasicPublishOptions::default(),
            br#"{"sku":"KB-01"}"#,
            BasicProperties::default()
                .with_reply_to(callback.name().clone())
                .with_correlation_id("pika-7".into()),
        )
        .await
        .unwrap();
    let reply = tokio::time::timeout(std::time::Duration::from_secs(10), replies.next())
        .await
        .expect("a reply within 10 s")
        .expect("the reply consumer is open")
        .expect("a reply");
    assert_eq!(
        reply
            .properties
            .correlation_id()
            .as_ref()
            .map(|s| s.as_str()),
        Some("pika-7")
    );
    let quote: Quote = serde_json::from_slice(&reply.data).unwrap();
    assert_eq!(
        quote,
        Quote {
            sku: "KB-01".into(),
            cents: 500
        }
    );
    pricing.close().await.unwrap();

    // a plain responder, answering the bus's request
    let queue = format!("{ns}.raw-pricing");
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.as_str().into(),
            config.exchange.as_str().into(),
            GetQuote::KEY.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut requests = consume_no_ack(&channel, &queue).await;
    let answering = channel.clone();
    let responder = tokio::spawn(async move {
        let request = requests
            .next()
            .await
            .expect("a request")
            .expect("a delivery");
        let asked: serde_json::Value = serde_json::from_slice(&request.data).unwrap();
        let reply_to = request.properties.reply_to().clone().expect("reply_to");
        let body = serde_json::json!({"sku": asked["sku"], "cents": 42}).to_string();
        let mut properties = BasicProperties::default();
        if let Some(correlation) = request.properties.correlation_id() {
            properties = properties.with_correlation_id(correlation.clone());
        }
        answering
            .basic_publish(
                "".into(),
                reply_to.as_str().into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                properties,
            )
            .await
            .unwrap();
    });
    let quote = caller
        .request(&GetQuote {
            sku: "MS-02".into(),
        })
        .timeout(std::time::Duration::from_secs(10))
        .await
        .expect("the plain responder's answer");
    assert_eq!(
        quote,
        Quote {
            sku: "MS-02".into(),
            cents: 42
        }
    );
    responder.await.unwrap();
    caller.close().await.unwrap();
    channel
        .exchange_delete(config.exchange.as_str().into(), Default::default())
        .await
        .unwrap();
    raw.close(200, "done".into()).await.unwrap();
}

/// A plain consumer of `queue` that acknowledges nothing.
async fn consume_no_ack(channel: &lapin::Channel, queue: &str) -> lapin::Consumer {
    channel
        .basic_consume(
            queue.into(),
            "".into(),
            lapin::options::BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consuming")
}
