//! Reading a memory stream: the consumer, its store timer, and the acker of each delivery.

use std::pin::pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;

use super::log::{Log, Read};
use crate::memory::connection::Connection;
use crate::stream::ErrorStreamEntry;
use crate::transport::TransportError;
use crate::transport::{Acker, Consumer, Delivery, Settlement, StoreOffsets};

pub(super) struct MemoryStreamConsumer {
    pub(super) log: Arc<Log>,
    /// The service's error stream, where failed deliveries go; `None` for an anonymous
    /// reader (it only acks).
    pub(super) errors: Option<Arc<Log>>,
    pub(super) id: u64,
    pub(super) connection: Arc<Connection>,
    /// Set once detached (closed cleanly).
    pub(super) detached: bool,
}

impl MemoryStreamConsumer {
    /// Starts the timer that stores the committable offset every `interval`.
    pub(super) fn start_store_timer(&self, store: StoreOffsets) {
        let StoreOffsets::Every { interval, .. } = store else {
            return;
        };
        let log: Weak<Log> = Arc::downgrade(&self.log);
        let id = self.id;
        let period = interval.max(Duration::from_millis(1));
        tokio::spawn(async move {
            let mut timer = tokio::time::interval(period);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                timer.tick().await;
                match log.upgrade() {
                    Some(log) if log.tick(id) => {}
                    _ => break,
                }
            }
        });
    }

    /// `None` means "wait"; `Some(None)` means the consumer is done.
    fn delivery(&self) -> Option<Option<Result<Delivery, TransportError>>> {
        if self.connection.is_closed() {
            return Some(None);
        }
        match self.log.read(self.id) {
            Read::Message { message, offset } => {
                let acker = Box::new(MemoryStreamAcker {
                    log: Arc::clone(&self.log),
                    errors: self.errors.clone(),
                    reader: self.id,
                    offset,
                    message: Arc::clone(&message),
                });
                Some(Some(Ok(
                    Delivery::new(message, false, acker).with_offset(offset)
                )))
            }
            Read::Wait => None,
            Read::Cancelled => Some(None),
        }
    }
}

#[async_trait]
impl Consumer for MemoryStreamConsumer {
    async fn next(&mut self) -> Option<Result<Delivery, TransportError>> {
        loop {
            let mut changed = pin!(self.log.changed.notified());
            changed.as_mut().enable();
            match self.delivery() {
                Some(delivery) => return delivery,
                None => changed.await,
            }
        }
    }

    async fn cancel(&mut self) -> Result<(), TransportError> {
        self.log.cancel(self.id);
        Ok(())
    }

    /// Stores the offset of the contiguous prefix settled, and leaves: a waiting single
    /// active consumer of the same name takes over from there.
    async fn close(mut self: Box<Self>) -> Result<(), TransportError> {
        self.detached = true;
        self.log.detach(self.id, true);
        Ok(())
    }
}

impl Drop for MemoryStreamConsumer {
    /// Dropped without closing (a crash): nothing more is stored.
    fn drop(&mut self) {
        if !self.detached {
            self.log.detach(self.id, false);
        }
    }
}

/// Settles one stream delivery: the offset may advance once it is acked, or once its copy
/// is in the error stream. Dropped unsettled, it holds the offset back, so that a restart
/// reads it again.
struct MemoryStreamAcker {
    log: Arc<Log>,
    errors: Option<Arc<Log>>,
    reader: u64,
    offset: u64,
    message: Arc<crate::metadata::Message>,
}

#[async_trait]
impl Acker for MemoryStreamAcker {
    async fn settle(self: Box<Self>, settlement: Settlement) -> Result<(), TransportError> {
        match settlement {
            Settlement::Ack => {}
            Settlement::DeadLetter(failed) => {
                let Some(errors) = &self.errors else {
                    return Err(TransportError::Unsupported {
                        what: "dead letters from an anonymous reader (it has no error stream)",
                        transport: "memory-streams",
                    });
                };
                let copy =
                    ErrorStreamEntry::copy_of(&self.message, &failed, &self.log.name, self.offset);
                errors.append(Arc::new(copy));
            }
            Settlement::Requeue | Settlement::Retry(_) => {
                return Err(TransportError::Unsupported {
                    what: "requeue or delayed redelivery on a stream (the offset stays back; a restart reads it again)",
                    transport: "memory-streams",
                });
            }
        }
        self.log.settled(self.reader, self.offset)
    }
}
