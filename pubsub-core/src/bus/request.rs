//! [`Bus::request`]: sends a request and awaits its typed reply.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use super::Bus;
use crate::error::Error;
use crate::event::Event;
use crate::publish::PublishOptions;
use crate::request::{DEFAULT_REQUEST_TIMEOUT, RequestError, wire};
use crate::transport::{Outgoing, TransportError};

/// A request about to be sent: set its [`timeout`](Self::timeout), then `.await` it for
/// the reply. Made by [`Bus::request`]; sends nothing until awaited.
///
/// ```
/// use std::time::Duration;
/// use pubsub::prelude::*;
///
/// #[derive(Debug, Clone, Serialize, Deserialize, Event)]
/// #[event(domain = "stock", action = "level_requested", reply = u32)]
/// struct StockLevel { sku: String }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let shop = Bus::publisher("shop", MemoryTransport::new());
/// let level = StockLevel { sku: "A-1".into() };
/// let asked = shop.request(&level).timeout(Duration::from_secs(1));
/// // nothing is bound to `stock.level_requested`: said at once, not after a second
/// let error = asked.await.unwrap_err();
/// assert!(matches!(error, RequestError::NoResponder { .. }));
/// # }
/// ```
#[must_use = "a request is sent only when it is awaited"]
#[derive(Debug)]
pub struct RequestCall<'a, R> {
    bus: &'a Bus,
    request: &'a R,
    timeout: Duration,
}

impl<'a, R: Event> RequestCall<'a, R> {
    pub(super) fn new(bus: &'a Bus, request: &'a R) -> Self {
        Self {
            bus,
            request,
            timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// How long to wait for the reply (default [`DEFAULT_REQUEST_TIMEOUT`]). The request
    /// carries the deadline, so that a responder does not start it once the caller gave
    /// up.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

// bounded by `Event` only, so that a request of a plain event reports the one error, at
// `Bus::request`'s `Request` bound
impl<'a, R: Event> IntoFuture for RequestCall<'a, R> {
    type Output = Result<R::Reply, RequestError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(send(self.bus, self.request, self.timeout))
    }
}

/// Sends `request` and waits at most `timeout` for its reply.
async fn send<R: Event>(
    bus: &Bus,
    request: &R,
    timeout: Duration,
) -> Result<R::Reply, RequestError> {
    let key = R::KEY;
    let not_sent = |error: Error| RequestError::NotSent {
        key: key.to_owned(),
        source: Box::new(error),
    };
    bus.check_open().map_err(not_sent)?;
    let publisher = &bus.inner.publisher;
    let mut message = publisher
        .message(request, PublishOptions::new())
        .map_err(not_sent)?;
    wire::set_deadline(&mut message.metadata, SystemTime::now() + timeout);
    let span = tracing::debug_span!("request", service = %publisher.service, %key, id = %message.metadata.id);
    let asked = publisher
        .transport
        .request(Outgoing::from(message), timeout);
    // bounded here too, whatever the transport does
    let reply =
        match tokio::time::timeout(timeout, tracing::Instrument::instrument(asked, span)).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(error)) => return Err(failed(key, timeout, error)),
            Err(_) => {
                return Err(RequestError::TimedOut {
                    key: key.to_owned(),
                    waited: timeout,
                });
            }
        };
    wire::read_reply(key, &reply)
}

/// What a transport's failure means to the caller.
fn failed(key: &str, timeout: Duration, error: TransportError) -> RequestError {
    let key = key.to_owned();
    match error {
        TransportError::Unroutable { .. } => RequestError::NoResponder { key },
        TransportError::TimedOut { after, .. } => RequestError::TimedOut {
            key,
            waited: after.min(timeout),
        },
        TransportError::Closed | TransportError::Unavailable { .. } => {
            RequestError::ConnectionLost { key, source: error }
        }
        other => RequestError::NotSent {
            key,
            source: Box::new(Error::from(other)),
        },
    }
}
