#![doc = include_str!("../README.md")]

pub use pubsub_core::*;
pub use pubsub_derive::{Event, handler};

/// Everything a service needs in scope: `use pubsub::prelude::*;`.
pub mod prelude {
    pub use pubsub_core::{
        Context, Event, HandlerError, HandlerResultExt, Message, Metadata, PublishOptions, RawEvent,
    };
    pub use pubsub_derive::{Event, handler};
    pub use serde::{Deserialize, Serialize};
}
