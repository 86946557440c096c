//! Reading a stream: the consumer that comes back ([`StreamConsumer`]). Its offsets and
//! their store timer are in [`offsets`], its subscriptions with the client in
//! [`subscription`], the acker of each delivery in [`acker`].
//!
//! Offsets are stored only for the contiguous prefix of settled deliveries
//! ([`OffsetCommits`]), on the timer, when a settle makes one due, and at close; never on
//! drop or connection loss.
//!
//! The client neither reconnects nor tells a consumer its stream was deleted (it just goes
//! silent). So the consumer here:
//! - resubscribes when the client's consumer ends (its connection closed) from the next
//!   offset it has not handed out, with capped, jittered backoff;
//! - while it waits for messages, checks every [`StreamConfig::check_interval`] that its
//!   stream exists, and that an offset it stored is still there (a stream deleted and
//!   re-created at once has none): either means a new stream, read from its first offset
//!   after re-creating it with its retention if it is still missing. Deliveries of the
//!   old stream still being handled settle without moving the new stream's offset.
//!
//! [`StreamConfig::check_interval`]: crate::StreamConfig

mod acker;
mod offsets;
mod subscription;
mod undecodable;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
use pubsub_core::{
    health::{ConsumerHealth, ConsumerState},
    stream::{StartAt, StoreOffsets},
    transport::{Consumer, Delivery, OffsetCommits, StreamSource, TransportError},
};
use rabbitmq_stream_client::types::OffsetSpecification;
use tokio::task::JoinHandle;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use self::acker::StreamAcker;
use self::offsets::{Commits, Offsets, store_timer};
use self::subscription::{Subscribed, subscribe};
use crate::connection::{self, Backoff, Probe};
use crate::convert;
use crate::session::Session;
use crate::sync::lock;

/// The consumer of one stream for one service, which comes back after a lost connection
/// or a deleted stream.
pub(crate) struct StreamConsumer {
    source: StreamSource,
    current: Option<Subscribed>,
    /// Where the next subscription starts, when the current one was lost.
    resume_at: OffsetSpecification,
    offsets: Arc<Offsets>,
    timer: Option<JoinHandle<()>>,
    check: Interval,
    /// The last check found no offset where this consumer had stored one.
    offset_missing: bool,
    health: Arc<Mutex<ConsumerHealth>>,
    cancelled: bool,
}

impl StreamConsumer {
    /// Subscribes `service` to `stream`: after the offset stored on the broker, or at the
    /// source's start without one.
    pub(crate) async fn open(
        session: Arc<Session>,
        service: &str,
        stream: &str,
        source: &StreamSource,
        health: Arc<Mutex<ConsumerHealth>>,
    ) -> Result<Self, TransportError> {
        let stored = if source.store == StoreOffsets::Never {
            None
        } else {
            session.admin.stored_offset(service, stream).await?
        };
        let (spec, first) = match stored {
            // u64::MAX: fixed at declare on an empty stream, "before offset 0"
            Some(stored) => {
                source.note_stored_offset_wins(service, stored);
                let first = stored.wrapping_add(1);
                (OffsetSpecification::Offset(first), first)
            }
            None => {
                let first = match source.start {
                    StartAt::Offset(offset) => offset,
                    _ => 0,
                };
                (connection::offset_specification(source.start), first)
            }
        };
        let name = (source.store != StoreOffsets::Never).then(|| service.to_owned());
        let offsets = Arc::new(Offsets {
            session,
            name,
            service: service.to_owned(),
            stream: stream.to_owned(),
            store: source.store,
            commits: Mutex::new(Commits {
                generation: 0,
                commits: OffsetCommits::new(source.store, first),
            }),
        });
        let current = subscribe(&offsets, source, spec.clone()).await?;
        tracing::debug!(stream, consumer = %service, first, "consuming");
        let period = offsets.session.config.check_interval;
        let mut check = tokio::time::interval_at(Instant::now() + period, period);
        check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let timer = store_timer(&offsets);
        Ok(Self {
            source: source.clone(),
            current: Some(current),
            resume_at: spec,
            offsets,
            timer,
            check,
            offset_missing: false,
            health,
            cancelled: false,
        })
    }

    /// The subscription was lost: the next one starts after the last offset handed out.
    async fn lost_connection(&mut self, reason: &str) {
        if let Some(current) = self.current.take() {
            current.close().await;
        }
        let next = self.offsets.commits().commits.next();
        self.resume_at = OffsetSpecification::Offset(next);
        self.set_state(ConsumerState::Recovering, Some(reason.to_owned()));
        tracing::warn!(stream = %self.offsets.stream, consumer = %self.offsets.service, next, reason, "stream consumer lost its subscription; resubscribing");
    }

