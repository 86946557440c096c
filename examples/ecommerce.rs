//! The e-commerce order flow, on the in-memory broker (no RabbitMQ needed):
//!
//! ```text
//! cargo run --example ecommerce
//! ```
//!
//! or over RabbitMQ (`RABBITMQ_URL`, or `RABBITMQ_HOST`/`PORT`/`USERNAME`/`PASSWORD`/`VHOST`,
//! or a `.env` file), where the CRM's dead letter stays in the `crm-service.dead-letters`
//! queue for you to look at in the management UI:
//!
//! ```text
//! PUBSUB_TRANSPORT=amqp cargo run --example ecommerce --features amqp
//! ```
//!
//! or over RabbitMQ Streams (`RABBITMQ_STREAM_HOST`/`RABBITMQ_STREAM_PORT`...), each domain a
//! stream (`events.order`...), each service a named consumer, the CRM's dead letter in the
//! `events.errors.crm-service` stream:
//!
//! ```text
//! PUBSUB_TRANSPORT=streams cargo run --example ecommerce --features streams
//! ```
//!
//! A storefront publishes `user.registered`, `order.created` and `order.paid`. Four
//! services, each with its own queue on one broker, react: email, inventory (which
//! publishes `stock.reserved` in the same conversation), analytics (`order.*` and `#`),
//! and a CRM sync that fails on purpose so you can watch the retries and the dead letter.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use pubsub::prelude::*;
use pubsub::{Bus, MemoryTransport, RetryPolicy, transport::Transport};

// ---- events ---------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "user", action = "registered")]
/// A customer signed up.
pub struct UserRegistered {
    /// Account id.
    pub user_id: String,
    /// Where mail goes.
    pub email: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "order", action = "created", version = 1)]
/// A customer placed an order.
pub struct OrderCreated {
    /// Order number.
    pub order_id: String,
    /// Customer mail address.
    pub email: String,
    /// What was ordered.
    pub items: Vec<LineItem>,
    /// Order total in cents.
    pub total_cents: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
/// One line of an order.
pub struct LineItem {
    /// Stock keeping unit.
    pub sku: String,
    /// How many.
    pub quantity: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "order", action = "paid")]
/// The payment for an order went through.
pub struct OrderPaid {
    /// Order number.
    pub order_id: String,
    /// Amount paid in cents.
    pub amount_cents: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "stock", action = "reserved")]
/// Inventory set the goods of an order aside.
pub struct StockReserved {
    /// Order number.
    pub order_id: String,
    /// Reserved items.
    pub skus: Vec<String>,
}

// ---- email-service --------------------------------------------------------------------

#[handler(service = "email-service")]
async fn send_order_confirmation(order: OrderCreated, ctx: Context) -> Result<(), HandlerError> {
    let total = order.total_cents as f64 / 100.0;
    say(
        &ctx,
        format!(
            "confirmation for {} ({total:.2} EUR) to {}",
            order.order_id, order.email
        ),
    );
    Ok(())
}

#[handler(service = "email-service")]
async fn send_receipt(payment: OrderPaid, ctx: Context) -> Result<(), HandlerError> {
    let euros = payment.amount_cents as f64 / 100.0;
    say(
        &ctx,
        format!("receipt for {} ({euros:.2} EUR)", payment.order_id),
    );
    Ok(())
}

#[handler(service = "email-service")]
async fn send_welcome(user: UserRegistered, ctx: Context) -> Result<(), HandlerError> {
    say(&ctx, format!("welcome mail to {}", user.email));
    Ok(())
}

// ---- inventory-service ----------------------------------------------------------------

#[handler(service = "inventory-service")]
async fn reserve_stock(order: OrderCreated, ctx: Context) -> Result<(), HandlerError> {
    let skus: Vec<String> = order
        .items
        .iter()
        .map(|i| format!("{}×{}", i.quantity, i.sku))
        .collect();
    say(
        &ctx,
        format!("reserved {} for {}", skus.join(", "), order.order_id),
    );
    // Same conversation: the correlation id flows on, the causation id is this event.
    ctx.publish(&StockReserved {
        order_id: order.order_id,
        skus,
    })
    .await?;
    Ok(())
}

// ---- analytics-service ----------------------------------------------------------------

static EVENTS_SEEN: AtomicU64 = AtomicU64::new(0);

#[handler("order.*", service = "analytics-service")]
async fn order_funnel(event: RawEvent, ctx: Context) -> Result<(), HandlerError> {
    say(&ctx, format!("funnel step `{}`", event.key()));
    Ok(())
}

#[handler("#", service = "analytics-service")]
async fn count_everything(event: RawEvent, ctx: Context) -> Result<(), HandlerError> {
    let n = EVENTS_SEEN.fetch_add(1, Ordering::Relaxed) + 1;
    say(
        &ctx,
        format!("event #{n}: {} ({} bytes)", event.key(), event.body().len()),
    );
    Ok(())
}

// ---- crm-service: fails on purpose ----------------------------------------------------

#[handler(service = "crm-service", retries = 2)]
async fn sync_to_crm(user: UserRegistered, ctx: Context) -> Result<(), HandlerError> {
    say(
        &ctx,
        format!(
            "pushing {} to the CRM (attempt {})",
            user.user_id,
            ctx.attempt()
        ),
    );
    Err(HandlerError::new("CRM answered 503 Service Unavailable"))
}

