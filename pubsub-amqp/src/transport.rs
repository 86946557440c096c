//! [`AmqpTransport`]: the `Transport` of RabbitMQ queues.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use lapin::options::BasicGetOptions;
use pubsub_core::{
    Message,
    health::{ConsumerHealth, ConsumerState, Settlements, TransportHealth},
    transport::{
        Capabilities, Confirmation, Consumer, DeadLetteredMessage, DelayedRedelivery, Outgoing,
        Reconnects, Source, Subscription, Transport, TransportError, UseCount,
    },
};
use tokio::sync::OnceCell;

use crate::config::{AmqpConfig, QueueType};
use crate::consumer::AmqpConsumer;
use crate::convert;
use crate::error::AmqpError;
use crate::link::Link;
use crate::publisher::Publisher;
use crate::requester::Requester;
use crate::stale_bindings;
use crate::sync::lock;
use crate::topology;

/// RabbitMQ over AMQP 0-9-1: a publishing connection and a consuming connection (a broker
/// alarm blocks the first only), opened on first use.
///
/// ```no_run
/// use pubsub_amqp::AmqpTransport;
/// use pubsub_core::Bus; // `pubsub::Bus` through the facade
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let bus = Bus::builder()
///     .service("billing")
///     .transport(AmqpTransport::from_env()?)
///     .build()
///     .await?;
/// # let _ = bus;
/// # Ok(())
/// # }
/// ```
///
/// Recovers on its own (see the crate docs). Requests go over direct reply-to
/// ([`Transport::request`]).
#[derive(Debug, Clone)]
pub struct AmqpTransport {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: AmqpConfig,
    publishing: OnceCell<Arc<Publisher>>,
    /// Requests, on a channel of the publishing connection.
    requester: Requester,
    consuming: OnceCell<Arc<Link>>,
    /// The consumers started, with their settlements under way, for health; stopped ones
    /// are dropped when no longer held.
    consumers: Mutex<Vec<(Arc<Mutex<ConsumerHealth>>, Settlements)>>,
    /// The service queues whose stale bindings were looked for (once each).
    bindings_checked: Mutex<HashSet<String>>,
    closed: AtomicBool,
    /// The buses using this transport (its clones included): the last one closed closes it.
    buses: UseCount,
    /// The reconnect waits of both connections: one back ends the other's.
    reconnects: Reconnects,
}

impl AmqpTransport {
    /// A transport for the broker `config` describes; connects on first use.
    pub fn new(config: AmqpConfig) -> Self {
        let authority = &config.uri().authority;
        let reconnects = Reconnects::new(authority.host.clone(), authority.port);
        Self {
            inner: Arc::new(Inner {
                reconnects,
                requester: Requester::new(&config.exchange),
                config,
                publishing: OnceCell::new(),
                consuming: OnceCell::new(),
                consumers: Mutex::default(),
                bindings_checked: Mutex::default(),
                closed: AtomicBool::new(false),
                buses: UseCount::new(),
            }),
        }
    }

    /// A transport configured from the environment ([`AmqpConfig::from_env`]).
    pub fn from_env() -> Result<Self, AmqpError> {
        AmqpConfig::from_env().map(Self::new)
    }

    /// Its configuration.
    pub fn config(&self) -> &AmqpConfig {
        &self.inner.config
    }

    fn check_open(&self) -> Result<(), TransportError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            Err(TransportError::Closed)
        } else {
            Ok(())
        }
    }

    async fn publisher(&self) -> Result<&Arc<Publisher>, TransportError> {
        self.check_open()?;
        let config = &self.inner.config;
        let publisher = self
            .inner
            .publishing
            .get_or_try_init(|| async {
                let link = Link::open(config, "publisher", self.inner.reconnects.clone()).await?;
                Ok::<_, AmqpError>(Arc::new(Publisher::new(link, config)))
            })
            .await?;
        Ok(publisher)
    }

    async fn consuming(&self) -> Result<&Arc<Link>, TransportError> {
        self.check_open()?;
        let config = &self.inner.config;
        Ok(self
            .inner
            .consuming
            .get_or_try_init(|| async {
                Link::open(config, "consumer", self.inner.reconnects.clone())
                    .await
                    .map(Arc::new)
            })
            .await?)
    }

    /// How many publishes were written again because their channel or connection was lost
    /// before the broker confirmed them (each may be a duplicate on the broker).
    pub fn resent_publishes(&self) -> u64 {
        self.inner.publishing.get().map_or(0, |p| p.resent())
    }

    async fn declare_queue(&self, subscription: &Subscription) -> Result<String, TransportError> {
        let (connection, _) = self.consuming().await?.connection(None).await?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| AmqpError::channel("opening a channel to declare", e))?;
        let queue = topology::declare(&channel, &self.inner.config, subscription).await;
        if let Err(error) = channel.close(200, "declared".into()).await {
            tracing::debug!(error = %pubsub_core::Report::new(&error), "closing the declaring channel");
        }
        Ok(queue?)
    }

    /// The first time a service queue is declared: removes its bindings from the events
    /// exchange that none of the subscription's patterns asks for (see `stale_bindings`).
    /// A dead-letter subscription, which binds nothing, removes nothing.
    async fn remove_stale_bindings(&self, subscription: &Subscription) {
        let Source::Queue(queue) = &subscription.source else {
            return;
        };
        if !lock(&self.inner.bindings_checked).insert(subscription.service.clone()) {
            return;
        }
        stale_bindings::remove(&self.inner.config, &subscription.service, &queue.patterns).await;
    }
}

