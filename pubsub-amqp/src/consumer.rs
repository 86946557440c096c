//! Consuming a queue on a channel of the consuming connection; each delivery carries an
//! [`AmqpAcker`](crate::acker::AmqpAcker) that settles it (see `acker.rs`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::Channel;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use pubsub_core::{
    health::{ConsumerHealth, ConsumerState, Settlements},
    transport::{Consumer, Delivery, Subscription, TransportError},
};
use tokio::sync::{mpsc, watch};

use crate::acker::AmqpAcker;
use crate::config::AmqpConfig;
use crate::convert;
use crate::error::AmqpError;
use crate::link::Link;
use crate::publisher::Publisher;
use crate::sync::lock;
use crate::topology;

/// How long cancelling waits for the consuming task to stop forwarding, and closing for
/// it to end: neither may hang a bus's shutdown on a channel that stopped answering.
const STOP_WAIT: Duration = Duration::from_secs(10);
/// How long the broker has to answer a `basic.cancel`.
const CANCEL_WAIT: Duration = Duration::from_secs(5);

/// A consumer of one queue. A task of its own keeps it consuming: after its channel or its
/// connection is lost it waits for the link's next connection, declares the topology again
/// and consumes again, so deliveries resume with nothing asked of the bus.
pub(crate) struct AmqpConsumer {
    deliveries: mpsc::Receiver<Delivery>,
    mode: watch::Sender<Mode>,
    /// Whether the task still forwards deliveries (false once cancelled or stopped).
    forwarding: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// What the bus asked of the consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Consume,
    /// Stop new deliveries; keep the channel, so held deliveries can be settled.
    Cancel,
    /// Close the channel: the broker requeues whatever is unsettled.
    Close,
}

/// What the consuming task needs.
struct Source {
    link: Arc<Link>,
    config: AmqpConfig,
    subscription: Subscription,
    publisher: Arc<Publisher>,
    health: Arc<Mutex<ConsumerHealth>>,
    settlements: Settlements,
}

/// A consuming channel, the connection generation it is on, and its liveness: the
/// ackers of its deliveries hold receivers, and the sender is dropped once the channel
/// is gone (lost, or closed), which fails their settlements at once.
struct Open {
    channel: Channel,
    consumer: lapin::Consumer,
    generation: u64,
    alive: watch::Sender<()>,
}

impl AmqpConsumer {
    /// Starts consuming `subscription` on `link`; fails if the first attempt to declare and
    /// consume fails (a queue declared before with other arguments, say).
    pub(crate) async fn start(
        link: Arc<Link>,
        config: &AmqpConfig,
        subscription: &Subscription,
        publisher: Arc<Publisher>,
        health: Arc<Mutex<ConsumerHealth>>,
        settlements: Settlements,
    ) -> Result<Self, TransportError> {
        let source = Source {
            link,
            config: config.clone(),
            subscription: subscription.clone(),
            publisher,
            health,
            settlements,
        };
        let (connection, generation) = source.link.connection(None).await?;
        let first = source.open(&connection, generation).await?;
        let (tx, deliveries) = mpsc::channel(usize::from(subscription.prefetch.max(1)));
        let (mode, modes) = watch::channel(Mode::Consume);
        let (forwarding_tx, forwarding) = watch::channel(true);
        let task = tokio::spawn(source.run(first, tx, modes, forwarding_tx));
        Ok(Self {
            deliveries,
            mode,
            forwarding,
            task,
        })
    }
}

