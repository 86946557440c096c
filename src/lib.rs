#![doc = include_str!("../README.md")]

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
        MemoryTransport, Message, Metadata, PublishOptions, RawEvent, handlers,
    };
    pub use pubsub_derive::{Event, handler};
    pub use serde::{Deserialize, Serialize};
}
