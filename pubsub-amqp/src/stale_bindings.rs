//! Stale bindings: the broker converges on the code. When a service starts, a binding from
//! the events exchange to its queue that none of its handlers' patterns asks for any more
//! (a handler removed or given another pattern since the queue was declared) is removed, so
//! the queue stops collecting events nothing handles.
//!
//! AMQP 0-9-1 cannot list bindings, so this goes through the management HTTP API
//! ([`AmqpConfig::management_url`]). Only bindings whose source is the events exchange are
//! touched: never the default exchange's, never another exchange's (a user's, or the
//! dead-letter exchange's). Without the API (unreachable, refused, plugin off) the start
//! goes on, and says once that the bindings could not be checked.

use std::time::Duration;

use crate::config::AmqpConfig;
use crate::management::{ApiError, Binding, ManagementApi};

/// How long each call to the management API may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Removes each binding from `config`'s events exchange to `queue` whose key is none of
/// `patterns`, and logs each removal at INFO. Never fails: without the management API it
/// logs one WARN and returns.
pub(crate) async fn remove(config: &AmqpConfig, queue: &str, patterns: &[String]) {
    let Some(url) = config.management() else {
        tracing::debug!(queue, "checking for stale bindings is turned off");
        return;
    };
    let exchange = config.exchange.as_str();
    let vhost = config.vhost();
    let api = ManagementApi::new(url, CALL_TIMEOUT);
    let bindings = match api.queue_bindings(vhost, queue).await {
        Ok(bindings) => bindings,
        Err(error) => {
            tracing::warn!(
                queue,
                exchange,
                management = %api.url(),
                reason = %error,
                asked_for = ?patterns,
                "cannot check the queue for bindings the code did not ask for (the RabbitMQ \
                 management API is unavailable): a binding from the events exchange that no \
                 handler asks for any more stays, and still routes its events here"
            );
            return;
        }
    };
    for binding in stale(&bindings, exchange, queue, patterns) {
        let key = binding.routing_key.as_str();
        match api
            .delete_binding(vhost, exchange, queue, &binding.properties_key)
            .await
        {
            Ok(()) => tracing::info!(
                queue,
                exchange,
                key,
                why = "no handler of this service asks for it any more",
                asked_for = ?patterns,
                "removed a stale binding"
            ),
            Err(ApiError::NotFound) => {
                tracing::debug!(queue, exchange, key, "the stale binding was already gone");
            }
            Err(error) => tracing::warn!(
                queue,
                exchange,
                key,
                management = %api.url(),
                reason = %error,
                "could not remove a stale binding; its events still reach the queue"
            ),
        }
    }
}

/// The bindings from `exchange` to the queue `queue` whose key none of `patterns` is.
fn stale<'b>(
    bindings: &'b [Binding],
    exchange: &str,
    queue: &str,
    patterns: &[String],
) -> Vec<&'b Binding> {
    bindings
        .iter()
        .filter(|b| b.source == exchange && b.destination_type == "queue" && b.destination == queue)
        .filter(|b| !patterns.contains(&b.routing_key))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(source: &str, destination: &str, key: &str) -> Binding {
        Binding {
            source: source.to_owned(),
            destination: destination.to_owned(),
            destination_type: "queue".to_owned(),
            routing_key: key.to_owned(),
            properties_key: key.to_owned(),
        }
    }

    #[test]
    fn only_our_exchanges_bindings_no_pattern_asks_for_are_stale() {
        let bindings = [
            binding("", "billing", "billing"), // the default exchange's
            binding("pubsub.events", "billing", "order.*"), // asked for
            binding("pubsub.events", "billing", "invoice.paid"), // no longer asked for
            binding("audit", "billing", "invoice.paid"), // a user's exchange
            binding("billing.dlx", "billing", ""), // another exchange of ours
            binding("pubsub.events", "billing", "#.failed"), // asked for
        ];
        let patterns = ["order.*".to_owned(), "#.failed".to_owned()];
        let stale: Vec<_> = stale(&bindings, "pubsub.events", "billing", &patterns)
            .into_iter()
            .map(|b| (b.source.as_str(), b.routing_key.as_str()))
            .collect();
        assert_eq!(stale, [("pubsub.events", "invoice.paid")]);
    }

    #[test]
    fn no_patterns_make_every_binding_of_the_exchange_stale() {
        let bindings = [
            binding("pubsub.events", "billing", "a"),
            binding("pubsub.events", "other", "b"),
        ];
        assert_eq!(stale(&bindings, "pubsub.events", "billing", &[]).len(), 1);
    }
}
