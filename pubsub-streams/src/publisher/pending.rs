//! The accounting of one producer's unconfirmed messages: each kept by publishing id until
//! its publish is answered, and the bytes handed to the client kept under one frame. Plain
//! data, no I/O: the tasks of [`super`] decide when; this says what fits.
//!
//! The bytes a producer has handed to the client and not seen confirmed stay under one
//! frame (1 MiB): the client forms frames of what it holds, and the broker writes a chunk
//! of what it received and has not confirmed, so neither can pass the size a consumer
//! reads. Messages beyond wait in the queue until confirms make room.

use std::time::{Duration, Instant};

use pubsub_core::{Message, transport::TransportError};
use rabbitmq_stream_client::types::Message as WireMessage;
use tokio::sync::oneshot;

use crate::config::{FRAME_BUDGET, StreamConfig};
use crate::id_map::IdMap;

/// Where a publish's answer goes.
pub(super) type Reply = oneshot::Sender<Result<(), TransportError>>;

/// A message sent and not yet confirmed.
pub(super) struct Unconfirmed {
    pub(super) wire: WireMessage,
    /// Its room in a frame: body, properties and encoding.
    pub(super) size: usize,
    /// The producer generation it was last handed to; 0 while queued.
    pub(super) sent_in: u64,
    /// How often it was handed to a producer.
    pub(super) sends: u32,
    /// When it was first sent: the publish fails once this is older than the publish
    /// timeout.
    pub(super) since: Instant,
    /// `None` once the publish was answered (confirmed by an older producer, or timed out)
    /// while the producer of `sent_in` still holds it: kept, with its room in the frame
    /// budget, until that producer answers or is replaced.
    pub(super) reply: Option<Reply>,
}

/// The unconfirmed messages, queued or handed to the client.
pub(super) struct Pending {
    pub(super) messages: IdMap<Unconfirmed>,
    /// The size of the messages handed to the client: at most a frame's
    /// ([`fits`](Self::fits)).
    pub(super) handed: usize,
    /// How many messages are handed to the client.
    pub(super) handed_count: usize,
    /// Messages per frame (the configured batch size).
    pub(super) batch: usize,
}

/// Whether queued messages should be handed to the client now, given what it holds
/// unconfirmed (`handed` bytes in `handed_count` messages) and how many are queued: once
/// half a frame is free again, so that a producer at its byte limit sends frames of many
/// messages instead of a few at every confirm; and, while a frame's worth of messages is
/// already in flight, only once a frame's worth is queued (as Nagle's algorithm holds
/// small segments while data is unacknowledged), so that a steady stream of publishes
/// makes full frames. The broker's cost is per frame as much as per message.
pub(super) fn room(handed: usize, handed_count: usize, queued: usize, batch: usize) -> bool {
    handed <= FRAME_BUDGET / 2 && (handed_count < batch || queued >= batch)
}

impl Pending {
    pub(super) fn new(batch: usize) -> Self {
        Self {
            messages: IdMap::default(),
            handed: 0,
            handed_count: 0,
            batch,
        }
    }

    /// Whether a message of `size` can be handed to the client now: always when it holds
    /// none (a single message fits a frame: [`check_size`]).
    pub(super) fn fits(&self, size: usize) -> bool {
        self.handed == 0 || self.handed + size <= FRAME_BUDGET
    }

    /// Whether `queued` messages should be handed now ([`room`]).
    pub(super) fn has_room(&self, queued: usize) -> bool {
        room(self.handed, self.handed_count, queued, self.batch)
    }

    /// Marks `id` handed to producer `generation`; false if it is no longer unconfirmed
    /// (confirmed by an older producer, or timed out, while it was queued).
    pub(super) fn hand(&mut self, id: u64, generation: u64) -> bool {
        let Some(message) = self.messages.get_mut(&id) else {
            return false;
        };
        if message.sent_in == 0 {
            self.handed += message.size;
            self.handed_count += 1;
        }
        message.sent_in = generation;
        message.sends += 1;
        true
    }

    /// The answer of producer `from` for `id` (`ok`: confirmed); the reply to send it to,
    /// if the publish was not answered yet. A refusal counts only from the producer that
    /// last sent the message. A confirm from an older producer answers the publish, but
    /// the message stays counted while the current producer holds its copy (the broker
    /// drops that copy, and confirms it too).
    pub(super) fn answer(&mut self, id: u64, from: u64, ok: bool) -> Option<Reply> {
        let message = self.messages.get_mut(&id)?;
        if message.sent_in == 0 || message.sent_in == from {
            return self.remove(id).and_then(|message| message.reply);
        }
        if ok { message.reply.take() } else { None }
    }

