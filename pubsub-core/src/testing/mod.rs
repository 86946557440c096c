//! Testing with `pubsub` (feature `testing`): the [`TestHarness`], which unit-tests
//! handlers on the in-memory transport, and the transport [`conformance`] suite, which
//! checks that a transport keeps the semantics every transport shares.

pub mod conformance;
mod harness;

pub use harness::{HandlerCall, TestHarness};

pub use crate::conformance_tests;
