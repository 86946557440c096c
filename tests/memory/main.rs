//! The tests that need no broker: the bus, the harness and the in-memory transport, in
//! queue and in stream mode, and the conformance suite on the in-memory broker, with its
//! negative control. `cargo test --test memory` runs them anywhere.

#[path = "../support/mod.rs"]
mod support;
// not in `support`: its event would be a domain of every binary's (streams read them all)
#[path = "../support/desks.rs"]
mod desks;
#[path = "../support/pings.rs"]
mod pings;

mod caused_ids;
mod conformance;
mod dead_letters;
mod delayed_retry;
mod dispatch;
mod handler_ownership;
mod isolation;
mod key_params;
mod negative_control;
#[cfg(feature = "protobuf")]
mod protobuf;
mod publisher_and_harness;
mod requests;
mod shared_transport;
mod shutdown;
mod stray_patterns;
mod stream_offset;
mod streams;
mod subscriptions;
mod transport;
