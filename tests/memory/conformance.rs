//! The transport conformance suite on the in-memory broker: one test per case of
//! `pubsub::testing::conformance::CASES`, each on a fresh broker, in queue mode and in
//! stream mode (as the RabbitMQ Streams transport runs it). Each mode names exactly the
//! cases it skips, for what it cannot do: a case skipped but not named here fails, and so
//! does a case named here that runs.

/// Queue mode: everything but the stream cases (they need replay).
mod queues {
    pubsub::conformance_tests!(
        pubsub::MemoryTransport::new(),
        skips = [
            resume_after_restart,
            only_handled_prefix_is_stored,
            failures_go_to_the_error_stream,
            single_active_consumer_takes_over,
            start_positions,
            new_service_reads_history,
        ],
    );
}

/// Stream mode: what a log cannot do (competing consumers, requeue, delayed redelivery),
/// and request/reply.
mod stream_backed {
    pubsub::conformance_tests!(
        pubsub::MemoryTransport::stream_backed(),
        skips = [
            delayed_retry_waits_its_delay,
            competing_consumers,
            no_loss_across_resubscribe,
            request_reply,
            request_times_out,
            request_without_responder,
            first_reply_wins,
            closing_fails_waiting_requests,
        ],
    );
}