    /// The replies of the publishes unanswered for `after`, each with how long it waited.
    /// A queued one is dropped; one a producer holds stays counted until that producer
    /// answers or is replaced.
    pub(super) fn expire(&mut self, after: Duration) -> Vec<(Reply, Duration)> {
        let old: Vec<(u64, bool, Duration)> = self
            .messages
            .iter()
            .map(|(id, m)| (*id, m, m.since.elapsed()))
            .filter(|(_, m, waited)| m.reply.is_some() && *waited >= after)
            .map(|(id, m, waited)| (id, m.sent_in == 0, waited))
            .collect();
        old.into_iter()
            .filter_map(|(id, queued, waited)| {
                let reply = if queued {
                    self.remove(id).and_then(|message| message.reply)
                } else {
                    self.messages.get_mut(&id).and_then(|m| m.reply.take())
                };
                reply.map(|reply| (reply, waited))
            })
            .collect()
    }

    pub(super) fn remove(&mut self, id: u64) -> Option<Unconfirmed> {
        let message = self.messages.remove(&id)?;
        if message.sent_in != 0 {
            self.handed = self.handed.saturating_sub(message.size);
            self.handed_count = self.handed_count.saturating_sub(1);
        }
        Some(message)
    }

    /// Every unanswered message back to queued (a new producer sends them all again), the
    /// answered ones dropped; the ids of those that had been handed to the old producer
    /// are counted.
    pub(super) fn requeue_all(&mut self) -> (Vec<(WireMessage, usize)>, u64) {
        self.handed = 0;
        self.handed_count = 0;
        let answered: Vec<u64> = self
            .messages
            .iter()
            .filter(|(_, m)| m.reply.is_none())
            .map(|(id, _)| *id)
            .collect();
        for id in answered {
            self.messages.remove(&id);
        }
        let mut handed_before = 0;
        let wires = self
            .messages
            .iter_mut()
            .map(|(_, message)| {
                if message.sent_in != 0 {
                    handed_before += 1;
                    message.sent_in = 0;
                }
                (message.wire.clone(), message.size)
            })
            .collect();
        (wires, handed_before)
    }
}

/// Refuses a message larger than [`StreamConfig::max_message_size`] (publishes of the
/// application; error stream copies are not held to it): frames of such messages stay
/// under the frame size.
pub(crate) fn check_size(
    config: &StreamConfig,
    stream: &str,
    message: &Message,
) -> Result<(), TransportError> {
    let size = message_size(message);
    let limit = config.max_message_size;
    if size > limit {
        return Err(TransportError::other(format!(
            "a message of {size} bytes to {} exceeds StreamConfig::max_message_size ({limit} bytes): publish frames must fit RabbitMQ's 1 MiB frame size",
            stream
        )));
    }
    Ok(())
}

