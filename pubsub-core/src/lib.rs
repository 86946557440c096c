//! Core of `pubsub`: typed events, codecs, topic patterns and router, the handler registry,
//! the dispatcher, the [`Transport`] trait, the in-memory transport and the [`Bus`]. Users
//! depend on the `pubsub` facade, which re-exports all of it.
//!
//! # Features
//!
//! - `protobuf`: Protocol Buffers payloads for events that derive `prost::Message`.
//! - `testing`: the test harness (`TestHarness`, `HandlerCall`), which unit-tests handlers
//!   on the in-memory transport, and the transport conformance suite (`conformance`, with
//!   the `conformance_tests!` macro that runs it). Off by default, so that production
//!   builds do not compile them; turn it on where tests are built:
//!
//! ```toml
//! [dev-dependencies]
//! pubsub = { version = "0.1", features = ["testing"] }
//! ```
//!
//! The in-memory transport ([`MemoryTransport`]) is always there: it is a product feature
//! (examples, single-process tools), not only a test aid.

mod builder;
mod bus;
mod codec;
#[cfg(feature = "testing")]
pub mod conformance;
mod consumption;
mod context;
mod deadline;
mod dispatch;
mod error;
mod event;
mod event_registration;
mod handler;
mod handler_error;
mod handler_input;
#[cfg(feature = "testing")]
mod harness;
pub mod headers;
mod health;
mod memory;
mod metadata;
mod origin;
pub mod pattern;
mod publish;
mod registration;
mod retry;
mod router;
mod selection;
mod state;
mod stats;
mod stream;
mod transport;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use builder::BusBuilder;
pub use bus::{Bus, BusStats};
pub use bytes::Bytes;
pub use codec::CodecError;
#[cfg(feature = "protobuf")]
pub use codec::Protobuf;
pub use codec::{Codec, JSON, Json, PROTOBUF};
pub use context::Context;
pub use dispatch::Isolation;
pub use error::{Error, Result};
pub use event::Event;
pub use event_registration::{EventRegistration, registered_events};
pub use handler::Handler;
pub use handler_error::{HandlerError, HandlerErrorKind, HandlerResultExt};
pub use handler_input::RawEvent;
pub use health::{
    ConnectionHealth, ConnectionState, ConsumerHealth, ConsumerState, Health, TransportHealth,
};
pub use uuid::Uuid;
// What the macros' generated code names; public so that diagnostics can name them, hidden
// because users never write them.
#[doc(hidden)]
pub use handler_input::{FromContext, HandlerInput, IntoHandlerResult};
#[cfg(feature = "testing")]
pub use harness::{HandlerCall, TestHarness};
pub use headers::{
    HEADER_ATTEMPTS, HEADER_CAUSATION_ID, HEADER_DEATH_REASON, HEADER_FAILED_HANDLERS,
    HEADER_STREAM, HEADER_STREAM_OFFSET, HEADER_VERSION,
};
pub use memory::{DEFAULT_MEMORY_STREAM_LENGTH, MemoryTransport, QueueDepth, StreamRetention};
pub use metadata::{Message, Metadata};
pub use origin::HandlerOrigin;
pub use pattern::{Pattern, PatternError};
pub use publish::{PendingPublish, PublishOptions};
pub use registration::{HandlerInfo, registered_handlers};
pub use registration::{HandlerRegistration, RetrySpec};
pub use retry::RetryPolicy;
pub use router::Router;
pub use selection::{HandlerFn, HandlerSelection};
pub use stream::{
    DEFAULT_STREAM_PREFIX, Envelope, ErrorStreamEntry, EventStream, MergedConsumer,
    StreamConsumption, StreamNaming, UnmappedPattern,
};
pub use transport::{
    Acker, BoxedSource, Capabilities, Confirmation, Consumer, DeadLetter, DeadLetteredMessage,
    DelayedRedelivery, Delivery, Destination, OffsetCommits, OffsetTracker, Outgoing, QueueSource,
    QueueType, Retry, Settlement, SettlementModel, Source, StartAt, StoreOffsets, StreamSource,
    Subscription, Transport, TransportError,
};
