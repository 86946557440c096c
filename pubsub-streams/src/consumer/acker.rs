//! Settling one stream delivery: an ack lets its offset advance; a dead letter is first
//! appended to the service's error stream, confirmed. Unsettled, it holds the offset back.

use std::sync::Arc;

use async_trait::async_trait;
use pubsub_core::{
    Message,
    stream::ErrorStreamEntry,
    transport::{Acker, DeadLetter, Settlement, TransportError},
};

use super::offsets::Offsets;

/// Settles one stream delivery: the offset may advance once it is acked, or once its copy
/// is confirmed in the error stream. Dropped unsettled, it holds the offset back.
pub(super) struct StreamAcker {
    pub(super) offsets: Arc<Offsets>,
    /// The stream generation it came from.
    pub(super) generation: u64,
    pub(super) offset: u64,
    pub(super) message: Arc<Message>,
}

impl StreamAcker {
    /// Appends the failed delivery, with why, to the service's error stream: confirmed,
    /// or the offset stays back and a restart reads it again.
    async fn to_error_stream(&self, failed: &DeadLetter) -> Result<(), TransportError> {
        let o = &self.offsets;
        let copy = ErrorStreamEntry::copy_of(&self.message, failed, &o.stream, self.offset);
        let errors = o.session.config.naming.error_stream(&o.service);
        o.session
            .publish_to(&o.service, &errors, &copy)
            .await?
            .await
            .map_err(|error| TransportError::Settle {
                message: format!(
                    "appending offset {} of {} to {errors}",
                    self.offset, o.stream
                ),
                source: Some(Arc::new(error)),
            })?;
        Ok(())
    }
}

#[async_trait]
impl Acker for StreamAcker {
    async fn settle(self: Box<Self>, settlement: Settlement) -> Result<(), TransportError> {
        let o = &self.offsets;
        // the transport is closed: nothing settles, a restart reads it again
        o.session.check_open()?;
        match settlement {
            Settlement::Ack => {}
            // boxed: the rare path's state would make every settle's future larger
            Settlement::DeadLetter(failed) => Box::pin(self.to_error_stream(&failed)).await?,
            _ => {
                return Err(TransportError::Unsupported {
                    what: "requeue or delayed redelivery on a stream (the offset stays back; a restart reads it again)",
                    transport: "streams",
                });
            }
        }
        // storing is due every so many offsets: boxed like the error stream
        if let Some(due) = o.settled(self.generation, self.offset) {
            Box::pin(o.store(Some(due))).await;
        }
        Ok(())
    }
}