impl Source {
    /// Declares the topology and consumes on a new channel of `connection` (of
    /// `generation`).
    async fn open(
        &self,
        connection: &lapin::Connection,
        generation: u64,
    ) -> Result<Open, AmqpError> {
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| AmqpError::channel("opening a consuming channel", e))?;
        let queue = topology::declare(&channel, &self.config, &self.subscription).await?;
        channel
            .basic_qos(
                self.subscription.prefetch.max(1),
                BasicQosOptions::default(),
            )
            .await
            .map_err(|e| AmqpError::channel("setting the prefetch", e))?;
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                format!("pubsub {}", self.subscription.service).into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| AmqpError::channel("starting to consume", e))?;
        Ok(Open {
            channel,
            consumer,
            generation,
            alive: watch::Sender::new(()),
        })
    }

    /// Forwards deliveries; after a loss, consumes again on the next connection.
    async fn run(
        self,
        first: Open,
        tx: mpsc::Sender<Delivery>,
        mut modes: watch::Receiver<Mode>,
        forwarding: watch::Sender<bool>,
    ) {
        let mut current = Some(first);
        let mut backoff = self.config.initial_backoff;
        // the channel to keep open after a cancel, so held deliveries can still settle
        let kept = loop {
            let open = match current.take() {
                Some(open) => open,
                None => match self.reopen(&mut modes, &mut backoff).await {
                    Some(open) => open,
                    None => break None,
                },
            };
            self.transition(ConsumerState::Running, None);
            backoff = self.config.initial_backoff;
            let Open {
                channel,
                consumer,
                generation,
                alive,
            } = open;
            match self
                .forward(&channel, consumer, generation, &alive, &tx, &mut modes)
                .await
            {
                // dropping `alive` fails the settlements under way on the channel
                Ended::Lost(error) => self.transition(ConsumerState::Recovering, Some(error)),
                Ended::Cancelled => break Some((channel, alive)),
                Ended::Closed => {
                    close(&channel).await;
                    break None;
                }
            }
        };
        // `next` ends once the buffered deliveries are taken
        drop(tx);
        forwarding.send_replace(false);
        self.transition(ConsumerState::Stopped, None);
        if let Some((channel, alive)) = kept {
            let _ = modes.wait_for(|m| *m == Mode::Close).await;
            close(&channel).await;
            drop(alive);
        }
    }

    /// Waits for a connection and consumes on it, with backoff between failures; `None`
    /// when the bus closes the consumer or the link closes.
    async fn reopen(
        &self,
        modes: &mut watch::Receiver<Mode>,
        backoff: &mut Duration,
    ) -> Option<Open> {
        loop {
            if *modes.borrow() != Mode::Consume {
                return None;
            }
            let mark = self.link.reconnects().mark();
            let attempt = async {
                let (connection, generation) = self.link.connection(None).await?;
                Ok::<_, TransportError>(self.open(&connection, generation).await?)
            };
            let result = tokio::select! {
                result = attempt => result,
                _ = modes.changed() => continue,
            };
            match result {
                Ok(open) => {
                    lock(&self.health).resumed += 1;
                    tracing::info!(service = %self.subscription.service, "consumer resumed");
                    return Some(open);
                }
                Err(TransportError::Closed) => return None,
                Err(error) => {
                    tracing::warn!(service = %self.subscription.service, error = %pubsub_core::Report::new(&error), "resuming the consumer failed; trying again");
                    lock(&self.health).last_error = Some(error.to_string());
                    let pause = crate::connection::jittered(*backoff);
                    *backoff = (*backoff * 2).min(self.config.max_backoff);
                    tokio::select! {
                        () = self.link.reconnects().wait(pause, mark) => {}
                        _ = modes.changed() => {}
                    }
                }
            }
        }
    }

    /// Forwards deliveries until the consumer's stream ends or the bus changes the mode.
    async fn forward(
        &self,
        channel: &Channel,
        mut consumer: lapin::Consumer,
        generation: u64,
        alive: &watch::Sender<()>,
        tx: &mpsc::Sender<Delivery>,
        modes: &mut watch::Receiver<Mode>,
    ) -> Ended {
        let mut sending: Option<Delivery> = None;
        loop {
            if let Some(delivery) = sending.take() {
                tokio::select! {
                    sent = tx.send(delivery) => if sent.is_err() { return Ended::Closed },
                    _ = modes.changed() => {
                        let mode = *modes.borrow();
                        return self.stop_mode(channel, &consumer, mode).await;
                    }
                }
                continue;
            }
            tokio::select! {
                next = consumer.next() => match next {
                    Some(Ok(delivery)) => sending = Some(self.delivery(delivery, generation, alive)),
                    Some(Err(error)) => return Ended::Lost(error.to_string()),
                    None => return Ended::Lost("the broker cancelled the consumer (its queue deleted?)".to_owned()),
                },
                _ = modes.changed() => {
                        let mode = *modes.borrow();
                        return self.stop_mode(channel, &consumer, mode).await;
                    }
            }
        }
    }

    async fn stop_mode(&self, channel: &Channel, consumer: &lapin::Consumer, mode: Mode) -> Ended {
        match mode {
            Mode::Consume => Ended::Lost("unexpected mode change".to_owned()),
            Mode::Cancel => {
                let cancel = channel.basic_cancel(consumer.tag(), BasicCancelOptions::default());
                match tokio::time::timeout(CANCEL_WAIT, cancel).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        tracing::debug!(error = %pubsub_core::Report::new(&error), "cancelling the consumer")
                    }
                    // the channel stopped answering: closing it (as `run` does for
                    // `Closed`) stops the deliveries too
                    Err(_) => {
                        tracing::warn!(wait = ?CANCEL_WAIT, "the broker did not answer the consumer's cancel; closing its channel");
                        return Ended::Closed;
                    }
                }
                Ended::Cancelled
            }
            Mode::Close => Ended::Closed,
        }
    }

    fn transition(&self, state: ConsumerState, error: Option<String>) {
        let mut health = lock(&self.health);
        if health.transition(state, error) != state {
            let service = &self.subscription.service;
            match state {
                ConsumerState::Recovering => {
                    tracing::warn!(%service, error = health.last_error.as_deref().unwrap_or(""), "consumer lost its channel; it resumes once the connection is back")
                }
                ConsumerState::Running => tracing::debug!(%service, "consumer running"),
                _ => tracing::debug!(%service, ?state, "consumer state"),
            }
        }
    }

    fn delivery(
        &self,
        delivery: lapin::message::Delivery,
        generation: u64,
        alive: &watch::Sender<()>,
    ) -> Delivery {
        let via_topic = delivery.exchange.as_str() == self.config.exchange;
        // quorum queues count earlier deliveries in x-delivery-count
        let earlier = delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("x-delivery-count").and_then(count));
        let message = Arc::new(convert::message(
            delivery.routing_key.as_str(),
            via_topic,
            &delivery.properties,
            delivery.data,
        ));
        let service = &self.subscription.service;
        let acker = Box::new(AmqpAcker {
            acker: delivery.acker,
            message: Arc::clone(&message),
            service: service.clone(),
            dead_letter_exchange: topology::dead_letter_exchange(service),
            publisher: Arc::clone(&self.publisher),
            link: Arc::clone(&self.link),
            generation,
            alive: alive.subscribe(),
            settlements: self.settlements.clone(),
        });
        let core = Delivery::new(message, delivery.redelivered, acker);
        match earlier {
            Some(n) => core.with_delivery_count(n.saturating_add(1)),
            None => core,
        }
    }
}

