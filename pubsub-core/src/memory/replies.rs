//! The reply address of one connection (direct reply-to): the requests it waits for,
//! matched to their replies by correlation id. Closing the connection fails them all at
//! once.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::oneshot;

use super::sync::lock;
use crate::metadata::Message;
use crate::transport::TransportError;

/// The requests one connection waits for, at its own reply address.
#[derive(Debug)]
pub(super) struct ReplyInbox {
    pub(super) address: String,
    /// By correlation id; `None` once the connection closed.
    pending: Mutex<Option<HashMap<String, oneshot::Sender<Message>>>>,
}

impl Default for ReplyInbox {
    fn default() -> Self {
        Self {
            address: format!("memory.reply-to.{}", uuid::Uuid::now_v7().simple()),
            pending: Mutex::new(Some(HashMap::new())),
        }
    }
}

impl ReplyInbox {
    /// Waits for the reply correlated by `correlation_id`.
    pub(super) fn wait(
        &self,
        correlation_id: &str,
    ) -> Result<oneshot::Receiver<Message>, TransportError> {
        let mut pending = lock(&self.pending);
        let Some(pending) = pending.as_mut() else {
            return Err(TransportError::Closed);
        };
        if pending.contains_key(correlation_id) {
            return Err(TransportError::other(format!(
                "a request with correlation id {correlation_id:?} already waits for its reply on this connection"
            )));
        }
        let (sender, receiver) = oneshot::channel();
        pending.insert(correlation_id.to_owned(), sender);
        Ok(receiver)
    }

    /// Stops waiting for `correlation_id` (its request gave up or failed).
    pub(super) fn forget(&self, correlation_id: &str) {
        if let Some(pending) = lock(&self.pending).as_mut() {
            pending.remove(correlation_id);
        }
    }

    /// Hands `reply` to the request it answers; `false` if none waits for it (a second
    /// reply, or one after the caller gave up).
    pub(super) fn deliver(&self, reply: Message) -> bool {
        let Some(correlation_id) = reply.metadata.correlation_id.as_deref() else {
            return false;
        };
        let waiter = lock(&self.pending)
            .as_mut()
            .and_then(|pending| pending.remove(correlation_id));
        waiter.is_some_and(|waiter| waiter.send(reply).is_ok())
    }

    /// The connection closed: every waiting request fails now.
    pub(super) fn close(&self) {
        lock(&self.pending).take();
    }
}
