//! Coming back: building the client's producer so that it reports its loss, and the
//! recovery task, which, once the producer is found lost, re-creates the stream if it is
//! missing, builds a new producer with capped, jittered backoff, and re-sends every
//! unconfirmed message under its own id, in order. Each message is sent at most
//! [`MAX_SENDS`] times.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use pubsub_core::{health::ConnectionState, transport::TransportError};
use rabbitmq_stream_client::error::ProducerCreateError;
use rabbitmq_stream_client::types::Message as WireMessage;
use rabbitmq_stream_client::{Dedup, Environment, OnClosed, Producer};

use super::state::{Inner, Lost, State};
use crate::config::StreamConfig;
use crate::connection::{Backoff, bounded};
use crate::convert;
use crate::error::StreamsError;
use crate::sync::lock;

/// How often one message is sent before its publish fails: the first send and the
/// re-sends after recoveries.
pub(super) const MAX_SENDS: u32 = 5;
/// Closing a producer whose connection may be gone waits at most this long.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Tells the producer its connection closed.
struct OnLost {
    lost: Arc<Lost>,
    generation: u64,
}

#[async_trait]
impl OnClosed for OnLost {
    async fn on_closed(&self, _unconfirmed: Vec<WireMessage>) {
        // the producer keeps its own unconfirmed messages, with their replies
        self.lost.report(self.generation);
    }
}

/// Builds the client's producer `name` on `stream`, generation `generation`, which
/// reports to `lost` when its connection closes.
pub(super) async fn build_producer(
    environment: &Environment,
    config: &StreamConfig,
    name: &str,
    stream: &str,
    lost: &Arc<Lost>,
    generation: u64,
) -> Result<Producer<Dedup>, StreamsError> {
    // `name` first: the client's `name` drops a filter value extractor set before it
    let builder = || {
        environment
            .producer()
            .name(name)
            .batch_size(config.frame_messages())
            .client_provided_name(name)
            .on_closed(Box::new(OnLost {
                lost: Arc::clone(lost),
                generation,
            }))
    };
    bounded("build a producer", config.timeout, async {
        let filtered = builder()
            .filter_value_extractor(convert::filter_value)
            .build(stream)
            .await;
        let built = match filtered {
            Err(ProducerCreateError::FilteringNotSupport) => {
                tracing::warn!(stream, "this RabbitMQ has no stream filtering (3.13+): publishing without filter values, so readers of one entity are sent every chunk");
                builder().build(stream).await
            }
            other => other,
        };
        built.map_err(|e| StreamsError::client(format!("build producer {name} on {stream}"), e))
    })
    .await
}

/// Closes `producer`, bounded: on a lost connection it cannot answer.
pub(super) async fn close_producer(producer: Producer<Dedup>) {
    let _ = tokio::time::timeout(CLOSE_WAIT, producer.close()).await;
}

/// The recovery task of one producer: ends when the producer is dropped or closed.
pub(super) async fn recovery(producer: Weak<Inner>, lost: Arc<Lost>) {
    loop {
        lost.wake.notified().await;
        let Some(inner) = producer.upgrade() else {
            return;
        };
        if inner.closed.load(Ordering::SeqCst) {
            return;
        }
        inner.recover().await;
    }
}

impl Inner {
    /// Builds a new producer once the current one is found lost, then re-sends what is
    /// unconfirmed. Holds the state meanwhile: new publishes wait (bounded).
    async fn recover(&self) {
        let mut state = self.state.lock().await;
        if self.lost.generation.load(Ordering::SeqCst) < state.generation
            || self.closed.load(Ordering::SeqCst)
        {
            // an older producer's news, or closing
            return;
        }
        self.recovering.store(true, Ordering::SeqCst);
        self.rebuild_and_resend(&mut state).await;
        self.recovering.store(false, Ordering::SeqCst);
        // what was queued meanwhile is in the re-sent messages, or after them
        self.flush_queue(&mut state).await;
    }

    /// [`recover`](Self::recover) under the state lock.
    async fn rebuild_and_resend(&self, state: &mut State) {
        tracing::warn!(producer = %self.name, stream = %self.stream, unconfirmed = lock(&self.unconfirmed).messages.len(), "producer lost; rebuilding it");
        self.set_health(ConnectionState::Down, None);
        if let Some(old) = state.producer.take() {
            close_producer(old).await;
        }
        let mut backoff = Backoff::new(&self.config);
        let generation = state.generation + 1;
        let mut closing = self.closing.subscribe();
        let producer = loop {
            let mark = self.admin.reconnects.mark();
            let rebuilt = tokio::select! {
                rebuilt = self.rebuild(generation) => rebuilt,
                _ = closing.wait_for(|closed| *closed) => return,
            };
            match rebuilt {
                Ok(producer) => {
                    self.admin.reconnects.connected();
                    break producer;
                }
                Err(error) => {
                    let wait = backoff.next_wait();
                    tracing::warn!(producer = %self.name, stream = %self.stream, error = %pubsub_core::Report::new(&error), ?wait, "rebuilding the producer failed; trying again");
                    self.note_error(&error.to_string());
                    tokio::select! {
                        () = self.admin.reconnects.wait(wait, mark) => {}
                        _ = closing.wait_for(|closed| *closed) => return,
                    }
                }
            }
        };
        state.generation = generation;
        state.producer = Some(producer);
        {
            let mut health = lock(&self.health);
            health.reconnects += 1;
        }
        self.set_health(ConnectionState::Up, None);
        self.resend_unconfirmed(state).await;
    }

    /// Re-creates the stream if it is gone, and builds the producer again.
    async fn rebuild(&self, generation: u64) -> Result<Producer<Dedup>, StreamsError> {
        self.admin.create_stream(&self.stream).await?;
        build_producer(
            &self.environment,
            &self.config,
            &self.name,
            &self.stream,
            &self.lost,
            generation,
        )
        .await
    }

    /// Queues every unconfirmed message again under its id, oldest first, and sends
    /// what fits; one sent [`MAX_SENDS`] times fails instead.
    async fn resend_unconfirmed(&self, state: &mut State) {
        let resent = {
            // the queue is in the unconfirmed messages: queued again here, in id order
            let mut queue = lock(&self.queue);
            let mut unconfirmed = lock(&self.unconfirmed);
            let worn: Vec<u64> = unconfirmed
                .messages
                .iter()
                .filter(|(_, m)| m.sends >= MAX_SENDS)
                .map(|(id, _)| *id)
                .collect();
            for id in worn {
                if let Some(reply) = unconfirmed.remove(id).and_then(|m| m.reply) {
                    let _ = reply.send(Err(TransportError::unavailable(format!(
                        "publishing id {id} on {} was sent {MAX_SENDS} times without a confirm",
                        self.stream
                    ))));
                }
            }
            let (wires, resent) = unconfirmed.requeue_all();
            queue.wires = wires.into();
            self.queued.store(queue.wires.len(), Ordering::SeqCst);
            resent
        };
        self.resent.fetch_add(resent, Ordering::Relaxed);
        if resent > 0 {
            tracing::info!(producer = %self.name, stream = %self.stream, count = resent, "re-sending unconfirmed messages under their ids");
        }
        self.flush_queue(state).await;
    }
}