/// Why forwarding stopped.
enum Ended {
    Lost(String),
    Cancelled,
    Closed,
}

async fn close(channel: &Channel) {
    if channel.status().connected() {
        let close = channel.close(200, "consumer closed".into());
        crate::connection::close_bounded(close, "consuming channel").await;
    }
}

fn count(value: &AMQPValue) -> Option<u32> {
    match value {
        AMQPValue::LongLongInt(n) => u32::try_from(*n).ok(),
        AMQPValue::LongInt(n) => u32::try_from(*n).ok(),
        AMQPValue::LongUInt(n) => Some(*n),
        AMQPValue::ShortInt(n) => u32::try_from(*n).ok(),
        AMQPValue::ShortUInt(n) => Some((*n).into()),
        _ => None,
    }
}

#[async_trait]
impl Consumer for AmqpConsumer {
    async fn next(&mut self) -> Option<Result<Delivery, TransportError>> {
        self.deliveries.recv().await.map(Ok)
    }

    async fn cancel(&mut self) -> Result<(), TransportError> {
        self.mode.send_replace(Mode::Cancel);
        // once this returns the broker delivers nothing more to this consumer
        let stopped = self.forwarding.wait_for(|forwarding| !forwarding);
        match tokio::time::timeout(STOP_WAIT, stopped).await {
            Ok(_) => Ok(()),
            Err(_) => Err(TransportError::TimedOut {
                operation: "cancelling the consumer",
                after: STOP_WAIT,
            }),
        }
    }

    async fn close(mut self: Box<Self>) -> Result<(), TransportError> {
        // unsettled deliveries go back to the queue with the channel
        self.mode.send_replace(Mode::Close);
        self.deliveries.close();
        while self.deliveries.try_recv().is_ok() {}
        let task = &mut self.task;
        match tokio::time::timeout(STOP_WAIT, &mut *task).await {
            Ok(ended) => {
                ended.map_err(|e| TransportError::other(format!("the consuming task failed: {e}")))
            }
            Err(_) => {
                // its channel goes with its connection when the transport closes
                task.abort();
                Err(TransportError::TimedOut {
                    operation: "closing the consumer",
                    after: STOP_WAIT,
                })
            }
        }
    }
}

impl Drop for AmqpConsumer {
    /// Dropped without `close` (an event stream dropped by its reader): its task closes
    /// the channel, and a live subscription's auto-delete queue goes with it.
    fn drop(&mut self) {
        self.mode.send_replace(Mode::Close);
    }
}
