//! The transport conformance suite, run against the in-memory broker in stream mode (as
//! the RabbitMQ Streams transport will run it): one test per case of
//! `pubsub::testing::conformance::CASES`, each on a fresh broker; a case that needs what streams
//! cannot do (requeue, competing consumers, ...) is skipped and says why.

pubsub::conformance_tests!(pubsub::MemoryTransport::stream_backed());
