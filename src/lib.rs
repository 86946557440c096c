#![doc = include_str!("../README.md")]

pub use pubsub_core::*;
pub use pubsub_derive::{Event, handler};

/// Everything a service needs in scope: `use pubsub::prelude::*;`.
pub mod prelude {
    pub use pubsub_core::{
        Bus, Context, Event, Handler, HandlerError, HandlerResultExt, HandlerSelection,
        MemoryTransport, Message, Metadata, PublishOptions, RawEvent, TestHarness, handlers,
    };
    pub use pubsub_derive::{Event, handler};
    pub use serde::{Deserialize, Serialize};
}
