//! The tests against RabbitMQ Streams (feature `streams`): the stream listener is up,
//! publishing is confirmed and de-duplicated, super streams partition by key, restarts
//! resume at the stored offset, the conformance suite, and the replication example run as
//! processes (SIGKILLed mid-run; `support::process`). Without a broker configured
//! they are skipped, or fail when `PUBSUB_REQUIRE_BROKER` is set (see `support::broker`).
//! The tests that close connections or delete streams under the transport are in
//! `tests/faults`.

#[path = "../support/mod.rs"]
mod support;
// an event with a key parameter and its handlers (a domain of this binary's only)
#[path = "../support/sessions.rs"]
mod sessions;
// per-entity subscriptions, shared with the memory and AMQP binaries
#[path = "../support/desks.rs"]
mod desks;

mod broker;
mod conformance;
mod connect;
mod key_params;
mod offsets;
mod outage;
mod partitions;
mod poison;
mod publish;
mod reader;
mod replication;
mod restart;
mod subscriptions;
