//! How a publish is answered: the client's callback turns each confirm or refusal into the
//! publish's reply (or reports the producer lost, when the broker says the stream or
//! the publisher is gone), and the timeout sweep task fails the publishes unanswered
//! after the publish timeout. An answer that makes room in the frame wakes the flush task.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use pubsub_core::transport::TransportError;
use rabbitmq_stream_client::ConfirmationStatus;
use rabbitmq_stream_client::error::ProducerPublishError;
use rabbitmq_stream_client::types::ResponseCode;
use tokio::sync::Notify;

use super::pending::room;
use super::state::{Inner, UnconfirmedMap};
use crate::sync::lock;

/// How often a producer looks for publishes older than the publish timeout, at most
/// (one sweep per producer instead of a timer per message).
const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// The client's callback for the messages handed to producer `generation`: a confirm or
/// a refusal answers the publish ([`confirm`]); a failed connection, or a stream or
/// publisher the broker no longer has (the stream was deleted, or moved), reports the
/// producer lost.
pub(super) fn on_confirm(
    inner: &Inner,
    generation: u64,
) -> impl Fn(Result<ConfirmationStatus, ProducerPublishError>) -> std::future::Ready<()>
+ Send
+ Sync
+ 'static {
    let unconfirmed = Arc::clone(&inner.unconfirmed);
    let lost = Arc::clone(&inner.lost);
    let stream = Arc::clone(&inner.stream);
    let (queued, flush) = (Arc::clone(&inner.queued), Arc::clone(&inner.flush));
    let batch = inner.config.frame_messages();
    move |outcome: Result<ConfirmationStatus, _>| {
        match outcome {
            // the connection failed under the message
            Err(_) => lost.report(generation),
            Ok(status) if status.confirmed() => {
                let handed = confirm(&unconfirmed, status.publishing_id(), generation, Ok(()));
                wake_for_room(handed, &queued, batch, &flush);
            }
            Ok(status) => match status.status() {
                // the stream was deleted (the broker drops its publishers) or moved
                ResponseCode::PublisherDoesNotExist
                | ResponseCode::StreamDoesNotExist
                | ResponseCode::StreamNotAvailable => lost.report(generation),
                code => {
                    let id = status.publishing_id();
                    let handed = confirm(
                        &unconfirmed,
                        id,
                        generation,
                        Err(TransportError::Nacked {
                            reason: format!(
                                "{stream}, publishing id {id}: the broker refused it: {code:?}"
                            ),
                        }),
                    );
                    wake_for_room(handed, &queued, batch, &flush);
                }
            },
        }
        std::future::ready(())
    }
}

/// Resolves the publish of `id` with the answer of producer `from`
/// ([`Pending::answer`](super::pending::Pending::answer)). Returns the bytes and the count
/// of the messages the client still holds.
fn confirm(
    unconfirmed: &UnconfirmedMap,
    id: u64,
    from: u64,
    outcome: Result<(), TransportError>,
) -> (usize, usize) {
    let mut unconfirmed = lock(unconfirmed);
    let reply = unconfirmed.answer(id, from, outcome.is_ok());
    let handed = (unconfirmed.handed, unconfirmed.handed_count);
    drop(unconfirmed);
    if let Some(reply) = reply {
        let _ = reply.send(outcome);
    }
    handed
}

/// Wakes the flush task if a confirm that left `handed` (bytes, count) with the client
/// makes room for the queued messages ([`room`]).
fn wake_for_room(handed: (usize, usize), queued: &AtomicUsize, batch: usize, flush: &Notify) {
    let queued = queued.load(Ordering::Relaxed);
    if queued > 0 && room(handed.0, handed.1, queued, batch) {
        flush.notify_one();
    }
}

/// The timeout sweep of one producer: every [`SWEEP_EVERY`] (or a quarter of a shorter
/// publish timeout), fails the publishes older than `after` with
/// [`TransportError::TimedOut`], and wakes the flush task if messages are queued (should
/// a wake-up have been missed); ends when the producer is dropped.
pub(super) async fn sweep(producer: Weak<Inner>, after: Duration) {
    let every = (after / 4).clamp(Duration::from_millis(1), SWEEP_EVERY);
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(inner) = producer.upgrade() else {
            return;
        };
        let expired = lock(&inner.unconfirmed).expire(after);
        if inner.queued.load(Ordering::SeqCst) > 0 {
            inner.flush.notify_one();
        }
        drop(inner);
        for (reply, waited) in expired {
            // the wait that happened: the sweep comes up to a tick after the timeout
            let _ = reply.send(Err(TransportError::TimedOut {
                operation: "stream publish confirm",
                after: waited,
            }));
        }
    }
}
