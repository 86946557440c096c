//! Core of `pubsub`: typed events, codecs, topic patterns, the handler registry, the
//! dispatcher, the transport contract, the in-memory transport and the [`Bus`]. Services
//! depend on the `pubsub` facade, which re-exports all of it; transport crates depend on
//! this crate and implement [`transport::Transport`].
//!
//! The root holds what a service author uses; the modules hold the rest:
//! [`transport`] (the contract a transport implements), [`stream`] (reading streams),
//! [`codec`], [`headers`], [`health`], [`pattern`], [`registry`], [`memory`], and
//! [`testing`] (the test harness and the transport conformance suite).
//!
//! # Features
//!
//! - `protobuf`: Protocol Buffers payloads for events that derive `prost::Message`.
//! - `testing`: the [`testing`] module. Off by default, so that production builds do not
//!   compile it; turn it on where tests are built:
//!
//! ```toml
//! [dev-dependencies]
//! pubsub = { version = "0.1", features = ["testing"] }
//! ```
//!
//! # Layers
//!
//! Modules import only from layers below their own, so each can be read on its own:
//! 1. data: [`Message`] and [`Metadata`], [`headers`], [`codec`], [`pattern`];
//! 2. the transport contract: [`transport`] (with stream naming, [`stream::StreamNaming`]);
//! 3. events and publishing: [`Event`], [`Request`], the publisher, [`Error`];
//! 4. handlers: [`Context`], handler inputs, registrations, selection, [`RetryPolicy`];
//! 5. dispatch: the router, the dispatcher and its settlement;
//! 6. the bus: [`BusBuilder`], [`Bus`], stream consumption, [`health`] and [`BusStats`].
//!
//! Beside them, implementing the contract: the in-memory broker ([`MemoryTransport`]);
//! above them all: [`testing`].

mod builder;
mod bus;
pub mod codec;

mod context;
mod deadline;
mod dispatch;
mod error;
mod event;
mod event_registration;
mod handler;
mod handler_error;
mod handler_input;
pub mod headers;
pub mod health;
mod key_template;
mod key_word;
pub mod memory;
mod metadata;
mod origin;
pub mod pattern;
mod publish;
mod registration;
mod report;
mod request;
mod retry;
mod router;
mod runtime_end;
mod selection;
mod state;
mod stats;
mod stray_pattern;
pub mod stream;
#[cfg(feature = "testing")]
pub mod testing;
pub mod transport;
mod typed_binding;
mod unassigned;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use builder::BusBuilder;
pub use bus::{Bus, RequestCall, ShutdownSignal, StopSignal, SubscribeCall, shutdown_signal};
pub use context::Context;
pub use dispatch::Isolation;
pub use error::{Error, Result};
pub use event::Event;
pub use handler::Handler;
pub use handler_error::{HandlerError, HandlerErrorKind, HandlerResultExt};
pub use handler_input::RawEvent;
pub use key_template::{KeyError, KeyParam, ParamValue};
pub use key_word::KeyWord;
pub use memory::MemoryTransport;
pub use metadata::{Message, Metadata};
pub use publish::{PendingPublish, PublishOptions};
pub use report::Report;
pub use request::{DEFAULT_REQUEST_TIMEOUT, Request, RequestError};
pub use retry::RetryPolicy;
pub use selection::HandlerSelection;
pub use stats::BusStats;
pub use uuid::Uuid;

// What the macros' generated code names; public so that compiler diagnostics can name
// them, hidden because users never write them.
#[doc(hidden)]
pub use handler_input::{FromContext, HandlerInput, IntoHandlerResult};

/// What `#[derive(Event)]` and `#[handler]` registered in this binary at link time.
pub mod registry {
    pub use crate::event_registration::{EventRegistration, registered_events};
    pub use crate::origin::HandlerOrigin;
    pub use crate::registration::{HandlerInfo, registered_handlers};
}
