//! Publishing to queues: topic routing to every bound queue, once per queue, and
//! reject-publish when a queue is full.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::QueueBroker;
use super::queue::Queue;
use crate::metadata::Message;
use crate::transport::TransportError;

thread_local! {
    /// Reused routing buffer: publishing allocates nothing for the lookup.
    static ROUTE_SCRATCH: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl QueueBroker {
    /// Routes to every bound queue, once per queue.
    pub(super) fn route(&self, message: &Arc<Message>) -> Result<(), TransportError> {
        let topology = self.topology();
        let queues: Vec<&Arc<Queue>> = ROUTE_SCRATCH.with_borrow_mut(|matched| {
            topology.router.route_into(&message.metadata.key, matched);
            // bindings are deduplicated per (pattern, queue); one copy per queue
            let mut queues: Vec<&Arc<Queue>> = Vec::with_capacity(matched.len());
            for &index in matched.iter() {
                let queue = &topology.bindings[index].1;
                if !queues.iter().any(|q| Arc::ptr_eq(q, queue)) {
                    queues.push(queue);
                }
            }
            queues
        });
        if queues.is_empty() {
            return Err(self.refuse_unroutable(message));
        }
        push_all(message, queues)
    }

    pub(super) fn refuse_unroutable(&self, message: &Message) -> TransportError {
        self.unroutable.fetch_add(1, Ordering::Relaxed);
        TransportError::Unroutable {
            message_id: message.metadata.id.to_string(),
            key: message.metadata.key.clone(),
        }
    }
}

/// Pushes to each queue; like RabbitMQ with reject-publish, the queues with room keep
/// their copy and the publish is refused if any queue was full.
pub(super) fn push_all<'a>(
    message: &Arc<Message>,
    queues: impl IntoIterator<Item = &'a Arc<Queue>>,
) -> Result<(), TransportError> {
    let full: Vec<&str> = queues
        .into_iter()
        .filter(|queue| !queue.push(Arc::clone(message)))
        .map(|queue| queue.name.as_str())
        .collect();
    if full.is_empty() {
        Ok(())
    } else {
        Err(TransportError::Nacked {
            reason: format!("queue(s) {full:?} full (reject-publish)"),
        })
    }
}
