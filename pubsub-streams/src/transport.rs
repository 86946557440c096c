//! [`StreamTransport`]: the `Transport` over RabbitMQ Streams.

use std::sync::Arc;

use async_trait::async_trait;
use pubsub_core::{
    Message,
    health::{ConsumerHealth, ConsumerState, TransportHealth},
    stream::{StartAt, StoreOffsets, StreamNaming},
    transport::{
        Capabilities, Confirmation, Consumer, DeadLetteredMessage, Destination, MergedConsumer,
        Outgoing, Source, StreamSource, Subscription, Transport, TransportError,
    },
};
use rabbitmq_stream_client::types::OffsetSpecification;

use crate::config::StreamConfig;
use crate::consumer::StreamConsumer;
use crate::error::StreamsError;
use crate::publisher::{self, NamedProducer};
use crate::session::Session;
use crate::sync::lock;

/// The `Transport` over RabbitMQ Streams (stream protocol, port 5552).
///
/// - Events go to the stream of their domain ([`StreamConfig::naming`]), created on first
///   use with the configured retention, through a de-duplicating producer named
///   `{service}@{stream}` (the service is the message's `app_id`). Publishing ids start
///   at 1 and resume from the broker's last one + 1; each confirmation is awaited at most
///   [`StreamConfig::timeout`].
/// - A bus reads each stream with a consumer named after its service, whose offset is
///   kept on the broker and stored only for the contiguous prefix of settled deliveries.
/// - A dead-lettered delivery is appended to the service's error stream
///   (`events.errors.{service}`), confirmed, before its offset may advance.
///
/// - Producers and consumers come back by themselves, with capped, jittered backoff,
///   after a lost connection or a deleted stream (re-created with its retention):
///   unconfirmed messages are sent again under their ids, consumers resume after the
///   last offset they handed out. [`Transport::health`] shows each producer and consumer.
/// - Single active consumer ([`StreamConsumption`](pubsub_core::stream::StreamConsumption)) resumes
///   from the offset the previous instance stored; super streams
///   ([`StreamNaming::super_stream`]) are created on the broker with their partitions,
///   each partition read with its own offset.
///
/// ```no_run
/// use pubsub_streams::{StreamConfig, StreamTransport};
/// # async fn run() -> Result<(), pubsub_streams::StreamsError> {
/// let transport = StreamTransport::new(StreamConfig::from_env()?);
/// # let _ = transport;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct StreamTransport {
    session: Arc<Session>,
}

impl std::fmt::Debug for StreamTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamTransport")
            .field("config", &self.session.config)
            .finish_non_exhaustive()
    }
}

/// A de-duplicating producer of this transport, for code that needs the publishing ids
/// (re-sending a batch after an outage: the broker drops the ids it has, and confirms
/// them all the same). See [`StreamTransport::producer`].
#[derive(Clone)]
pub struct StreamProducer {
    inner: Arc<NamedProducer>,
}

impl std::fmt::Debug for StreamProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamProducer(..)")
    }
}

impl StreamProducer {
    /// Sends `message` with the next publishing id, like a publish.
    ///
    /// # Errors
    /// As [`Transport::send`].
    pub async fn send(&self, message: &Message) -> Result<Confirmation, TransportError> {
        self.inner.check_size(message)?;
        self.inner.send(message).await
    }

    /// Sends `message` with publishing id `id` (at least 1). An id the broker already has
    /// for this producer is confirmed and dropped. An id at or past
    /// [`next_id`](Self::next_id) moves the next one past it, so that a later
    /// [`send`](Self::send) does not take it. A second send with an id still unconfirmed is
    /// refused: the client cannot tell their confirms apart.
    ///
    /// # Errors
    /// As [`Transport::send`].
    pub async fn send_with_id(
        &self,
        message: &Message,
        id: u64,
    ) -> Result<Confirmation, TransportError> {
        self.inner.check_size(message)?;
        self.inner.resend(message, id).await
    }

    /// The publishing id the next [`send`](Self::send) uses.
    pub async fn next_id(&self) -> u64 {
        self.inner.next_id().await
    }
}

impl StreamTransport {
    /// A transport for `config`; connects on first use.
    pub fn new(config: StreamConfig) -> Self {
        Self {
            session: Arc::new(Session::new(config)),
        }
    }

    /// A transport configured from the environment ([`StreamConfig::from_env`]).
    ///
    /// # Errors
    /// A bad configuration.
    pub fn from_env() -> Result<Self, StreamsError> {
        Ok(Self::new(StreamConfig::from_env()?))
    }

    /// Its configuration.
    pub fn config(&self) -> &StreamConfig {
        &self.session.config
    }

