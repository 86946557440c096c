//! [`ChannelSlot`]: the one channel (with what goes with it) that a publisher or a
//! requester uses at a time, opened on first use and again after it is lost.

use std::future::Future;
use std::sync::{Arc, Mutex};

use pubsub_core::transport::TransportError;

use crate::sync::lock;

/// What a slot holds: a channel that knows whether it is still usable.
pub(crate) trait Live {
    /// Whether it can still be used (its channel is open).
    fn live(&self) -> bool;
}

/// Holds the channel in use; one caller at a time opens the next (see the module docs).
#[derive(Debug)]
pub(crate) struct ChannelSlot<T> {
    current: Mutex<Option<Arc<T>>>,
    opening: tokio::sync::Mutex<()>,
}

impl<T: Live> ChannelSlot<T> {
    /// An empty slot.
    pub(crate) fn new() -> Self {
        Self {
            current: Mutex::new(None),
            opening: tokio::sync::Mutex::new(()),
        }
    }

    /// The channel in use, if it is still live.
    pub(crate) fn live(&self) -> Option<Arc<T>> {
        lock(&self.current).as_ref().filter(|c| c.live()).cloned()
    }

    /// The channel in use, or the one `open` makes when there is none live: callers that
    /// find none at the same time wait for the one opening.
    pub(crate) async fn get_or_open<F>(
        &self,
        open: impl FnOnce() -> F,
    ) -> Result<Arc<T>, TransportError>
    where
        F: Future<Output = Result<T, TransportError>>,
    {
        if let Some(current) = self.live() {
            return Ok(current);
        }
        let _opening = self.opening.lock().await;
        if let Some(current) = self.live() {
            return Ok(current);
        }
        let opened = Arc::new(open().await?);
        *lock(&self.current) = Some(Arc::clone(&opened));
        Ok(opened)
    }

    /// Empties the slot, handing back what it held.
    pub(crate) fn take(&self) -> Option<Arc<T>> {
        lock(&self.current).take()
    }
}
