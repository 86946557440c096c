//! The transport conformance suite, run against the in-memory transport: one test per
//! case of `pubsub::testing::conformance::CASES`, each on a fresh broker.

pubsub::conformance_tests!(pubsub::MemoryTransport::new());
