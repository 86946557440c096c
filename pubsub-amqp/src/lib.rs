//! The AMQP 0-9-1 transport of `pubsub`, on [lapin](https://docs.rs/lapin), for RabbitMQ.
//!
//! - [`AmqpConfig`]: where the broker is and how to reach it, from `RABBITMQ_URL` or
//!   `RABBITMQ_HOST` / `PORT` / `USERNAME` / `PASSWORD` / `VHOST` (a `.env` file honoured),
//!   with connection attempts and capped backoff, heartbeat, prefetch, exchange name and
//!   queue options. Passwords never appear in its `Debug`, in errors or in logs.
//! - [`connect`]: a connection made with those attempts and that backoff; a refused login,
//!   an unknown virtual host, a wrong port or a failed TLS handshake fails at once with what
//!   to check.
//! - [`AmqpTransport`]: the `Transport`. Topology declared idempotently (topic exchange,
//!   a queue per service bound with its patterns, a dead-letter exchange and queue per
//!   service); confirmed, `mandatory`, pipelined publishing on its own connection, with
//!   returns matched to their publish by `message_id`; consuming with prefetch on another
//!   connection; dead letters published with their reason and failed handlers, then acked
//!   (rejected to the broker's dead-lettering if that publish fails). When a service starts,
//!   bindings from the events exchange to its queue that none of its patterns asks for any
//!   more are removed, through the management HTTP API
//!   ([`AmqpConfig::management_url`], `RABBITMQ_MANAGEMENT_URL`); without it, one warning
//!   and the start goes on. The conformance suite
//!   passes against RabbitMQ 4.0 in every case its capabilities allow.
//!
//! Long retries wait on the broker, in TTL wait queues that dead-letter back into the
//! service's queue (see the topology), so a restart loses no pending retry.
//!
//! It recovers on its own: each connection is supervised and comes back with capped,
//! jittered backoff; consumers resume and re-declare; unconfirmed publishes are written
//! again (at least once); waits while the broker is down or blocked are bounded by the
//! publish timeout. `Transport::health` reports connections and consumers.
//!
//! It has no request/reply: [`Transport::request`](pubsub_core::transport::Transport::request)
//! fails as unsupported.
//!
//! ```no_run
//! # async fn run() -> Result<(), pubsub_amqp::AmqpError> {
//! let config = pubsub_amqp::AmqpConfig::from_env()?;
//! let connection = pubsub_amqp::connect(&config, "publisher").await?;
//! # let _ = connection;
//! # Ok(())
//! # }
//! ```

mod acker;
mod channel_slot;
mod config;
mod confirms;
mod connect_failure;
mod connection;
mod consumer;
mod convert;
mod error;
mod link;
mod management;
mod publisher;
mod requester;
mod stale_bindings;
mod sync;
mod topology;
mod transport;

// Whether the unit tests that need the broker have one: the workspace tests' one check of
// the environment (std only), skipping or, under PUBSUB_REQUIRE_BROKER, failing.
#[cfg(test)]
#[path = "../../tests/support/broker.rs"]
#[allow(dead_code)]
mod test_broker;

pub use config::{
    AmqpConfig, Argument, ENV_HOST, ENV_MANAGEMENT_URL, ENV_PASSWORD, ENV_PORT, ENV_URL,
    ENV_USERNAME, ENV_VHOST, QueueOptions, QueueType,
};
pub use connection::connect;
pub use error::AmqpError;
pub use transport::AmqpTransport;
