//! The cases, by topic: each one a semantic every transport must share.
//!
//! A case is an `async fn(&dyn Broker)` that panics when the transport falls short. Each is
//! `pub(crate)` and reachable only through the one list of cases (`__conformance_cases!`
//! in `conformance/mod.rs`), from which [`CASES`](super::CASES), [`run_named`](super::run_named)
//! and [`conformance_tests!`](crate::conformance_tests) are built. With `dead_code` denied
//! here, a case written but left out of the list is unused: the crate does not compile.
#![deny(dead_code)]

pub(super) mod concurrency;
pub(super) mod connection;
pub(super) mod requests;
pub(super) mod retries;
pub(super) mod routing;
pub(super) mod settlement;
pub(super) mod streams;