    /// The producer of `service` on `stream` (built, and the stream created, if needed).
    ///
    /// # Errors
    /// The broker cannot be reached, or refused.
    pub async fn producer(
        &self,
        service: &str,
        stream: &str,
    ) -> Result<StreamProducer, StreamsError> {
        let inner = self.session.producer(service, stream).await?;
        Ok(StreamProducer { inner })
    }

    /// Every message now in `stream`, with its offset, oldest first.
    ///
    /// # Errors
    /// The broker cannot be reached, or the stream does not exist.
    pub async fn read_all(&self, stream: &str) -> Result<Vec<(u64, Message)>, StreamsError> {
        self.session.check_open()?;
        self.session
            .read_to_end(stream, OffsetSpecification::First)
            .await
    }

    /// The offset of the last message of `stream`, `None` when it holds none: where a
    /// consumer that has handled everything stands (with [`stored_offset`](Self::stored_offset),
    /// how far behind it is). It reads the stream's last chunk and waits briefly for an
    /// empty stream's silence, as the protocol has no "end of stream" answer.
    ///
    /// # Errors
    /// The broker cannot be reached, or the stream does not exist.
    pub async fn last_offset(&self, stream: &str) -> Result<Option<u64>, StreamsError> {
        self.session.check_open()?;
        self.session.last_offset(stream).await
    }

    /// How many publishes were sent again, under their publishing ids, after a producer
    /// lost its connection or its stream (the broker drops those it already had).
    pub fn resent_publishes(&self) -> u64 {
        self.session.producers.resent()
    }

    /// The streams this transport created (or found existing) so far, sorted.
    pub async fn streams_created(&self) -> Vec<String> {
        let mut streams: Vec<String> = self.session.created.lock().await.iter().cloned().collect();
        streams.sort();
        streams
    }

    /// The offset consumer `consumer` (a service name) stored on `stream`; `None` if it
    /// stored none.
    ///
    /// # Errors
    /// The broker cannot be reached, or the stream does not exist.
    pub async fn stored_offset(
        &self,
        consumer: &str,
        stream: &str,
    ) -> Result<Option<u64>, StreamsError> {
        self.session.admin.stored_offset(consumer, stream).await
    }

    /// Makes consumer `consumer` (a service) read `stream` from offset `next` when it next
    /// starts (`0`: replay all the stream holds), whatever it had stored: an operator's
    /// offset reset. It stores `next - 1` as the consumer's offset on the broker (RabbitMQ
    /// cannot forget a stored offset; for `0`, `u64::MAX`, which the consumer reads as
    /// "before offset 0") and waits until the broker reads it back. A consumer reading now
    /// goes on where it is and may store its own offset over this one: stop it first.
    ///
    /// # Errors
    /// The broker cannot be reached, or refused.
    pub async fn reset_offset(
        &self,
        stream: &str,
        consumer: &str,
        next: u64,
    ) -> Result<(), StreamsError> {
        self.session
            .admin
            .store_offset_confirmed(consumer, stream, next.wrapping_sub(1))
            .await
    }

    /// Deletes `stream` (one that does not exist is fine), a super stream with its
    /// partitions: for tests and tooling.
    ///
    /// # Errors
    /// The broker cannot be reached, or refused.
    pub async fn delete_stream(&self, stream: &str) -> Result<(), StreamsError> {
        self.session.created.lock().await.remove(stream);
        match self.session.config.naming.partitions(stream) {
            Some(_) => self.session.admin.delete_super_stream(stream).await,
            None => self.session.admin.delete_stream(stream).await,
        }
    }

    fn stream_source(subscription: &Subscription) -> Result<&StreamSource, TransportError> {
        match &subscription.source {
            Source::Stream(source) => Ok(source),
            _ => Err(TransportError::Unsupported {
                what: "queues (subscribe to a stream)",
                transport: "streams",
            }),
        }
    }

    /// The streams a subscription reads: the stream, or a super stream's partitions.
    fn streams_of(&self, source: &StreamSource) -> Result<Vec<String>, TransportError> {
        match (
            source.super_stream,
            self.session.config.naming.partitions(&source.stream),
        ) {
            (false, _) => Ok(vec![source.stream.clone()]),
            (true, Some(partitions)) if !partitions.is_empty() => Ok(partitions),
            (true, _) => Err(TransportError::topology(format!(
                "stream {} is not a super stream (StreamNaming::super_stream makes it one)",
                source.stream
            ))),
        }
    }
}

