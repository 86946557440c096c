//! One in-memory broker: a queue broker and a stream broker, as one RabbitMQ node has
//! both, and the record of what was published to either.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::connection::Connection;
use super::queues::QueueBroker;
use super::signal::BrokerSignal;
use super::streams::StreamBroker;
use super::sync::lock;
use crate::metadata::Message;
use crate::stream::{Retention, StreamNaming};
use crate::transport::{Consumer, Destination, Source, Subscription, TransportError};

/// Which of the two brokers a transport reaches, as the RabbitMQ transports do: the queues
/// (topic publishes go to the queues bound to their key, as on the AMQP transport), or the
/// streams (topic publishes are appended to the stream of their key, as on the RabbitMQ
/// Streams transport). Like those transports, each refuses what the other broker has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Topics {
    Queues,
    Streams,
}

pub(super) struct Broker {
    pub(super) queues: QueueBroker,
    pub(super) streams: StreamBroker,
    pub(super) topics: Topics,
    pub(super) signal: Arc<BrokerSignal>,
    recording: AtomicBool,
    published: Mutex<Vec<Message>>,
}

impl Broker {
    pub(super) fn new(
        topics: Topics,
        max_length: Option<usize>,
        naming: StreamNaming,
        retention: Retention,
    ) -> Self {
        let signal = Arc::new(BrokerSignal::default());
        Self {
            queues: QueueBroker::new(Arc::clone(&signal), max_length),
            streams: StreamBroker::new(naming, retention, Arc::clone(&signal)),
            topics,
            signal,
            recording: AtomicBool::new(false),
            published: Mutex::default(),
        }
    }

    /// Delivers a published message to the broker its destination names.
    pub(super) fn publish(
        &self,
        message: Message,
        destination: Destination,
    ) -> Result<(), TransportError> {
        if self.recording.load(Ordering::Relaxed) {
            lock(&self.published).push(message.clone());
        }
        let message = Arc::new(message);
        match self.topics {
            Topics::Streams => self.streams.append(message, destination),
            Topics::Queues => self.queues.publish(&message, destination),
        }
    }

    /// Declares what a subscription reads, on the broker that has it.
    /// A live subscription's queue is made by its consumer alone, and goes with it.
    pub(super) fn declare(&self, subscription: &Subscription) -> Result<(), TransportError> {
        if matches!(subscription.source, Source::Live(_)) {
            return Ok(());
        }
        match self.topics {
            Topics::Streams => self.streams.declare_subscription(subscription),
            Topics::Queues => self.queues.declare(subscription).map(drop),
        }
    }

    /// Opens a consumer of what a subscription reads, on `connection`.
    pub(super) fn consume(
        &self,
        subscription: &Subscription,
        connection: &Arc<Connection>,
    ) -> Result<Box<dyn Consumer>, TransportError> {
        match self.topics {
            Topics::Streams => self.streams.consume(subscription, connection),
            Topics::Queues => self.queues.consume(subscription, connection),
        }
    }

    /// Starts keeping a copy of every published message.
    pub(super) fn record_published(&self) {
        self.recording.store(true, Ordering::SeqCst);
    }

    /// Every message published since recording started, in order.
    pub(super) fn published(&self) -> Vec<Message> {
        lock(&self.published).clone()
    }

    /// Whether nothing is in flight in either broker.
    pub(super) fn is_idle(&self) -> bool {
        self.streams.is_idle() && self.queues.is_idle()
    }
}