#[async_trait]
impl Transport for AmqpTransport {
    fn name(&self) -> &'static str {
        "amqp"
    }

    fn capabilities(&self) -> Capabilities {
        let mut capabilities = Capabilities::queue();
        capabilities.delayed_redelivery = DelayedRedelivery::Durable;
        capabilities.delivery_count =
            matches!(self.inner.config.queue_type, QueueType::Quorum { .. });
        capabilities.request_reply = true;
        capabilities
    }

    /// Over direct reply-to, on a channel of the publishing connection: the request is
    /// published `mandatory` (nothing bound to its key: [`TransportError::Unroutable`] at
    /// once) with `reply_to` set to `amq.rabbitmq.reply-to` and an `expiration` of the time
    /// left, and its reply is matched by correlation id. When that channel or the
    /// connection is lost, every request waiting on it fails at once; the next request
    /// opens a new one. A request that expires unconsumed in a queue is dead-lettered by
    /// the broker (reason `expired`) to the service's dead-letter queue.
    async fn request(
        &self,
        request: Outgoing,
        timeout: Duration,
    ) -> Result<Message, TransportError> {
        let publisher = self.publisher().await?;
        self.inner
            .requester
            .request(publisher.link(), request, timeout)
            .await
    }

    fn dropped_replies(&self) -> Option<u64> {
        Some(self.inner.requester.dropped())
    }

    async fn send(&self, outgoing: Outgoing) -> Result<Confirmation, TransportError> {
        self.publisher().await?.send(outgoing).await
    }

    /// Declares the topology; the first time for a service queue, also removes the
    /// bindings from the events exchange that none of its patterns asks for any more
    /// ([`AmqpConfig::remove_stale_bindings`]).
    async fn declare(&self, subscription: &Subscription) -> Result<(), TransportError> {
        // a live subscription's exclusive queue is declared by its consumer, on its connection
        if matches!(subscription.source, Source::Live(_)) {
            return Ok(());
        }
        self.declare_queue(subscription).await?;
        self.remove_stale_bindings(subscription).await;
        Ok(())
    }

    async fn consume(
        &self,
        subscription: &Subscription,
    ) -> Result<Box<dyn Consumer>, TransportError> {
        let publisher = Arc::clone(self.publisher().await?);
        let link = Arc::clone(self.consuming().await?);
        let source = match &subscription.source {
            Source::DeadLetters => topology::dead_letter_queue(&subscription.service),
            Source::Live(live) => live.queue.clone(),
            _ => subscription.service.clone(),
        };
        let health = Arc::new(Mutex::new(ConsumerHealth::new(
            source,
            ConsumerState::Running,
        )));
        let settlements = Settlements::default();
        let consumer = AmqpConsumer::start(
            link,
            &self.inner.config,
            subscription,
            publisher,
            Arc::clone(&health),
            settlements.clone(),
        )
        .await?;
        self.remove_stale_bindings(subscription).await;
        let mut consumers = lock(&self.inner.consumers);
        forget_closed(&mut consumers);
        consumers.push((health, settlements));
        Ok(Box::new(consumer))
    }

    fn health(&self) -> TransportHealth {
        let mut health = TransportHealth::new(self.name());
        if let Some(publisher) = self.inner.publishing.get() {
            health.connections.push(publisher.link().health());
        }
        if let Some(link) = self.inner.consuming.get() {
            health.connections.push(link.health());
        }
        // a consumer its bus closed is no longer reported: other buses may share the transport
        let mut consumers = lock(&self.inner.consumers);
        forget_closed(&mut consumers);
        health.consumers = consumers
            .iter()
            .map(|(c, settlements)| {
                let mut health = lock(c).clone();
                settlements.report(&mut health);
                health
            })
            .collect();
        health
    }

    /// Reads the dead-letter queue with `basic.get` and gives every message back by
    /// closing the channel, so they stay (the broker flags them as redelivered).
    async fn dead_letters(
        &self,
        service: &str,
    ) -> Result<Vec<DeadLetteredMessage>, TransportError> {
        let (connection, _) = self.consuming().await?.connection(None).await?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| AmqpError::channel("opening a channel to read dead letters", e))?;
        let queue = topology::dead_letter_queue(service);
        let mut messages = Vec::new();
        loop {
            let got = channel
                .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
                .await
                .map_err(|e| AmqpError::channel("reading the dead-letter queue", e))?;
            let Some(got) = got else { break };
            let d = got.delivery;
            let message = convert::message(d.routing_key.as_str(), false, &d.properties, d.data);
            messages.push(DeadLetteredMessage::new(message, service));
        }
        // closing the channel gives back every message it held
        if let Err(error) = channel.close(200, "peeked".into()).await {
            tracing::debug!(error = %pubsub_core::Report::new(&error), "closing the dead-letter channel");
        }
        Ok(messages)
    }

    fn attach(&self) {
        self.inner.buses.attach();
    }

    fn detach(&self) -> bool {
        self.inner.buses.detach()
    }

    async fn close(&self) -> Result<(), TransportError> {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.inner.requester.close().await;
        if let Some(publisher) = self.inner.publishing.get() {
            publisher.close().await;
        }
        if let Some(link) = self.inner.consuming.get() {
            link.close().await;
        }
        Ok(())
    }
}

/// Drops the health of the consumers that were closed (stopped, and held by nothing else).
fn forget_closed(consumers: &mut Vec<(Arc<Mutex<ConsumerHealth>>, Settlements)>) {
    consumers.retain(|(c, _)| Arc::strong_count(c) > 1 || lock(c).state != ConsumerState::Stopped);
}
