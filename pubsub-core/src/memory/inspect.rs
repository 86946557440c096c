//! Inspecting the in-memory broker from tests and tools: what was published, queue depths,
//! dead letters and their replay, streams, stored offsets and error streams, and waiting
//! until nothing is in flight.

use std::pin::pin;
use std::time::Duration;

use super::MemoryTransport;
use super::broker::Topics;
use super::error::InspectError;
use super::queues::queue::Queue;
use crate::error::Error;
use crate::metadata::Message;
use crate::stream::ErrorStreamEntry;
use crate::transport::DeadLetteredMessage;

/// Counts of one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct QueueDepth {
    /// Messages waiting for a consumer.
    pub ready: usize,
    /// Messages delivered (pushed to a consumer) and not yet settled.
    pub unacked: usize,
    /// Attached consumers.
    pub consumers: usize,
    /// Messages in the dead-letter queue.
    pub dead_lettered: usize,
    /// Messages waiting out a retry delay before they come back.
    pub delayed: usize,
}

impl MemoryTransport {
    /// Starts keeping a copy of every published message (see [`published`](Self::published)).
    pub fn record_published(&self) {
        self.broker.record_published();
    }

    /// Every message published since [`record_published`](Self::record_published), in order.
    pub fn published(&self) -> Vec<Message> {
        self.broker.published()
    }

    /// Messages published that no queue was bound for (RabbitMQ would return them to a
    /// `mandatory` publisher).
    pub fn unroutable(&self) -> u64 {
        self.broker.queues.unroutable()
    }

    /// What was dead-lettered for `service`, oldest first: its dead-letter queue, or on a
    /// [stream-backed](Self::stream_backed) broker its error stream (see
    /// [`error_stream`](Self::error_stream)). An error if the service never declared its
    /// queue or stream here (a typo must not look like "no dead letters"). The same as
    /// [`Transport::dead_letters`](crate::transport::Transport::dead_letters), without
    /// awaiting.
    pub fn dead_lettered(&self, service: &str) -> Result<Vec<DeadLetteredMessage>, InspectError> {
        match self.broker.topics {
            Topics::Streams => Ok(self
                .error_stream(service)?
                .into_iter()
                .map(|entry| DeadLetteredMessage {
                    queue: service.to_owned(),
                    reason: entry.reason,
                    failed_handlers: entry.failed_handlers,
                    message: entry.message,
                })
                .collect()),
            Topics::Queues => self
                .broker
                .queues
                .existing_queue(service)
                .map(|q| dead_lettered(&q)),
        }
    }

    /// Every dead-lettered message of every service.
    pub fn all_dead_letters(&self) -> Vec<DeadLetteredMessage> {
        let topology = self.broker.queues.topology();
        let mut names: Vec<&String> = topology.queues.keys().collect();
        names.sort();
        names
            .into_iter()
            .flat_map(|n| dead_lettered(&topology.queues[n]))
            .collect()
    }

    /// Moves the dead letters of `service` back into its queue, as redeliveries without
    /// their reason; each keeps the names of the handlers that failed
    /// ([`HEADER_FAILED_HANDLERS`](crate::headers::HEADER_FAILED_HANDLERS)), so only those run again
    /// and a handler that had succeeded (an email sent) is not run twice. Returns how many.
    pub fn replay_dead_letters(&self, service: &str) -> Result<usize, InspectError> {
        self.broker
            .queues
            .existing_queue(service)
            .map(|q| q.replay_dead_letters(true))
    }

    /// Like [`replay_dead_letters`](Self::replay_dead_letters), but every matching handler
    /// runs again, those that had succeeded too.
    pub fn replay_dead_letters_to_all(&self, service: &str) -> Result<usize, InspectError> {
        self.broker
            .queues
            .existing_queue(service)
            .map(|q| q.replay_dead_letters(false))
    }

    /// Counts of the queue of `service`; an error if it was never declared.
    pub fn queue_depth(&self, service: &str) -> Result<QueueDepth, InspectError> {
        self.broker.queues.existing_queue(service).map(|q| {
            let state = q.lock();
            QueueDepth {
                ready: state.ready.len(),
                unacked: state.unacked.len() + state.assigned(),
                consumers: state.consumers.len(),
                dead_lettered: q.dead_letters.as_ref().map_or(0, |dlq| dlq.len()),
                delayed: state.delayed,
            }
        })
    }

    /// Whether nothing is in flight: no unsettled delivery, and no ready message in a queue
    /// that has a consumer to take it.
    pub fn is_idle(&self) -> bool {
        self.broker.is_idle()
    }