    /// The client cannot decode the chunk holding the next offset (see [`undecodable`]):
    /// the next subscription starts at the first offset after it that it can, and the
    /// offsets skipped count as handled, so that a stored offset moves past them too.
    async fn skip_undecodable(&mut self, error: &str) {
        if let Some(current) = self.current.take() {
            current.close().await;
        }
        let (from, generation) = {
            let commits = self.offsets.commits();
            (commits.commits.next(), commits.generation)
        };
        let o = &self.offsets;
        let skip_to = undecodable::first_decodable_after(&o.session, &o.stream, from).await;
        let Some(to) = skip_to else {
            self.resume_at = OffsetSpecification::Offset(from);
            self.set_state(ConsumerState::Recovering, Some(error.to_owned()));
            return;
        };
        let mut due = None;
        for offset in from..to {
            if o.commits().commits.admit(offset) {
                due = o.settled(generation, offset).or(due);
            }
        }
        Box::pin(o.store(due)).await;
        self.resume_at = OffsetSpecification::Offset(to);
        let reason = format!(
            "the stream client cannot decode offsets {from}..{to} of {} ({error}): a message \
             with a properties section over 254 bytes, written by rabbitmq-stream-client 0.11? \
             They are skipped",
            o.stream
        );
        tracing::error!(stream = %o.stream, consumer = %o.service, from, to, "{reason}");
        lock(&self.health).last_error = Some(reason);
    }

    /// The stream was deleted (and perhaps re-created): the next subscription reads the
    /// new stream from its first offset.
    async fn lost_stream(&mut self, reason: &str) {
        if let Some(current) = self.current.take() {
            current.close().await;
        }
        let generation = self.offsets.new_generation();
        self.offset_missing = false;
        self.resume_at = OffsetSpecification::First;
        self.set_state(ConsumerState::Recovering, Some(reason.to_owned()));
        tracing::warn!(stream = %self.offsets.stream, consumer = %self.offsets.service, generation, reason, "stream consumer's stream is gone; reading the new one from its start");
    }

    /// Whether the stream this consumer reads is still the one it subscribed to: it
    /// exists, and an offset this consumer stored is still there.
    async fn check_stream(&mut self) {
        let o = &self.offsets;
        // an anonymous reader asks under a name that stores nothing
        let name = o.name.as_deref().unwrap_or("pubsub-probe");
        let reason = match o.session.admin.probe(name, &o.stream).await {
            Ok(Probe::Missing) => format!("stream {} was deleted", o.stream),
            Ok(Probe::NoOffset) if o.name.is_some() && o.commits().commits.stored().is_some() => {
                // a store is not answered and may not be visible yet: believe it the
                // second time in a row
                if !std::mem::replace(&mut self.offset_missing, true) {
                    return;
                }
                format!(
                    "stream {} lost the offset this consumer stored: deleted and re-created",
                    o.stream
                )
            }
            Ok(_) => {
                self.offset_missing = false;
                return;
            }
            Err(error) => {
                // the admin connection's trouble; the subscription's own connection tells
                // when it is lost
                tracing::debug!(stream = %o.stream, error = %pubsub_core::Report::new(&error), "checking the stream failed");
                return;
            }
        };
        self.lost_stream(&reason).await;
    }

    /// Subscribes again, re-creating the stream if it is missing; `false` if the
    /// transport closed meanwhile.
    async fn resume(&mut self) -> bool {
        let mut backoff = Backoff::new(&self.offsets.session.config);
        let reconnects = self.offsets.session.admin.reconnects.clone();
        loop {
            let mark = reconnects.mark();
            let attempt = async {
                let o = &self.offsets;
                o.session.admin.create_stream(&o.stream).await?;
                subscribe(o, &self.source, self.resume_at.clone()).await
            };
            let outcome = tokio::select! {
                biased;
                () = self.offsets.session.closed() => return false,
                outcome = attempt => outcome,
            };
            match outcome {
                Ok(subscribed) => {
                    reconnects.connected();
                    self.current = Some(subscribed);
                    lock(&self.health).resumed += 1;
                    self.set_state(ConsumerState::Running, None);
                    tracing::info!(stream = %self.offsets.stream, consumer = %self.offsets.service, "stream consumer resumed");
                    return true;
                }
                Err(error) => {
                    let wait = backoff.next_wait();
                    tracing::warn!(stream = %self.offsets.stream, error = %pubsub_core::Report::new(&error), ?wait, "resubscribing failed; trying again");
                    self.set_state(ConsumerState::Recovering, Some(error.to_string()));
                    tokio::select! {
                        biased;
                        () = self.offsets.session.closed() => return false,
                        () = reconnects.wait(wait, mark) => {}
                    }
                }
            }
        }
    }

