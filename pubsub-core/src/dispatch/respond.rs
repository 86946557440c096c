//! Answering requests: a delivery with a `reply_to` gets the reply of the handler that
//! answered, or the error of the one that failed. A request is never dead-lettered nor
//! delivered again later, and is not started once its caller gave up.

use std::time::{Duration, SystemTime};

use smallvec::SmallVec;

use super::{Dispatcher, HandlerOutcome, Outcome};
use crate::handler_error::HandlerErrorKind;
use crate::metadata::Message;
use crate::request::wire;
use crate::transport::{Destination, Outgoing, Settlement};

/// `Some` for a request (a `reply_to` is set): the deadline it carries, if any.
pub(super) fn request_deadline(message: &Message) -> Option<Option<SystemTime>> {
    message
        .metadata
        .reply_to
        .as_ref()
        .map(|_| wire::deadline(&message.metadata))
}

/// Whether waiting `wait` more would end past `deadline`.
pub(super) fn past(deadline: Option<SystemTime>, wait: Duration) -> bool {
    deadline.is_some_and(|deadline| SystemTime::now() + wait >= deadline)
}

impl Dispatcher {
    /// A request whose caller already gave up: acked without running a handler.
    pub(super) fn expired(&self, message: &Message) -> Option<Outcome> {
        message.metadata.reply_to.as_ref()?;
        let late = wire::overdue(&message.metadata)?;
        let (id, key) = (&message.metadata.id, &message.metadata.key);
        tracing::warn!(%id, %key, late_by = ?late, "not starting this request: its caller gave up (its deadline passed)");
        self.counters.request_expired();
        Some(Outcome::Settle(Settlement::Ack))
    }

    /// Sends the request's answer to `reply_to` and acks it: the first handler's reply,
    /// else the first failure (its message and kind), else nothing (no handler here
    /// answers it).
    pub(super) async fn respond(
        &self,
        message: &Message,
        reply_to: &str,
        outcomes: SmallVec<[(usize, HandlerOutcome); 2]>,
    ) -> Outcome {
        let (id, key) = (&message.metadata.id, &message.metadata.key);
        let mut reply = None;
        let mut failure = None;
        for (index, outcome) in outcomes {
            match outcome {
                HandlerOutcome::Abandoned => return Outcome::Abandoned,
                HandlerOutcome::Succeeded(Some(body)) if reply.is_none() => reply = Some(body),
                HandlerOutcome::Succeeded(_) => {}
                HandlerOutcome::Failed { error, attempts }
                | HandlerOutcome::Later {
                    error, attempts, ..
                } => {
                    let handler = &*self.handlers[index].name;
                    // a permanent failure is the handler's answer ("no such user"): the
                    // caller gets it; anything else (an error after retries, a panic, a
                    // timeout) is worth a warning here too
                    if error.kind() == HandlerErrorKind::Permanent {
                        tracing::info!(%id, %key, handler, %error, "request refused; the caller gets the error");
                    } else {
                        tracing::warn!(%id, %key, handler, attempts, %error, "request handler failed; the caller gets the error (a request is not dead-lettered)");
                    }
                    failure.get_or_insert(error);
                }
            }
        }
        let service = &self.publisher.service;
        let answer = match (reply, failure) {
            (Some(body), _) => wire::ok_reply(message, service, body),
            (None, Some(error)) => wire::error_reply(message, service, &error),
            (None, None) => {
                tracing::debug!(%id, %key, "no handler of this bus answers this request");
                return Outcome::Settle(Settlement::Ack);
            }
        };
        let outgoing = Outgoing::new(answer, Destination::Reply(reply_to.to_owned()));
        let sent = match self.publisher.transport.send(outgoing).await {
            Ok(confirmation) => confirmation.await,
            Err(error) => Err(error),
        };
        if let Err(error) = sent {
            tracing::warn!(%id, %key, %error, "the reply could not be sent; the caller will time out");
        }
        Outcome::Settle(Settlement::Ack)
    }
}
