//! Reading a stream: the consumer, its store timer, and the acker of each delivery.
//! Offsets are stored only for the contiguous prefix of settled deliveries
//! ([`OffsetCommits`]), on the timer, when a settle makes one due, and at close; never on
//! drop or connection loss.

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use futures::StreamExt;
use pubsub_core::{
    Acker, Consumer, Delivery, ErrorStreamEntry, Message, OffsetCommits, Settlement, StoreOffsets,
    TransportError,
};
use rabbitmq_stream_client::{Consumer as ClientConsumer, ConsumerHandle};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::convert;
use crate::transport::Shared;

/// What the consumer, its timer and its ackers share.
struct Offsets {
    shared: Arc<Shared>,
    /// The consumer name (the service); `None` for an anonymous reader.
    name: Option<String>,
    service: String,
    stream: String,
    commits: Mutex<OffsetCommits>,
}

impl Offsets {
    fn commits(&self) -> std::sync::MutexGuard<'_, OffsetCommits> {
        self.commits.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn store(&self, offset: Option<u64>) {
        let (Some(offset), Some(name)) = (offset, &self.name) else {
            return;
        };
        if let Err(error) = self
            .shared
            .admin
            .store_offset(name, &self.stream, offset)
            .await
        {
            // not fatal: a later store covers it; a restart reads a little more again
            tracing::warn!(stream = %self.stream, consumer = %name, offset, %error, "storing the offset failed");
        }
    }
}

pub(crate) struct StreamConsumer {
    inner: ClientConsumer,
    handle: Option<ConsumerHandle>,
    offsets: Arc<Offsets>,
    timer: Option<JoinHandle<()>>,
    cancelled: bool,
}

impl StreamConsumer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        inner: ClientConsumer,
        service: &str,
        stream: &str,
        store: StoreOffsets,
        first: u64,
    ) -> Self {
        let name = (store != StoreOffsets::Never).then(|| service.to_owned());
        let offsets = Arc::new(Offsets {
            shared,
            name,
            service: service.to_owned(),
            stream: stream.to_owned(),
            commits: Mutex::new(OffsetCommits::new(store, first)),
        });
        let timer = match store {
            StoreOffsets::Every { interval, .. } => {
                let offsets = Arc::clone(&offsets);
                let period = interval.max(std::time::Duration::from_millis(10));
                Some(tokio::spawn(async move {
                    let mut timer = tokio::time::interval(period);
                    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        timer.tick().await;
                        let due = offsets.commits().due(Instant::now());
                        offsets.store(due).await;
                    }
                }))
            }
            _ => None,
        };
        Self {
            handle: Some(inner.handle()),
            inner,
            offsets,
            timer,
            cancelled: false,
        }
    }
}

#[async_trait]
impl Consumer for StreamConsumer {
    /// Cancel-safe: the client's consumer is a channel receiver, and a message taken is
    /// admitted (or skipped) before this returns.
    async fn next(&mut self) -> Option<Result<Delivery, TransportError>> {
        loop {
            if self.cancelled {
                return None;
            }
            let next = tokio::select! {
                biased;
                () = self.offsets.shared.closed() => return None,
                next = self.inner.next() => next?,
            };
            let delivery = match next {
                Ok(delivery) => delivery,
                Err(error) => {
                    return Some(Err(TransportError::other(format!(
                        "reading {}: {error}",
                        self.offsets.stream
                    ))));
                }
            };
            let offset = delivery.offset();
            if !self.offsets.commits().admit(offset) {
                continue;
            }
            let message = Arc::new(convert::from_wire(
                delivery.message(),
                &self.offsets.stream,
                offset,
            ));
            let acker = Box::new(StreamAcker {
                offsets: Arc::clone(&self.offsets),
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
        let closing = self.offsets.commits().closing();
        let stored = match (closing, &self.offsets.name) {
            (Some(offset), Some(name)) => self
                .offsets
                .shared
                .admin
                .store_offset_confirmed(name, &self.offsets.stream, offset)
                .await
                .map_err(TransportError::from),
            _ => Ok(()),
        };
        if let Some(handle) = self.handle.take() {
            // unsubscribes and closes the consumer's connection
            let _ = handle.close().await;
        }
        stored
    }
}

impl Drop for StreamConsumer {
    /// Dropped without closing (a crash): nothing more is stored.
    fn drop(&mut self) {
        if let Some(timer) = self.timer.take() {
            timer.abort();
        }
        if let Some(handle) = self.handle.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = handle.close().await;
            });
        }
    }
}

/// Settles one stream delivery: the offset may advance once it is acked, or once its copy
/// is confirmed in the error stream. Dropped unsettled, it holds the offset back.
struct StreamAcker {
    offsets: Arc<Offsets>,
    offset: u64,
    message: Arc<Message>,
}

#[async_trait]
impl Acker for StreamAcker {
    async fn settle(self: Box<Self>, settlement: Settlement) -> Result<(), TransportError> {
        let o = &self.offsets;
        // the transport is closed: nothing settles, a restart reads it again
        o.shared.check_open()?;
        match settlement {
            Settlement::Ack => {}
            Settlement::DeadLetter(failed) => {
                let copy =
                    ErrorStreamEntry::copy_of(&self.message, &failed, &o.stream, self.offset);
                let errors = o.shared.config.naming.error_stream(&o.service);
                // confirmed, or the offset stays back and a restart reads it again
                o.shared
                    .publish_to(&o.service, &errors, &copy)
                    .await?
                    .await
                    .map_err(|error| TransportError::Settle {
                        message: format!(
                            "appending offset {} of {} to {errors}: {error}",
                            self.offset, o.stream
                        ),
                        source: Some(Arc::new(error)),
                    })?;
            }
            _ => {
                return Err(TransportError::Unsupported {
                    what: "requeue or delayed redelivery on a stream (the offset stays back; a restart reads it again)",
                    transport: "streams",
                });
            }
        }
        let due = o.commits().settled(self.offset, Instant::now());
        o.store(due).await;
        Ok(())
    }
}
