//! Typed events for Rust services over RabbitMQ: derive an event, annotate an async fn, and
//! the bus routes, decodes, isolates, retries, acknowledges and dead-letters.
//!
//! ```
//! use pubsub::prelude::*;
//!
//! #[derive(Debug, Clone, Serialize, Deserialize, Event)]
//! #[event(domain = "order", action = "created", version = 1)]
//! pub struct OrderCreated { pub order_id: String, pub total_cents: u64 }
//!
//! // Bound to its event's key, "order.created"; runs on every bus that selects it.
//! #[handler]
//! async fn confirm_order(order: OrderCreated, ctx: Context) -> Result<(), HandlerError> {
//!     println!("{} confirms {} ({})", ctx.service(), order.order_id, ctx.event_id());
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> pubsub::Result<()> {
//! let bus = Bus::builder()
//!     .service("orders")                  // its queue, and the handlers it runs
//!     .transport(MemoryTransport::new())  // or pubsub::amqp / pubsub::streams
//!     .select_handlers(pubsub::handlers![confirm_order])
//!     .build()
//!     .await?;
//! bus.publish(&OrderCreated { order_id: "A1".into(), total_cents: 9_999 }).await?;
//! // consume until the signal: in a service `pubsub::shutdown_signal()` (Ctrl-C once to
//! // finish what is in flight, twice to stop at once)
//! bus.run_until(tokio::time::sleep(std::time::Duration::from_millis(50))).await
//! # }
//! ```
//!
//! The root holds what a service uses: [`Bus`] and its [`BusBuilder`], [`Event`] and
//! [`handler`], the handler's [`Context`] and [`HandlerError`], [`PublishOptions`],
//! [`MemoryTransport`], [`RetryPolicy`], [`Error`]. The modules hold the rest:
//! [`stream`] (reading RabbitMQ Streams), [`transport`] (the contract a transport
//! implements), [`codec`], [`headers`], [`health`], [`pattern`], [`registry`], [`memory`],
//! [`testing`] (feature `testing`), and the transports [`amqp`] (feature `amqp`) and
//! [`streams`] (feature `streams`). The README is the guide: semantics, transports, wire
//! format, configuration and limits.
//!
//! # Features
//!
//! - `amqp`: the AMQP 0-9-1 transport, on lapin.
//! - `streams`: the RabbitMQ Streams transport, on rabbitmq-stream-client.
//! - `protobuf`: Protocol Buffers payloads for events that derive `prost::Message`.
//! - `testing`: the test harness and the transport conformance suite; enable it in
//!   `[dev-dependencies]`.

pub use pubsub_core::*;
pub use pubsub_derive::{Event, handler};

/// The AMQP 0-9-1 transport, on lapin (feature `amqp`).
#[cfg(feature = "amqp")]
pub use pubsub_amqp as amqp;
/// The RabbitMQ Streams transport, on rabbitmq-stream-client (feature `streams`).
#[cfg(feature = "streams")]
pub use pubsub_streams as streams;

/// Everything a service needs in scope: `use pubsub::prelude::*;`.
pub mod prelude {
    /// `TestHarness`, with the `testing` feature (of `pubsub` or of `pubsub-core`).
    #[allow(unused_imports, unreachable_pub)] // the module is empty without the feature
    pub use pubsub_core::__private::testing_prelude::*;
    pub use pubsub_core::{
        Bus, Context, Event, Handler, HandlerError, HandlerResultExt, HandlerSelection,
        MemoryTransport, Message, Metadata, PublishOptions, RawEvent, Request, RequestError,
        handlers,
    };
    pub use pubsub_derive::{Event, handler};
    pub use serde::{Deserialize, Serialize};
}
