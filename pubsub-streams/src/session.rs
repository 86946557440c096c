//! [`Session`]: one transport's session with the broker, held by the transport's facade
//! and by each of its consumers: its connections (the client's environment, made on first
//! use, and the admin connection), its producers, the streams it created, the health of
//! its consumers, and whether it is closed. It knows neither the facade nor the consumers.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use pubsub_core::{
    Message,
    health::ConsumerHealth,
    transport::{Confirmation, TransportError, UseCount},
};
use rabbitmq_stream_client::Environment;
use tokio::sync::OnceCell;

use crate::config::StreamConfig;
use crate::connection::{self, Admin};
use crate::error::StreamsError;
use crate::publisher::{NamedProducer, Producers};

/// One transport's session with the broker; see the [module](self).
pub(crate) struct Session {
    pub(crate) config: StreamConfig,
    pub(crate) admin: Arc<Admin>,
    environment: OnceCell<Environment>,
    pub(crate) producers: Producers,
    /// The consumers started, for health; stopped ones are dropped when no longer held.
    pub(crate) consumers: std::sync::Mutex<Vec<Arc<std::sync::Mutex<ConsumerHealth>>>>,
    /// Streams created (or found) by this transport.
    pub(crate) created: tokio::sync::Mutex<HashSet<String>>,
    closed: AtomicBool,
    /// Turns true when the transport closes: consumers end at once.
    closing: tokio::sync::watch::Sender<bool>,
    /// The buses using the transport (its clones included): the last one closed closes it.
    pub(crate) buses: UseCount,
}

impl Session {
    /// A session for `config`; connects on first use.
    pub(crate) fn new(config: StreamConfig) -> Self {
        Self {
            admin: Arc::new(Admin::new(config.clone())),
            consumers: std::sync::Mutex::default(),
            config,
            environment: OnceCell::new(),
            producers: Producers::default(),
            created: tokio::sync::Mutex::new(HashSet::new()),
            closed: AtomicBool::new(false),
            closing: tokio::sync::watch::Sender::new(false),
            buses: UseCount::new(),
        }
    }

    /// Closes the session once: consumers end at once, then the producers and the admin
    /// connection close.
    pub(crate) async fn close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.closing.send_replace(true);
        self.producers.close().await;
        self.admin.close().await;
    }

    /// Resolves once the transport is closed.
    pub(crate) async fn closed(&self) {
        let mut closing = self.closing.subscribe();
        let _ = closing.wait_for(|closed| *closed).await;
    }

    /// [`StreamsError::Closed`] once the transport is closed.
    pub(crate) fn check_open(&self) -> Result<(), StreamsError> {
        if self.closed.load(Ordering::SeqCst) {
            Err(StreamsError::Closed)
        } else {
            Ok(())
        }
    }

    /// The client's environment, made on first use.
    pub(crate) async fn environment(&self) -> Result<&Environment, StreamsError> {
        self.environment
            .get_or_try_init(|| connection::environment(&self.config, &self.admin.reconnects))
            .await
    }

    /// Creates `stream` with retention unless this transport already did; a super
    /// stream with its partitions.
    pub(crate) async fn ensure_stream(&self, stream: &str) -> Result<(), StreamsError> {
        let mut created = self.created.lock().await;
        if !created.contains(stream) {
            match self.config.naming.partitions(stream) {
                Some(partitions) => self.admin.create_super_stream(stream, &partitions).await?,
                None => self.admin.create_stream(stream).await?,
            }
            created.insert(stream.to_owned());
        }
        Ok(())
    }

    /// The producer of `service` on `stream`, built (the stream created) on first use.
    pub(crate) async fn producer(
        &self,
        service: &str,
        stream: &str,
    ) -> Result<Arc<NamedProducer>, StreamsError> {
        self.check_open()?;
        if let Some(producer) = self.producers.get(service, stream) {
            return Ok(producer);
        }
        // boxed: building is rare, and would make every publish's future larger
        Box::pin(self.producers.get_or_build(service, stream, || async {
            let name = self.config.producer_name(service, stream);
            self.ensure_stream(stream).await?;
            let environment = self.environment().await?;
            NamedProducer::build(
                environment,
                Arc::clone(&self.admin),
                &self.config,
                &name,
                stream,
            )
            .await
        }))
        .await
    }

    /// Appends `message` to `stream` with the producer of `service`.
    pub(crate) async fn publish_to(
        &self,
        service: &str,
        stream: &str,
        message: &Message,
    ) -> Result<Confirmation, TransportError> {
        self.producer(service, stream).await?.send(message).await
    }
}
