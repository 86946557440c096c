//! Subscribing with the client: a consumer of the stream from an offset, with single
//! active consumer when the source asks for it, and closing it, bounded.

use std::time::Duration;

use pubsub_core::{stream::StoreOffsets, transport::StreamSource};
use rabbitmq_stream_client::error::ConsumerCreateError;
use rabbitmq_stream_client::types::OffsetSpecification;
use rabbitmq_stream_client::{Consumer as ClientConsumer, ConsumerHandle, FilterConfiguration};

use super::offsets::Offsets;
use crate::connection::bounded;
use crate::error::StreamsError;

/// Closing a subscription whose connection may be gone waits at most this long.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// A subscription of the client.
pub(super) struct Subscribed {
    pub(super) inner: ClientConsumer,
    handle: ConsumerHandle,
}

impl Subscribed {
    pub(super) async fn close(self) {
        let _ = tokio::time::timeout(CLOSE_WAIT, self.handle.close()).await;
    }
}

/// Subscribes to the stream at `start`. With single active consumer, the broker decides
/// when this instance reads, and it then starts after the offset stored by the instance
/// that was active, or at `start` without one.
pub(super) async fn subscribe(
    offsets: &Offsets,
    source: &StreamSource,
    start: OffsetSpecification,
) -> Result<Subscribed, StreamsError> {
    let session = &offsets.session;
    let stream = &offsets.stream;
    let service = &offsets.service;
    let environment = session.environment().await?;
    let builder = |filter: bool| {
        let mut builder = environment
            .consumer()
            .offset(start.clone())
            .client_provided_name(service);
        if filter && !source.only_keys.is_empty() {
            // the broker skips the chunks whose bloom filter holds none of the keys; the
            // consumer checks each message exactly. Unfiltered chunks (from other
            // clients) are read too, not to miss their messages. No post-filter: the
            // client numbers offsets after filtering, which would give wrong ones.
            let filter = FilterConfiguration::new(source.only_keys.clone(), true);
            builder = builder.filter_input(Some(filter));
        }
        if source.single_active && source.store != StoreOffsets::Never {
            // The client answers `Next` to the broker's activation unless told otherwise,
            // which would skip what came while this instance waited.
            let start = start.clone();
            builder = builder
                .name(service)
                .enable_single_active_consumer(true)
                .consumer_update(move |_active, context| {
                    let fallback = start.clone();
                    async move {
                        let stored = context
                            .client()
                            .query_offset(context.name(), &context.stream())
                            .await;
                        match stored {
                            Ok(stored) => OffsetSpecification::Offset(stored.wrapping_add(1)),
                            Err(_) => fallback,
                        }
                    }
                });
        }
        builder
    };
    let inner = bounded("build a consumer", session.config.timeout, async {
        let built = match builder(true).build(stream).await {
            Err(ConsumerCreateError::FilteringNotSupport) => {
                tracing::warn!(stream, "this RabbitMQ has no stream filtering (3.13+): reading every chunk, and checking each key on the client");
                builder(false).build(stream).await
            }
            other => other,
        };
        built.map_err(|e| StreamsError::client(format!("consume {stream} as {service}"), e))
    })
    .await?;
    Ok(Subscribed {
        handle: inner.handle(),
        inner,
    })
}
