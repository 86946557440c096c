//! What a bus consumes: its service queue, or the streams its handlers need.

use crate::transport::MergedConsumer;
use crate::transport::TransportError;
use crate::transport::{Consumer, Subscription, Transport};

/// What a bus consumes, declared when it was built.
#[derive(Debug, Clone)]
pub(crate) enum Intake {
    /// One subscription: the service queue (or its dead-letter queue).
    Queue(Subscription),
    /// One stream subscription per stream the handlers need, read as one.
    Streams(Vec<Subscription>),
}

impl Intake {
    /// How many deliveries the bus handles at once.
    pub(crate) fn prefetch(&self) -> u16 {
        match self {
            Self::Queue(subscription) => subscription.prefetch,
            Self::Streams(streams) => streams.first().map_or(1, |s| s.prefetch),
        }
    }

    /// Declares every subscription.
    pub(crate) async fn declare(&self, transport: &dyn Transport) -> Result<(), TransportError> {
        for subscription in self.subscriptions() {
            transport.declare(subscription).await?;
        }
        Ok(())
    }

    /// Starts consuming: one consumer, or one over every stream.
    pub(crate) async fn consume(
        &self,
        transport: &dyn Transport,
    ) -> Result<Box<dyn Consumer>, TransportError> {
        match self {
            Self::Queue(subscription) => transport.consume(subscription).await,
            Self::Streams(streams) => {
                let mut consumers = Vec::with_capacity(streams.len());
                for subscription in streams {
                    match transport.consume(subscription).await {
                        Ok(consumer) => consumers.push(consumer),
                        Err(error) => {
                            for consumer in consumers {
                                let _ = consumer.close().await;
                            }
                            return Err(error);
                        }
                    }
                }
                Ok(MergedConsumer::of(consumers))
            }
        }
    }

    /// The subscriptions, in order.
    pub(crate) fn subscriptions(&self) -> &[Subscription] {
        match self {
            Self::Queue(subscription) => std::slice::from_ref(subscription),
            Self::Streams(streams) => streams,
        }
    }
}