    fn set_state(&self, state: ConsumerState, error: Option<String>) {
        lock(&self.health).transition(state, error);
    }
}

/// What ended a wait for the next message.
enum Woke {
    Closed,
    Check,
    Next(
        Option<
            Result<
                rabbitmq_stream_client::types::Delivery,
                rabbitmq_stream_client::error::ConsumerDeliveryError,
            >,
        >,
    ),
}

#[async_trait]
impl Consumer for StreamConsumer {
    /// Cancel-safe: the client's consumer is a channel receiver, a message taken is
    /// admitted (or skipped) before this returns, and a check or a resubscription that
    /// is cancelled half-way is done again on the next call.
    async fn next(&mut self) -> Option<Result<Delivery, TransportError>> {
        loop {
            if self.cancelled {
                return None;
            }
            // the rare paths are boxed: their state would otherwise make every call's
            // future (boxed by async_trait, so copied to the heap) several times larger
            if self.current.is_none() && !Box::pin(self.resume()).await {
                return None;
            }
            if self.offsets.session.check_open().is_err() {
                return None;
            }
            let Some(current) = self.current.as_mut() else {
                continue;
            };
            // a message ready is taken first: the close and the check are only waited
            // for (a watch and a timer registered) when none is
            let woke = tokio::select! {
                biased;
                next = current.inner.next() => Woke::Next(next),
                () = self.offsets.session.closed() => Woke::Closed,
                _ = self.check.tick() => Woke::Check,
            };
            let delivery = match woke {
                Woke::Closed => return None,
                Woke::Check => {
                    Box::pin(self.check_stream()).await;
                    continue;
                }
                Woke::Next(None) => {
                    Box::pin(self.lost_connection("the subscription's connection closed")).await;
                    continue;
                }
                Woke::Next(Some(Err(error))) if undecodable::is_undecodable(&error) => {
                    Box::pin(self.skip_undecodable(&error.to_string())).await;
                    continue;
                }
                Woke::Next(Some(Err(error))) => {
                    let stream = &self.offsets.stream;
                    return Some(Err(TransportError::other(format!(
                        "reading {stream}: {error}"
                    ))));
                }
                Woke::Next(Some(Ok(delivery))) => delivery,
            };
            let offset = delivery.offset();
            let generation = {
                let mut commits = self.offsets.commits();
                if !commits.commits.admit(offset) {
                    continue;
                }
                commits.generation
            };
            let message = Arc::new(convert::from_wire(
                delivery.message(),
                &self.offsets.stream,
                offset,
            ));
            // the broker's filter is probabilistic: the exact check is here
            let wanted = self.source.wants_key(&message.metadata.key);
            if !self.source.only_keys.is_empty() {
                let mut health = lock(&self.health);
                health.received += 1;
                health.passed_over += u64::from(!wanted);
            }
            if !wanted {
                // passed over as handled, so that a named reader's offset moves on
                if let Some(due) = self.offsets.settled(generation, offset) {
                    Box::pin(self.offsets.store(Some(due))).await;
                }
                continue;
            }
            let acker = Box::new(StreamAcker {
                offsets: Arc::clone(&self.offsets),
                generation,
                offset,
                message: Arc::clone(&message),
            });
            return Some(Ok(Delivery::new(message, false, acker).with_offset(offset)));
        }
    }

    /// Stops handing out deliveries; the subscription stays until [`close`](Self::close)
    /// stored the offset, so that a waiting single active consumer takes over from it.
    async fn cancel(&mut self) -> Result<(), TransportError> {
        self.cancelled = true;
        Ok(())
    }

    /// Stores the offset of the contiguous prefix settled (confirmed by reading it back),
    /// then unsubscribes.
    async fn close(mut self: Box<Self>) -> Result<(), TransportError> {
        self.cancelled = true;
        if let Some(timer) = self.timer.take() {
            timer.abort();
        }
        let closing = self.offsets.commits().commits.closing();
        let stored = match (closing, &self.offsets.name) {
            (Some(offset), Some(name)) => self
                .offsets
                .session
                .admin
                .store_offset_confirmed(name, &self.offsets.stream, offset)
                .await
                .map_err(TransportError::from),
            _ => Ok(()),
        };
        if let Some(current) = self.current.take() {
            // unsubscribes and closes the consumer's connection
            current.close().await;
        }
        self.set_state(ConsumerState::Stopped, None);
        stored
    }
}

impl Drop for StreamConsumer {
    /// Dropped without closing (a crash): nothing more is stored.
    fn drop(&mut self) {
        if let Some(timer) = self.timer.take() {
            timer.abort();
        }
        self.set_state(ConsumerState::Stopped, None);
        if let Some(current) = self.current.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(current.close());
        }
    }
}
