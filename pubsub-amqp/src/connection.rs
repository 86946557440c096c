//! Connecting: the configured attempts with capped exponential backoff and jitter.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::{Connection, ConnectionProperties};

use crate::config::AmqpConfig;
use crate::connect_failure::{classify, describe};
use crate::error::AmqpError;

/// Opens a connection to the configured broker, named `pubsub <role>` in the management
/// UI. A broker that cannot be reached (refused, reset, unresolved, silent) is tried
/// [`AmqpConfig::connection_attempts`] times with a backoff that starts at
/// [`AmqpConfig::initial_backoff`], doubles, is capped at [`AmqpConfig::max_backoff`] and
/// is jittered by ±20 %, each failed attempt logged once at WARN (without the password).
/// A refused login, an unknown virtual host, a port that speaks another protocol and a
/// failed TLS handshake are not retried: [`AmqpError::Connect`] says at once what to
/// check, with lapin's error as its source.
///
/// Publishers and consumers take one connection each: a broker alarm blocks publishing
/// connections only, and consumers must keep draining queues meanwhile.
///
/// ```no_run
/// # async fn run() -> Result<(), pubsub_amqp::AmqpError> {
/// use pubsub_amqp::{AmqpConfig, connect};
/// let config = AmqpConfig::from_env()?.connection_attempts(3);
/// let connection = connect(&config, "billing consumer").await?;
/// # let _ = connection;
/// # Ok(())
/// # }
/// ```
pub async fn connect(config: &AmqpConfig, role: &str) -> Result<Connection, AmqpError> {
    let started = Instant::now();
    let attempts = config.connection_attempts.max(1);
    let mut wait = config.initial_backoff;
    let mut attempt = 1;
    loop {
        match connect_once(config, role).await {
            Ok(connection) => {
                tracing::info!(url = %config.url(), role, attempt, "connected to RabbitMQ");
                return Ok(connection);
            }
            Err(error) => {
                let failure = classify(config, &error).await;
                if !failure.is_transient() || attempt >= attempts {
                    let elapsed = started.elapsed();
                    return Err(AmqpError::Connect {
                        failure,
                        message: describe(config, failure, attempt, elapsed),
                        attempts: attempt,
                        elapsed,
                        source: Arc::new(error),
                    });
                }
                let pause = jittered(wait);
                tracing::warn!(url = %config.url(), role, attempt, of = attempts, error = %pubsub_core::Report::new(&error), retry_in = ?pause, "cannot reach RabbitMQ yet; retrying");
                tokio::time::sleep(pause).await;
                wait = (wait * 2).min(config.max_backoff);
                attempt += 1;
            }
        }
    }
}

/// One attempt, bounded by [`CONNECT_TIMEOUT`] (a broker that accepts TCP but does not
/// answer must not hold the caller).
pub(crate) async fn connect_once(
    config: &AmqpConfig,
    role: &str,
) -> Result<Connection, lapin::Error> {
    let properties =
        ConnectionProperties::default().with_connection_name(format!("pubsub {role}").into());
    let attempt = Connection::connect_uri(config.uri().clone(), properties);
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer from the broker in {CONNECT_TIMEOUT:?}"),
        )
        .into()),
    }
}

/// How long closing a channel or connection may wait for the broker.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Awaits a channel's or connection's `close`, at most [`CLOSE_TIMEOUT`]: a connection the
/// broker blocks writes nothing, not even the close. Failures are only logged.
pub(crate) async fn close_bounded(
    close: impl std::future::Future<Output = Result<(), lapin::Error>>,
    what: &str,
) {
    match tokio::time::timeout(CLOSE_TIMEOUT, close).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::debug!(error = %pubsub_core::Report::new(&error), "closing the {what}")
        }
        Err(_) => tracing::debug!("closing the {what} timed out"),
    }
}

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `wait` ± 20 %.
pub(crate) fn jittered(wait: Duration) -> Duration {
    wait.mul_f64(0.8 + 0.4 * fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::jittered;
    use std::time::Duration;

    #[test]
    fn jitter_stays_within_a_fifth() {
        for _ in 0..1000 {
            let j = jittered(Duration::from_millis(100));
            assert!(
                (Duration::from_millis(80)..=Duration::from_millis(120)).contains(&j),
                "{j:?}"
            );
        }
    }
}
