//! The chat example (`examples/chat`), run as a user runs it and used as people use it:
//! in headless Chromium, two pages in one room exchange messages, a page in another room
//! sees none of them, a late joiner sees the history and then live messages, and a
//! message that is HTML shows as text; screenshots of the pages go to
//! `target/chat-screenshots/`. Over a WebSocket of its own, bad frames each get an error
//! frame on a socket that stays usable, and none reaches the room's stream. Over RabbitMQ
//! Streams, a restart of the server loses no history.
//!
//! The example binary is the one `cargo test` builds with the tests (see
//! `support::example`). The browser tests are skipped without Chromium (see `browser`),
//! the RabbitMQ Streams tests (feature `streams`) without a broker (see
//! `support::broker`), each failing instead when `PUBSUB_REQUIRE_BROWSER` or
//! `PUBSUB_REQUIRE_BROKER` is set.

#[path = "../support/mod.rs"]
mod support;

mod browser;
mod edge;
mod pages;

mod memory;

#[cfg(feature = "streams")]
mod streams;