#[async_trait]
impl Transport for StreamTransport {
    fn name(&self) -> &'static str {
        "streams"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::stream()
    }

    fn stream_naming(&self) -> Option<StreamNaming> {
        Some(self.session.config.naming.clone())
    }

    async fn send(&self, outgoing: Outgoing) -> Result<Confirmation, TransportError> {
        self.session.check_open()?;
        let naming = &self.session.config.naming;
        let message = &outgoing.message;
        let (stream, partition_key) = match outgoing.destination {
            Destination::Topic => (naming.stream_of_key(&message.metadata.key), None),
            Destination::Stream {
                stream,
                partition_key,
            } => (stream, partition_key),
            _ => {
                return Err(TransportError::Unsupported {
                    what: "this destination (queues and replies are not streams)",
                    transport: "streams",
                });
            }
        };
        if naming.partitions(&stream).is_some() {
            // the super stream with its exchange and bindings, before its first publish
            Box::pin(self.session.ensure_stream(&stream)).await?;
        }
        let stream = naming.publish_target(stream, partition_key, &message.metadata)?;
        publisher::check_size(&self.session.config, &stream, message)?;
        let service = message.metadata.app_id.as_deref().unwrap_or("pubsub");
        self.session.publish_to(service, &stream, message).await
    }

    async fn declare(&self, subscription: &Subscription) -> Result<(), TransportError> {
        let session = &self.session;
        session.check_open()?;
        let source = Self::stream_source(subscription)?;
        let service = &subscription.service;
        session.ensure_stream(&source.stream).await?;
        if source.store != StoreOffsets::Never {
            // an anonymous reader (`Bus::subscribe`) only reads: it dead-letters nothing,
            // so it creates no error stream
            let errors = session.config.naming.error_stream(service);
            session.ensure_stream(&errors).await?;
        }
        let fix_next = source.store != StoreOffsets::Never && source.start == StartAt::Next;
        if !fix_next {
            return Ok(());
        }
        for stream in self.streams_of(source)? {
            if session
                .admin
                .stored_offset(service, &stream)
                .await?
                .is_none()
            {
                // "next" as of now, kept on the broker as the consumer's offset so that
                // any connection resumes there: the offset before the stream's end, or for
                // an empty stream u64::MAX, which the consumer reads as "before 0"
                let next = session
                    .last_offset(&stream)
                    .await?
                    .map_or(0, |last| last + 1);
                session
                    .admin
                    .store_offset_confirmed(service, &stream, next.wrapping_sub(1))
                    .await?;
            }
        }
        Ok(())
    }

    /// One consumer per stream read (each partition of a super stream, merged), each
    /// coming back on its own after a lost connection or a deleted stream.
    async fn consume(
        &self,
        subscription: &Subscription,
    ) -> Result<Box<dyn Consumer>, TransportError> {
        self.declare(subscription).await?;
        let source = Self::stream_source(subscription)?;
        let service = &subscription.service;
        let mut consumers: Vec<Box<dyn Consumer>> = Vec::new();
        for stream in self.streams_of(source)? {
            let health = Arc::new(std::sync::Mutex::new(ConsumerHealth::new(
                format!("{service}@{stream}"),
                ConsumerState::Running,
            )));
            let consumer = StreamConsumer::open(
                Arc::clone(&self.session),
                service,
                &stream,
                source,
                Arc::clone(&health),
            )
            .await?;
            let mut healths = lock(&self.session.consumers);
            // a consumer dropped by everyone else is gone (subscriptions come and go)
            healths.retain(|c| Arc::strong_count(c) > 1);
            healths.push(health);
            consumers.push(Box::new(consumer));
        }
        Ok(MergedConsumer::of(consumers))
    }

    /// Each producer as a connection, each stream consumer as a consumer.
    fn health(&self) -> TransportHealth {
        let mut health = TransportHealth::new(self.name());
        health.connections = self.session.producers.health();
        let mut consumers = lock(&self.session.consumers);
        // a consumer dropped by everyone else is gone
        consumers.retain(|c| Arc::strong_count(c) > 1);
        health.consumers = consumers.iter().map(|c| lock(c).clone()).collect();
        health
    }

    async fn dead_letters(
        &self,
        service: &str,
    ) -> Result<Vec<DeadLetteredMessage>, TransportError> {
        let errors = self.session.config.naming.error_stream(service);
        let read = self.read_all(&errors).await?;
        Ok(read
            .into_iter()
            .map(|(_, message)| DeadLetteredMessage::new(message, &errors))
            .collect())
    }

    fn attach(&self) {
        self.session.buses.attach();
    }

    fn detach(&self) -> bool {
        self.session.buses.detach()
    }

    async fn close(&self) -> Result<(), TransportError> {
        self.session.close().await;
        Ok(())
    }
}
