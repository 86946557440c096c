//! Consuming a memory queue: the consumer and the acker of each delivery.

use std::pin::pin;
use std::sync::Arc;

use async_trait::async_trait;

use super::TopologyCell;
use super::queue::{Queue, Take};
use crate::memory::connection::Connection;
use crate::transport::TransportError;
use crate::transport::{Acker, Consumer, Delivery, Settlement};

pub(super) struct MemoryConsumer {
    pub(super) queue: Arc<Queue>,
    pub(super) id: u64,
    pub(super) connection: Arc<Connection>,
    /// A live subscription's queue goes with its consumer.
    pub(super) removes: Option<Arc<TopologyCell>>,
}

impl MemoryConsumer {
    /// `None` means "wait"; `Some(None)` means the consumer is done.
    fn delivery(&self, take: Take) -> Option<Option<Result<Delivery, TransportError>>> {
        match take {
            Take::Message {
                message,
                redelivered,
                deliveries,
                tag,
            } => {
                let acker = Box::new(MemoryAcker {
                    queue: Arc::clone(&self.queue),
                    tag: Some(tag),
                });
                let delivery =
                    Delivery::new(message, redelivered, acker).with_delivery_count(deliveries);
                Some(Some(Ok(delivery)))
            }
            Take::Cancelled => Some(None),
            Take::Wait => None,
        }
    }

    fn take(&self) -> Take {
        if self.connection.is_closed() {
            return Take::Cancelled;
        }
        self.queue.take(self.id)
    }
}

#[async_trait]
impl Consumer for MemoryConsumer {
    async fn next(&mut self) -> Option<Result<Delivery, TransportError>> {
        // Fast path without arming a notification; a `Wait` here flags us as waiting,
        // so every later change wakes us.
        if let Some(delivery) = self.delivery(self.take()) {
            return delivery;
        }
        loop {
            let mut changed = pin!(self.queue.changed.notified());
            changed.as_mut().enable();
            match self.delivery(self.take()) {
                Some(delivery) => return delivery,
                None => changed.await,
            }
        }
    }

    async fn cancel(&mut self) -> Result<(), TransportError> {
        self.queue.cancel(self.id);
        Ok(())
    }

    async fn close(self: Box<Self>) -> Result<(), TransportError> {
        // dropping removes the consumer and requeues what it left unsettled
        drop(self);
        Ok(())
    }
}

impl Drop for MemoryConsumer {
    fn drop(&mut self) {
        self.queue.remove_consumer(self.id);
        if let Some(topology) = &self.removes {
            topology.remove(&self.queue.name);
        }
    }
}

/// Settles one delivery; one dropped unsettled is requeued, as a closed channel would.
struct MemoryAcker {
    queue: Arc<Queue>,
    tag: Option<u64>,
}

#[async_trait]
impl Acker for MemoryAcker {
    async fn settle(mut self: Box<Self>, settlement: Settlement) -> Result<(), TransportError> {
        let Some(tag) = self.tag.take() else {
            return Err(TransportError::settle("delivery already settled"));
        };
        if self.queue.settle(tag, settlement) {
            Ok(())
        } else {
            Err(TransportError::settle(format!(
                "delivery {tag} on queue {} is unknown: its consumer went away and the message was requeued",
                self.queue.name
            )))
        }
    }
}

impl Drop for MemoryAcker {
    fn drop(&mut self) {
        if let Some(tag) = self.tag.take() {
            self.queue.settle(tag, Settlement::Requeue);
        }
    }
}
