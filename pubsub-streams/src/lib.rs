//! The RabbitMQ Streams transport of `pubsub`, on
//! [rabbitmq-stream-client](https://docs.rs/rabbitmq-stream-client) 0.11, for RabbitMQ ≥ 3.11
//! (stream protocol, port 5552); stream filtering, for readers of one entity, from 3.13 (on
//! an older broker every chunk is read, and keys are checked on the client).
//!
//! - [`StreamConfig`]: where the broker is (`RABBITMQ_STREAM_HOST` or `RABBITMQ_HOST`,
//!   `RABBITMQ_STREAM_PORT`, `RABBITMQ_USERNAME`, `RABBITMQ_PASSWORD`, `RABBITMQ_VHOST`;
//!   a `.env` file honoured), load-balancer mode for the Docker advertised-host trap,
//!   retention of created streams. The password never appears in `Debug`, errors or logs.
//! - [`StreamTransport`]: the `Transport`. Streams created with retention; de-duplicating
//!   producers with publishing ids from 1 resumed from the broker's last + 1 and bounded
//!   confirms; named consumers whose offset is stored on the broker only for the handled
//!   prefix; dead letters appended to the service's error stream before the offset moves.
//!
//!   Producers and consumers reconnect by themselves and survive a deleted stream
//!   (re-created with its retention); single active consumer; super streams, each
//!   partition with its own offset.
//!
//! ```no_run
//! use pubsub_streams::StreamTransport;
//! # async fn run() -> Result<(), pubsub_streams::StreamsError> {
//! let transport = StreamTransport::from_env()?;
//! # let _ = transport;
//! # Ok(())
//! # }
//! ```

mod config;
mod connect_failure;
mod connection;
mod consumer;
mod convert;
mod error;
mod id_map;
mod publisher;
mod read;
mod session;
mod sync;
mod transport;

pub use config::{
    ENV_HOST, ENV_LOAD_BALANCER, ENV_PASSWORD, ENV_STREAM_HOST, ENV_STREAM_PORT, ENV_USERNAME,
    ENV_VHOST, StreamConfig,
};
pub use error::StreamsError;
pub use transport::{StreamProducer, StreamTransport};