/// One line of output: service, handler, conversation.
fn say(ctx: &Context, what: String) {
    let conversation = ctx.correlation_id().unwrap_or("-");
    let conversation = &conversation[conversation.len().saturating_sub(6)..];
    println!(
        "  [{:<17}] {:<23} conv …{conversation}  {what}",
        ctx.service(),
        ctx.handler_name()
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Retries and dead letters are reported by the framework through `tracing`.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                // the stream client warns "Stream closed" on every clean close
                "warn,rabbitmq_stream_client=error".into()
            }),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .without_time()
        .compact()
        .init();

    let broker = transport()?;
    println!("broker: {}\n", broker.name());
    let mut services = Vec::new();
    for (service, _) in DUE {
        let bus = Bus::builder()
            .service(service)
            .shared_transport(Arc::clone(&broker))
            .retry(RetryPolicy::exponential(3, Duration::from_millis(100)))
            .build()
            .await?;
        println!("{service:<18} runs {}", bus.handler_names().join(", "));
        let task = bus.spawn().await?;
        services.push((bus, task));
    }
    let storefront = Bus::builder()
        .service("storefront")
        .shared_transport(Arc::clone(&broker))
        .build()
        .await?;

    println!("\nstorefront publishes user.registered, order.created, order.paid:");
    let user_event = storefront
        .publish(&UserRegistered {
            user_id: "u-17".into(),
            email: "ada@example.com".into(),
        })
        .await?;
    let order = OrderCreated {
        order_id: "A1".into(),
        email: "ada@example.com".into(),
        items: vec![
            LineItem {
                sku: "KB-01".into(),
                quantity: 1,
            },
            LineItem {
                sku: "MS-02".into(),
                quantity: 2,
            },
        ],
        total_cents: 9_999,
    };
    let order_id = storefront.publish(&order).await?;
    // The payment belongs to the order's conversation.
    storefront
        .publish_with(
            &OrderPaid {
                order_id: "A1".into(),
                amount_cents: 9_999,
            },
            PublishOptions::new().correlation_id(order_id.to_string()),
        )
        .await?;

    wait_until_settled(&services, Duration::from_secs(20)).await?;

    println!("\ndead letters:");
    for (bus, _) in &services {
        let dead = bus.dead_letters().await?;
        // over RabbitMQ the queue keeps those of earlier runs too
        let (this_run, earlier): (Vec<_>, Vec<_>) = dead
            .into_iter()
            .partition(|d| d.message.metadata.id == user_event);
        for dead in this_run {
            println!(
                "  {} from queue {}: {} (failed: {})",
                dead.message.metadata.key,
                dead.queue,
                dead.reason,
                dead.failed_handlers.join(", ")
            );
        }
        if !earlier.is_empty() {
            println!(
                "  ({} more in {}'s queue from earlier runs)",
                earlier.len(),
                bus.service()
            );
        }
    }
    println!();
    for (bus, task) in services {
        bus.close().await?; // its run and consumer; the shared transport stays open
        task.await??;
        let s = bus.stats();
        println!(
            "{:<18} deliveries {}  acked {}  dead-lettered {}  failed attempts {}",
            bus.service(),
            s.deliveries,
            s.acked,
            s.dead_lettered,
            s.handler_failures
        );
    }
    storefront.close().await?; // the last bus on the transport: it closes
    Ok(())
}

/// The services, and how many deliveries each settles in this run: email gets the three
/// storefront events, inventory the order, analytics all four events (the three and
/// `stock.reserved`), the CRM the sign-up it dead-letters.
const DUE: [(&str, u64); 4] = [
    ("email-service", 3),
    ("inventory-service", 1),
    ("analytics-service", 4),
    ("crm-service", 1),
];

/// The in-memory broker, or RabbitMQ with `PUBSUB_TRANSPORT=amqp` or `streams`.
fn transport() -> anyhow::Result<Arc<dyn Transport>> {
    match std::env::var("PUBSUB_TRANSPORT").as_deref() {
        Err(_) | Ok("" | "memory") => Ok(Arc::new(MemoryTransport::new())),
        #[cfg(feature = "amqp")]
        Ok("amqp") => Ok(Arc::new(
            pubsub::amqp::AmqpTransport::from_env().context("configuring RabbitMQ")?,
        )),
        #[cfg(not(feature = "amqp"))]
        Ok("amqp") => anyhow::bail!("PUBSUB_TRANSPORT=amqp needs `--features amqp`"),
        #[cfg(feature = "streams")]
        Ok("streams") => Ok(Arc::new(
            pubsub::streams::StreamTransport::from_env().context("configuring RabbitMQ Streams")?,
        )),
        #[cfg(not(feature = "streams"))]
        Ok("streams") => anyhow::bail!("PUBSUB_TRANSPORT=streams needs `--features streams`"),
        Ok(other) => {
            anyhow::bail!("PUBSUB_TRANSPORT={other}: expected `memory`, `amqp` or `streams`")
        }
    }
}

/// Waits until every service has settled (acked or dead-lettered) what it is due.
async fn wait_until_settled(
    services: &[(Bus, tokio::task::JoinHandle<pubsub::Result<()>>)],
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    for ((bus, _), (_, due)) in services.iter().zip(DUE) {
        loop {
            let stats = bus.stats();
            if stats.acked + stats.dead_lettered >= due {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} settled {} of {due} deliveries in {timeout:?}",
                bus.service(),
                stats.acked + stats.dead_lettered
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok(())
}
