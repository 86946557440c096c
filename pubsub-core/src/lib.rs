//! Core of `pubsub`: typed events, codecs, topic patterns and router, the handler registry,
//! the dispatcher, the [`Transport`] trait, the in-memory transport, the [`Bus`] and the
//! test harness. Users depend on the `pubsub` facade, which re-exports all of it.

mod codec;
mod context;
mod error;
mod event;
mod handler;
mod metadata;
pub mod pattern;
mod publish;
mod state;
mod transport;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use codec::{Codec, JSON, Json, PROTOBUF};
#[cfg(feature = "protobuf")]
pub use codec::Protobuf;
pub use context::Context;
pub use error::{CodecError, Error, Result, TransportError};
pub use event::Event;
pub use handler::{
    FromContext, HandlerError, HandlerErrorKind, HandlerInput, HandlerRegistration,
    IntoHandlerResult, RawEvent, RetrySpec,
};
pub use metadata::{
    HEADER_CAUSATION_ID, HEADER_DEATH_REASON, HEADER_FAILED_HANDLERS, HEADER_VERSION, Message,
    Metadata,
};
pub use pattern::{Pattern, PatternError};
pub use publish::PublishOptions;
pub use transport::{Acker, Consumer, DeadLetter, Delivery, Settlement, Subscription, Transport};
