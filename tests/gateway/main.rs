//! The gateway example (`examples/gateway`), run as the processes a user runs: 200
//! WebSocket clients and 50 event streams at once each get their own answer, `/health`
//! counts sockets and pending requests, a request nobody answers in time is an error frame
//! at its deadline on a socket that stays open, and over RabbitMQ a processor killed with
//! SIGKILL mid-run fails its pending requests at their deadline until a new one answers,
//! and `/health` answers 503 while the gateway's connection is down.
//!
//! The example binary is the one `cargo test` builds with the tests (see
//! `support::process`). The AMQP tests (feature `amqp`) are skipped without a broker, or
//! fail when `PUBSUB_REQUIRE_BROKER` is set (see `support::broker`).

#[path = "../support/mod.rs"]
mod support;

mod client;
mod process;
mod scenarios;

mod memory;

#[cfg(feature = "amqp")]
mod amqp;
