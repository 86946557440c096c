//! The broker's answers to the publishes of one confirm-mode channel: acked, nacked, or
//! returned as unroutable.
//!
//! One collector task per channel owns every pending confirm of it, because lapin
//! attaches a returned message to whichever confirmation completes next, not to its own
//! publish: the collector drains all the confirms that are ready before resolving any, and
//! matches each return to its publish by `message_id`.

use std::collections::HashSet;

use futures::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};
use lapin::PublisherConfirm;
use pubsub_core::transport::TransportError;
use tokio::sync::{mpsc, oneshot};

/// A publish whose confirm the collector waits for.
pub(crate) struct Pending {
    pub(crate) message_id: String,
    pub(crate) key: String,
    pub(crate) confirm: PublisherConfirm,
    pub(crate) answer: oneshot::Sender<Answer>,
}

/// What the collector tells the publish.
pub(crate) enum Answer {
    Done(Result<(), TransportError>),
    /// The channel went before the broker answered.
    Lost {
        error: lapin::Error,
    },
}

/// Starts the collector of one channel: hand it each publish's [`Pending`]. It ends once
/// the sender is dropped and every confirm handed to it is answered.
pub(crate) fn collector() -> mpsc::UnboundedSender<Pending> {
    let (pending, incoming) = mpsc::unbounded_channel();
    tokio::spawn(collect(incoming));
    pending
}

/// Resolves every pending publish of one channel (see the module docs).
async fn collect(mut incoming: mpsc::UnboundedReceiver<Pending>) {
    let mut waiting = FuturesUnordered::new();
    let mut returned: HashSet<String> = HashSet::new();
    let mut open = true;
    while open || !waiting.is_empty() {
        tokio::select! {
            next = incoming.recv(), if open => match next {
                Some(pending) => waiting.push(confirmed(pending)),
                None => open = false,
            },
            Some(first) = waiting.next(), if !waiting.is_empty() => {
                // everything the broker answered by now, before resolving any of it
                let mut ready = vec![first];
                while let Some(Some(more)) = waiting.next().now_or_never() {
                    ready.push(more);
                }
                for (_, _, result, _) in &ready {
                    if let Ok(lapin::Confirmation::Ack(Some(back)) | lapin::Confirmation::Nack(Some(back))) = result
                        && let Some(id) = back.delivery.properties.message_id()
                    {
                        returned.insert(id.as_str().to_owned());
                    }
                }
                for (message_id, key, result, answer) in ready {
                    let outcome = match result {
                        _ if returned.remove(&message_id) => Answer::Done(Err(TransportError::Unroutable { message_id, key })),
                        Ok(lapin::Confirmation::Ack(_) | lapin::Confirmation::NotRequested) => Answer::Done(Ok(())),
                        Ok(lapin::Confirmation::Nack(_)) => Answer::Done(Err(TransportError::Nacked {
                            reason: "the broker could not take the message (a full queue with reject-publish, an internal error)".into(),
                        })),
                        Err(error) => Answer::Lost { error },
                    };
                    let _ = answer.send(outcome);
                }
            }
        }
    }
}

type Confirmed = (
    String,
    String,
    Result<lapin::Confirmation, lapin::Error>,
    oneshot::Sender<Answer>,
);

async fn confirmed(pending: Pending) -> Confirmed {
    let result = pending.confirm.await;
    (pending.message_id, pending.key, result, pending.answer)
}
