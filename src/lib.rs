//! # pubsub
//!
//! Typed events for Rust services over RabbitMQ. Declare events with `#[derive(Event)]`,
//! write handlers as plain `async fn`s with `#[handler]`, and a [`Bus`] routes, decodes,
//! isolates, retries, acknowledges and dead-letters for you — over AMQP queues, RabbitMQ
//! Streams, or the in-memory [`MemoryTransport`] that behaves like the broker.
//!
//! ```
//! use pubsub::prelude::*;
//!
//! #[derive(Debug, Clone, Serialize, Deserialize, Event)]
//! #[event(domain = "order", action = "created", version = 1)]
//! pub struct OrderCreated { pub order_id: String, pub total_cents: u64 }
//!
//! #[handler]
//! async fn reserve_stock(event: OrderCreated, ctx: Context) -> Result<(), HandlerError> {
//!     tracing::info!(order = %event.order_id, correlation = ?ctx.correlation_id(), "reserving");
//!     Ok(())
//! }
//! ```

pub use pubsub_core::*;
pub use pubsub_derive::{Event, handler};

/// Everything a service needs in scope: `use pubsub::prelude::*;`.
pub mod prelude {
    pub use pubsub_core::{
        Context, Event, HandlerError, Message, Metadata, PublishOptions, RawEvent,
    };
    pub use pubsub_derive::{Event, handler};
    pub use serde::{Deserialize, Serialize};
}
