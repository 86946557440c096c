//! Request/reply between services, on the in-memory broker (no RabbitMQ needed):
//!
//! ```text
//! cargo run --example rpc
//! ```
//!
//! or over RabbitMQ (`RABBITMQ_URL`, or `RABBITMQ_HOST`/`PORT`/`USERNAME`/`PASSWORD`/`VHOST`,
//! or a `.env` file), replies by direct reply-to, on an exchange of its own
//! (`pubsub.rpc-example`), so that a `#` binding of another program does not answer for the
//! service that is not running:
//!
//! ```text
//! PUBSUB_TRANSPORT=amqp cargo run --example rpc --features amqp
//! ```
//!
//! (RabbitMQ Streams have no reply-to: `PUBSUB_TRANSPORT=streams` says so and exits.)
//!
//! A matching service asks a user service for profiles, and gets each outcome a caller can
//! get, one line per request with the time it took: a typed reply; for a user that does not
//! exist, the user service's own error (kind and message) as `RequestError::HandlerFailed`;
//! for a rating service that is not running, `NoResponder` at once (not at the timeout);
//! and from a history service too slow for the caller's 300 ms, `TimedOut`.

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use pubsub::prelude::*;
use pubsub::{Bus, HandlerErrorKind, MemoryTransport, transport::Transport};

// ---- requests and replies -------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
/// What the user service knows of a user.
pub struct UserProfile {
    /// Account id.
    pub user_id: String,
    /// Shown to the other player.
    pub username: String,
    /// `beginner`, `intermediate` or `advanced`.
    pub skill_level: String,
    /// Languages the user practises in.
    pub languages: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "user", action = "profile_requested", reply = UserProfile)]
/// The matching service asks for a user's profile.
pub struct GetUserProfile {
    /// Whose.
    pub user_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "rating", action = "requested", reply = u32)]
/// Asks for a user's rating: no service in this example answers it.
pub struct GetRating {
    /// Whose.
    pub user_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "history", action = "requested", reply = Vec<String>)]
/// Asks for the ids of a user's past sessions: the history service answers, slowly.
pub struct GetMatchHistory {
    /// Whose.
    pub user_id: String,
}

// ---- user-service ---------------------------------------------------------------------

#[handler(service = "user-service")]
async fn profile(req: GetUserProfile) -> Result<UserProfile, HandlerError> {
    match req.user_id.as_str() {
        "u-17" => Ok(UserProfile {
            username: "ada".into(),
            skill_level: "advanced".into(),
            languages: vec!["rust".into(), "python".into()],
            user_id: req.user_id,
        }),
        // permanent: asking again cannot help, so it is not retried
        _ => Err(HandlerError::permanent(format!("no user {}", req.user_id))),
    }
}

// ---- history-service: slower than its callers wait ------------------------------------

#[handler(service = "history-service")]
async fn match_history(req: GetMatchHistory) -> Result<Vec<String>, HandlerError> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(vec![format!("s-1-{}", req.user_id)])
}

// ---- matching-service: the caller -----------------------------------------------------

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                // lapin warns with the whole message when the broker returns an unroutable
                // one (the request that has no responder); the request's error says it already
                "warn,lapin=off".into()
            }),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .without_time()
        .compact()
        .init();

    let broker = transport()?;
    anyhow::ensure!(
        broker.capabilities().request_reply,
        "the {} transport cannot make requests (yet)",
        broker.name()
    );
    println!("broker: {}\n", broker.name());
    let mut services = Vec::new();
    for service in ["user-service", "history-service"] {
        let bus = Bus::builder()
            .service(service)
            .shared_transport(Arc::clone(&broker))
            .build()
            .await?;
        println!(
            "{service:<16} answers with {}",
            bus.handler_names().join(", ")
        );
        let task = bus.spawn().await?;
        services.push((bus, task));
    }
    let matching = Bus::builder()
        .service("matching-service")
        .shared_transport(Arc::clone(&broker))
        .build()
        .await?;

    println!("\nmatching-service asks:");
    let started = Instant::now();
    let ada = matching
        .request(&GetUserProfile {
            user_id: "u-17".into(),
        })
        .timeout(Duration::from_secs(5))
        .await
        .context("asking for the profile of u-17")?;
    println!(
        "  {:<18} {}  {} ({}; {})",
        "profile of u-17",
        ms(started),
        ada.username,
        ada.skill_level,
        ada.languages.join(", ")
    );

    let unknown = GetUserProfile {
        user_id: "u-404".into(),
    };
    let asked = matching.request(&unknown).timeout(Duration::from_secs(5));
    // the responder's error is typed: the caller can tell "no such user" from an outage
    if let RequestError::HandlerFailed {
        kind: HandlerErrorKind::Permanent,
        responder,
        ..
    } = expect_failure("profile of u-404", asked).await?
    {
        let responder = responder.as_deref().unwrap_or("the responder");
        println!(
            "  {:<18} ({responder} says it is permanent: not asked again)",
            ""
        );
    }

    // the rating service is not running: said at once, not after the 5 s
    let rating = GetRating {
        user_id: "u-17".into(),
    };
    let asked = matching.request(&rating).timeout(Duration::from_secs(5));
    expect_failure("rating of u-17", asked).await?;

    // the history service takes a second; the caller waits 300 ms
    let history = GetMatchHistory {
        user_id: "u-17".into(),
    };
    let asked = matching
        .request(&history)
        .timeout(Duration::from_millis(300));
    expect_failure("history of u-17", asked).await?;

    println!();
    for (bus, task) in services {
        bus.close().await?; // waits for the slow handler, whose late reply is dropped
        task.await??;
    }
    matching.close().await?; // the last bus on the transport: it closes
    Ok(())
}

/// Awaits a request that should fail and prints one line: `what`, the time it took and
/// the error; an error itself if it was answered.
async fn expect_failure<T: std::fmt::Debug>(
    what: &str,
    request: impl IntoFuture<Output = Result<T, RequestError>>,
) -> anyhow::Result<RequestError> {
    let started = Instant::now();
    match request.await {
        Err(error) => {
            println!("  {what:<18} {}  {error}", ms(started));
            Ok(error)
        }
        Ok(reply) => anyhow::bail!("{what} was answered ({reply:?}), though it should fail"),
    }
}

/// The time since `started`, in milliseconds, right-aligned.
fn ms(started: Instant) -> String {
    format!("{:>5} ms", started.elapsed().as_millis())
}

/// The in-memory broker, or RabbitMQ with `PUBSUB_TRANSPORT=amqp`.
fn transport() -> anyhow::Result<Arc<dyn Transport>> {
    match std::env::var("PUBSUB_TRANSPORT").as_deref() {
        Err(_) | Ok("" | "memory") => Ok(Arc::new(MemoryTransport::new())),
        #[cfg(feature = "amqp")]
        Ok("amqp") => {
            let config = pubsub::amqp::AmqpConfig::from_env()
                .context("configuring RabbitMQ")?
                .exchange("pubsub.rpc-example");
            Ok(Arc::new(pubsub::amqp::AmqpTransport::new(config)))
        }
        #[cfg(not(feature = "amqp"))]
        Ok("amqp") => anyhow::bail!("PUBSUB_TRANSPORT=amqp needs `--features amqp`"),
        Ok("streams") => anyhow::bail!(
            "PUBSUB_TRANSPORT=streams: RabbitMQ Streams have no reply-to, so no request/reply; \
             use `memory` or `amqp`"
        ),
        Ok(other) => anyhow::bail!("PUBSUB_TRANSPORT={other}: expected `memory` or `amqp`"),
    }
}
