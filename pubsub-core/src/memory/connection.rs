//! One connection to the in-memory broker: closing it ends what was opened on it, as
//! RabbitMQ does when a client's connection goes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::queues::queue::Queue;
use super::replies::ReplyInbox;
use super::streams::log::Log;
use super::sync::lock;
use crate::transport::{TransportError, UseCount};

/// One connection to the in-memory broker, shared by the queue broker and the stream
/// broker: consumers of queues and readers of streams are opened on it alike.
#[derive(Debug, Default)]
pub(crate) struct Connection {
    closed: AtomicBool,
    /// The consumers opened on it: closing the connection ends them, as the broker does,
    /// requeueing what they left unsettled.
    consumers: Mutex<Vec<(Arc<Queue>, u64)>>,
    /// The stream readers opened on it: closing the connection detaches them, storing
    /// nothing more.
    readers: Mutex<Vec<(Arc<Log>, u64)>>,
    /// The buses using it: the last one closed closes it.
    pub(super) buses: UseCount,
    /// Its reply address and the requests waiting there.
    pub(super) inbox: Arc<ReplyInbox>,
}

impl Connection {
    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// `Closed` once the connection is closed.
    pub(super) fn check_open(&self) -> Result<(), TransportError> {
        if self.is_closed() {
            Err(TransportError::Closed)
        } else {
            Ok(())
        }
    }

    /// Notes a consumer opened on it, forgetting those gone meanwhile (a subscription
    /// opened and dropped per WebSocket would otherwise pile up here).
    pub(super) fn opened_consumer(&self, queue: &Arc<Queue>, id: u64) {
        let mut consumers = lock(&self.consumers);
        consumers.retain(|(queue, id)| queue.has_consumer(*id));
        consumers.push((Arc::clone(queue), id));
    }

    /// Notes a stream reader opened on it, forgetting those gone meanwhile.
    pub(super) fn opened_reader(&self, log: &Arc<Log>, id: u64) {
        let mut readers = lock(&self.readers);
        readers.retain(|(log, id)| log.has_reader(*id));
        readers.push((Arc::clone(log), id));
    }

    /// Closes the connection (once): its consumers end (woken to see it), their unsettled
    /// deliveries go back to their queues and settling those later fails; its stream
    /// readers leave without storing, as on a lost connection; its requests waiting for a
    /// reply fail at once.
    pub(super) fn close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.inbox.close();
        let consumers = std::mem::take(&mut *lock(&self.consumers));
        for (queue, id) in consumers {
            queue.remove_consumer(id);
        }
        let readers = std::mem::take(&mut *lock(&self.readers));
        for (log, id) in readers {
            log.detach(id, false);
        }
    }
}