    /// Waits until [`is_idle`](Self::is_idle), at most `timeout`.
    pub async fn wait_idle(&self, timeout: Duration) -> Result<(), Error> {
        let signal = &self.broker.signal;
        let _waiting = signal.waiting();
        let wait = async {
            loop {
                let mut changed = pin!(signal.notify.notified());
                changed.as_mut().enable();
                // Queues are checked one after the other: the view is consistent only if
                // nothing changed meanwhile (a handler publishing to another queue, then
                // settling its own delivery, must not look idle).
                let before = signal.generation();
                if self.is_idle() && signal.generation() == before {
                    return;
                }
                // settles notify; the short tick covers consumers attaching late
                let _ = tokio::time::timeout(Duration::from_millis(50), changed).await;
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| Error::Timeout(timeout, "the in-memory broker did not become idle".into()))
    }

    /// The names of the queues, sorted: the services' queues, and the private queues of the
    /// live subscriptions open now ([`Bus::subscribe`](crate::Bus::subscribe)), which go
    /// when their stream is dropped.
    ///
    /// ```
    /// use pubsub::prelude::*;
    /// # #[derive(Debug, Clone, Serialize, Deserialize, Event)]
    /// # #[event(domain = "order", action = "created")]
    /// # struct OrderCreated { id: u32 }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> pubsub::Result<()> {
    /// let transport = MemoryTransport::new();
    /// let bus = Bus::publisher("shop", transport.clone());
    /// let orders = bus.subscribe::<OrderCreated>().await?;
    /// assert_eq!(transport.queue_names(), [orders.stream()]);
    /// drop(orders);
    /// assert!(transport.queue_names().is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn queue_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .broker
            .queues
            .topology()
            .queues
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// The names of the streams, sorted.
    pub fn stream_names(&self) -> Vec<String> {
        self.broker.streams.names()
    }

    /// How many messages `stream` holds (after retention).
    pub fn stream_length(&self, stream: &str) -> Result<u64, InspectError> {
        let (first, end) = self.broker.streams.existing_log(stream)?.bounds();
        Ok(end - first)
    }

    /// The messages `stream` holds, with their offsets, oldest first.
    pub fn stream_messages(&self, stream: &str) -> Result<Vec<(u64, Message)>, InspectError> {
        Ok(self.broker.streams.existing_log(stream)?.messages())
    }

    /// The offset consumer `consumer` (a service) stored on `stream`: the last one it
    /// handled; it resumes after it. `None` if it stored none.
    pub fn stored_offset(&self, stream: &str, consumer: &str) -> Result<Option<u64>, InspectError> {
        Ok(self
            .broker
            .streams
            .existing_log(stream)?
            .stored_offset(consumer))
    }

    /// Makes consumer `consumer` read `stream` from offset `next` when it next starts
    /// (`0`: replay all it still holds), whatever it had stored: an operator's offset reset,
    /// as [`StreamTransport::reset_offset`] does on RabbitMQ. A consumer reading now goes
    /// on where it is.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> pubsub::Result<()> {
    /// use pubsub::{MemoryTransport, Message, transport::{Bytes, Transport}};
    ///
    /// let broker = MemoryTransport::stream_backed();
    /// broker.publish(Message::new("room.said", Bytes::from_static(b"{}")).into()).await?;
    /// broker.reset_offset("events.room", "archive", 0)?;
    /// assert_eq!(broker.stored_offset("events.room", "archive")?, Some(u64::MAX)); // before 0
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// [`StreamTransport::reset_offset`]: https://docs.rs/pubsub-streams
    pub fn reset_offset(
        &self,
        stream: &str,
        consumer: &str,
        next: u64,
    ) -> Result<(), InspectError> {
        self.broker
            .streams
            .existing_log(stream)?
            .store_offset(consumer, next.wrapping_sub(1));
        Ok(())
    }

    /// The error stream of `service`
    /// ([`StreamNaming::error_stream`](crate::stream::StreamNaming::error_stream)), oldest first:
    /// every event its handlers gave up on, with the reason, the failed handlers, and the
    /// stream and offset it came from. An error if it does not exist (the service never
    /// consumed streams here).
    pub fn error_stream(&self, service: &str) -> Result<Vec<ErrorStreamEntry>, InspectError> {
        self.broker.streams.error_stream(service)
    }
}

/// The dead letters of a service queue.
fn dead_lettered(queue: &Queue) -> Vec<DeadLetteredMessage> {
    queue
        .dead_letters
        .as_ref()
        .map(|dlq| dlq.dead_lettered(&queue.name))
        .unwrap_or_default()
}
