//! The AMQP 0-9-1 transport of `pubsub`, on [lapin](https://docs.rs/lapin), for RabbitMQ.
//!
//! This crate grows in steps. What it has now:
//! - [`AmqpConfig`]: where the broker is and how to reach it, from `RABBITMQ_URL` or
//!   `RABBITMQ_HOST` / `PORT` / `USERNAME` / `PASSWORD` / `VHOST` (a `.env` file honoured),
//!   with connection attempts and capped backoff, heartbeat, prefetch, exchange name and
//!   queue options. Passwords never appear in its `Debug`, in errors or in logs.
//! - [`connect`]: a connection made with those attempts and that backoff.
//!
//! The transport itself (topology, confirmed publishing, consuming, dead letters, delayed
//! retries) comes next, on these.
//!
//! ```no_run
//! # async fn run() -> Result<(), pubsub_amqp::AmqpError> {
//! let config = pubsub_amqp::AmqpConfig::from_env()?;
//! let connection = pubsub_amqp::connect(&config, "publisher").await?;
//! # let _ = connection;
//! # Ok(())
//! # }
//! ```

mod config;
mod connection;
#[allow(dead_code)] // used by the publisher and consumer, next
mod convert;
mod error;
#[allow(dead_code)] // used by the transport, next
mod topology;

pub use config::{
    AmqpConfig, Argument, ENV_HOST, ENV_PASSWORD, ENV_PORT, ENV_URL, ENV_USERNAME, ENV_VHOST,
    QueueOptions,
};
pub use connection::connect;
pub use error::AmqpError;
pub use pubsub_core::QueueType;