/// The body and the variable part of the properties of `message`.
pub(super) fn message_size(message: &Message) -> usize {
    let m = &message.metadata;
    let text = |value: &Option<String>| value.as_ref().map_or(0, String::len);
    let headers: usize = m
        .headers
        .iter()
        .map(|(name, value)| name.len() + value.len())
        .sum();
    message.body.len()
        + headers
        + m.key.len()
        + text(&m.event_type)
        + m.content_type.len()
        + text(&m.correlation_id)
        + text(&m.causation_id)
        + text(&m.reply_to)
        + text(&m.app_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending_with(
        sizes: &[usize],
    ) -> (Pending, Vec<oneshot::Receiver<Result<(), TransportError>>>) {
        let mut pending = Pending::new(100);
        let mut replies = Vec::new();
        for (n, size) in sizes.iter().enumerate() {
            let (reply, confirmed) = oneshot::channel();
            replies.push(confirmed);
            let id = n as u64 + 1;
            pending.messages.insert(
                id,
                Unconfirmed {
                    wire: WireMessage::builder()
                        .body(vec![0; 1])
                        .publishing_id(id)
                        .build(),
                    size: *size,
                    sent_in: 0,
                    sends: 0,
                    since: Instant::now(),
                    reply: Some(reply),
                },
            );
        }
        (pending, replies)
    }

    #[test]
    fn the_bytes_handed_stay_under_a_frame_and_come_back_with_confirms() {
        let big = FRAME_BUDGET / 3;
        let (mut pending, _replies) = pending_with(&[big, big, big, big]);
        assert!(
            pending.fits(FRAME_BUDGET * 2),
            "an empty client takes any one message"
        );
        for id in 1..=3 {
            assert!(pending.fits(big));
            assert!(pending.hand(id, 1));
        }
        assert_eq!(pending.handed, big * 3);
        assert!(!pending.fits(big), "a fourth would pass the frame size");
        assert!(!pending.has_room(1));
        assert!(pending.remove(1).is_some(), "confirmed");
        assert_eq!(pending.handed, big * 2);
        assert!(pending.fits(big), "the confirm made room");
        assert!(!pending.has_room(1), "but less than half a frame");
        // a message no longer unconfirmed is not handed, nor counted
        assert!(!pending.hand(1, 1));
        assert_eq!(pending.handed, big * 2);
        // removing a queued message changes nothing handed
        assert!(pending.remove(4).is_some());
        assert_eq!(pending.handed, big * 2);
        assert!(pending.remove(2).is_some());
        assert!(pending.has_room(1), "half a frame free: hand the queue");
    }

    #[test]
    fn with_a_frame_of_messages_in_flight_the_queue_waits_for_a_frame_of_its_own() {
        let (mut pending, _replies) = pending_with(&[100; 200]);
        for id in 1..=99 {
            assert!(pending.hand(id, 1));
        }
        assert!(pending.has_room(1), "99 in flight: one more goes at once");
        assert!(pending.hand(100, 1));
        assert!(!pending.has_room(1), "a frame's worth in flight: wait");
        assert!(!pending.has_room(99));
        assert!(pending.has_room(100), "a frame's worth queued: send it");
        assert!(pending.remove(1).is_some());
        assert!(
            pending.has_room(1),
            "a confirm: below a frame's worth in flight again"
        );
    }

    #[test]
    fn a_recovery_queues_everything_again_and_counts_what_was_handed() {
        let (mut pending, _replies) = pending_with(&[10, 20, 30]);
        assert!(pending.hand(1, 1));
        assert!(pending.hand(2, 1));
        let (wires, handed_before) = pending.requeue_all();
        assert_eq!(handed_before, 2);
        assert_eq!(pending.handed, 0);
        let ids: Vec<u64> = wires
            .iter()
            .map(|(wire, _)| wire.publishing_id().copied().unwrap_or_default())
            .collect();
        assert_eq!(ids, [1, 2, 3], "in id order");
        assert_eq!(wires.iter().map(|(_, size)| *size).sum::<usize>(), 60);
        let sends: Vec<u32> = pending.messages.iter().map(|(_, m)| m.sends).collect();
        assert_eq!(
            sends,
            [1, 1, 0],
            "sends count the handings, not the queueings"
        );
        assert!(pending.messages.iter().all(|(_, m)| m.sent_in == 0));
        assert!(pending.hand(1, 2));
        assert_eq!(
            pending.messages.iter().next().map(|(_, m)| m.sends),
            Some(2)
        );
    }

    #[test]
    fn an_older_producers_confirm_answers_but_keeps_the_copy_counted() {
        let (mut pending, mut replies) = pending_with(&[10, 20]);
        assert!(pending.hand(1, 1));
        assert!(pending.hand(2, 1));
        pending.requeue_all();
        assert!(pending.hand(1, 2), "re-sent on producer 2");
        // producer 1's confirms come late: 1 is held by producer 2, 2 only queued
        let reply = pending.answer(1, 1, true).expect("unanswered");
        let _ = reply.send(Ok(()));
        assert!(matches!(replies[0].try_recv(), Ok(Ok(()))));
        assert_eq!(
            (pending.handed, pending.handed_count),
            (10, 1),
            "producer 2 holds the copy"
        );
        assert!(pending.answer(1, 2, true).is_none(), "answered already");
        assert_eq!((pending.handed, pending.handed_count), (0, 0));
        assert!(pending.answer(2, 1, true).is_some());
        assert!(pending.messages.len() == 0, "the queued one is gone");
        assert!(!pending.hand(2, 2), "and is not sent again");
    }

    #[test]
    fn a_refusal_counts_only_from_the_producer_that_last_sent_it() {
        let (mut pending, _replies) = pending_with(&[10]);
        assert!(pending.hand(1, 1));
        pending.requeue_all();
        assert!(pending.hand(1, 2));
        assert!(pending.answer(1, 1, false).is_none(), "producer 1 is gone");
        assert_eq!(pending.handed_count, 1);
        assert!(pending.answer(1, 2, false).is_some());
        assert_eq!((pending.handed, pending.handed_count), (0, 0));
    }

    #[test]
    fn an_expired_publish_fails_but_stays_counted_while_a_producer_holds_it() {
        let (mut pending, mut replies) = pending_with(&[10, 20]);
        assert!(pending.hand(1, 1));
        let expired = pending.expire(Duration::ZERO);
        assert_eq!(expired.len(), 2, "both publishes fail");
        for (reply, _) in expired {
            let _ = reply.send(Err(TransportError::Closed));
        }
        assert!(
            replies
                .iter_mut()
                .all(|r| matches!(r.try_recv(), Ok(Err(_))))
        );
        assert_eq!(
            (pending.handed, pending.handed_count),
            (10, 1),
            "the handed one still takes its room"
        );
        assert_eq!(pending.messages.len(), 1, "the queued one is dropped");
        assert!(
            pending.expire(Duration::ZERO).is_empty(),
            "failed once only"
        );
        assert!(pending.answer(1, 1, true).is_none(), "its late confirm");
        assert_eq!((pending.handed, pending.handed_count), (0, 0));
        // a recovery drops what was answered instead of sending it again
        let (mut pending, _replies) = pending_with(&[10, 20]);
        assert!(pending.hand(1, 1));
        drop(pending.expire(Duration::ZERO));
        let (wires, handed_before) = pending.requeue_all();
        assert!(wires.is_empty() && handed_before == 0 && pending.messages.len() == 0);
    }
}
