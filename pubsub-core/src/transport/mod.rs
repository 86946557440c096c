//! The [`Transport`] contract: how a bus reaches a broker (AMQP queues, RabbitMQ Streams, or
//! memory).
//!
//! A transport moves messages and settles deliveries. It knows nothing about handlers: the
//! bus subscribes with a [`Subscription`] (a service queue bound to patterns, or a stream
//! read by a named consumer), takes [`Delivery`]s from the [`Consumer`], and settles each
//! one once every handler has finished. What a transport can do (requeue, per-message ack
//! or offset commit, delayed redelivery, request/reply) it states in its [`Capabilities`],
//! which the bus reads instead of guessing.
//!
//! **Recovery belongs to the transport.** A transport that loses its connection reconnects
//! in a task it owns, re-declares what it declared and resumes its consumers;
//! [`Consumer::next`] only waits for what that task hands it. A consumer that is gone for
//! good ends with `None` or [`TransportError::Closed`].

mod capabilities;
mod connect;
mod dead_letter;
mod delivery;
mod error;
mod merged;
mod offsets;
mod outgoing;
mod reconnect;
pub(crate) mod subscription;
mod use_count;

use std::time::Duration;

use async_trait::async_trait;

pub use capabilities::{Capabilities, DelayedRedelivery, SettlementModel};
pub use connect::{ConnectFailure, Peer, identify_peer};
pub use dead_letter::DeadLetteredMessage;
pub use delivery::{Acker, DeadLetter, Delivery, Retry, Settlement};
pub use error::{BoxedSource, TransportError};
pub use merged::MergedConsumer;
pub use offsets::{OffsetCommits, OffsetTracker};
pub use outgoing::{Confirmation, Destination, Outgoing};
pub use reconnect::{PROBE_EVERY, Reconnects};
pub use subscription::{
    LIVE_QUEUE_MAX_LENGTH, LiveSource, QueueSource, Source, StreamSource, Subscription,
};
pub use use_count::UseCount;
// Service authors choose these when reading streams: their public home is `stream`.
pub(crate) use subscription::{StartAt, StoreOffsets};

/// The body of a [`Message`]: cheap to clone and to slice.
pub use bytes::Bytes;

use crate::health::TransportHealth;
use crate::metadata::Message;
use crate::stream::StreamNaming;

/// A broker connection as the bus uses it.
///
/// Implementations must be cheap to share (`Arc<dyn Transport>`); one transport serves the
/// publisher and every consumer of a bus, and may be shared by several buses.
///
/// # Shared by several buses
///
/// A transport is shared in two ways that must behave alike: its clones (the memory, AMQP
/// and Streams transports are `Clone` over one inner `Arc`, so clones are one transport),
/// and one `Arc<dyn Transport>` (the `impl Transport for Arc<T>` forwards every method).
/// Each bus [`attach`](Self::attach)es when it is made and [`detach`](Self::detach)es when
/// it is closed or dropped; [`Bus::close`](crate::Bus::close) closes the transport only
/// when `detach` says that bus was the last. So a transport counts its buses in the state
/// its clones share ([`UseCount`] does the counting), and closing one bus never closes
/// the transport under the others. [`close`](Self::close), called directly, closes it for
/// everyone at once.
///
/// The defaults count nothing: a transport that keeps them is never closed by a bus, only
/// by its own [`close`](Self::close) (or by being dropped), which is safe for any number
/// of buses.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// A short name for logs (`memory`, `amqp`, `streams`).
    fn name(&self) -> &'static str;

    /// What this transport can do; the bus adapts to it (see [`Capabilities`]).
    fn capabilities(&self) -> Capabilities;

    /// How a stream-backed transport names its streams. `Some` means: a publish to
    /// [`Destination::Topic`] is appended to the stream of the event's domain
    /// ([`StreamNaming::stream_of_key`]), and a bus on this transport reads the streams its
    /// handlers need (one [`Source::Stream`] subscription each, named after the service)
    /// instead of a queue. `None` (the default): a queue transport.
    fn stream_naming(&self) -> Option<StreamNaming> {
        None
    }

    /// Hands `outgoing` to the broker and returns once it is on its way, with a
    /// [`Confirmation`] that resolves when the broker confirmed it (stored, routed) or
    /// refused it. One task can keep thousands of sends in flight this way, each awaited on
    /// its own. Back-pressure (a full send window, a blocked connection) shows here as a
    /// wait, bounded by the transport's timeout.
    async fn send(&self, outgoing: Outgoing) -> Result<Confirmation, TransportError>;

    /// Sends `outgoing` and waits for the broker's confirmation. Unconfirmed publishes are
    /// errors, never silently dropped: [`TransportError::Unroutable`] when no queue was
    /// bound for it, [`TransportError::Nacked`] when the broker refused it,
    /// [`TransportError::TimedOut`] when no answer came in time.
    async fn publish(&self, outgoing: Outgoing) -> Result<(), TransportError> {
        self.send(outgoing).await?.await
    }

    /// Declares what `subscription` needs (the service's queue bound to its patterns and
    /// its dead-letter queue, or the stream) without consuming. Idempotent. Called when a
    /// bus is built, so that events published from then on wait for it: for a named
    /// stream consumer with no stored offset that starts at [`StartAt::Next`], declare
    /// fixes "next" as the end of the stream now, and consuming later starts there.
    async fn declare(&self, subscription: &Subscription) -> Result<(), TransportError>;

    /// Starts consuming `subscription` (declaring it first if needed). Called when a bus
    /// starts running.
    async fn consume(
        &self,
        subscription: &Subscription,
    ) -> Result<Box<dyn Consumer>, TransportError>;

    /// Publishes a request and waits, at most `timeout`, for the one reply addressed to it
    /// (RPC); [`Bus::request`](crate::Bus::request) calls it, thousands at a time. Transports
    /// without [`Capabilities::request_reply`] keep the default, which returns
    /// [`TransportError::Unsupported`]. What an implementation does:
    ///
    /// - **Reply address and matching.** It sets `reply_to` to an address of its own (on
    ///   AMQP, direct reply-to on the publishing channel) and matches each reply to its
    ///   request by the correlation id (the request's, set to its id if it has none; unique
    ///   per request: `Bus::request` starts a conversation per request). A reply that no
    ///   request waits for (a second answer, or one after the caller gave up) is dropped
    ///   and counted in [`dropped_replies`](Self::dropped_replies).
    /// - **The request as sent.** Its headers are kept as they are, among them
    ///   [`HEADER_DEADLINE`](crate::headers::HEADER_DEADLINE), the caller's deadline (on
    ///   AMQP also the `expiration` of the message, the time left in milliseconds).
    /// - **No responder.** The request is published `mandatory`; when nothing is bound
    ///   to its key, return [`TransportError::Unroutable`] as soon as the broker says so,
    ///   not at the timeout.
    /// - **Timeout.** No reply within `timeout`: [`TransportError::TimedOut`].
    /// - **Connection lost.** Every request waiting when the connection (or the reply
    ///   consumer) is lost fails at once with [`TransportError::Unavailable`] (or
    ///   [`TransportError::Closed`] when the transport was closed); the reply consumer is
    ///   set up again before the next request goes out.
    /// - **The reply as it came.** Return the reply message whole: the bus reads its
    ///   status ([`HEADER_REPLY_STATUS`](crate::headers::HEADER_REPLY_STATUS), an error's
    ///   kind and message) and decodes its body.
    ///
    /// The responder's side needs nothing more: a reply is sent with [`send`](Self::send)
    /// to [`Destination::Reply`] (on AMQP: the default exchange, the address as routing
    /// key, not `mandatory`).
    async fn request(
        &self,
        request: Outgoing,
        timeout: Duration,
    ) -> Result<Message, TransportError> {
        let _ = (request, timeout);
        Err(TransportError::Unsupported {
            what: "request/reply",
            transport: self.name(),
        })
    }

    /// How many replies arrived that no request waited for (a second service answering
    /// one request, or a reply after its caller gave up): dropped, the first reply wins.
    /// `None` (the default) when the transport does not count them or has no
    /// request/reply.
    ///
    /// ```
    /// use pubsub::{MemoryTransport, transport::Transport};
    /// assert_eq!(MemoryTransport::new().dropped_replies(), Some(0));
    /// ```
    fn dropped_replies(&self) -> Option<u64> {
        None
    }

    /// The state of its connections and consumers, for [`Bus::health`](crate::Bus::health).
    /// Transports that report state changes also log each one (`tracing`). The default
    /// reports nothing, which counts as healthy.
    fn health(&self) -> TransportHealth {
        TransportHealth::new(self.name())
    }

    /// What was dead-lettered for `service`, oldest first, each with its reason and failed
    /// handlers: its dead-letter queue, or on a stream-backed transport its error stream.
    /// They stay where they are. The default, for a transport with neither, returns
    /// [`TransportError::Unsupported`].
    async fn dead_letters(
        &self,
        service: &str,
    ) -> Result<Vec<DeadLetteredMessage>, TransportError> {
        let _ = service;
        Err(TransportError::Unsupported {
            what: "reading dead letters",
            transport: self.name(),
        })
    }

    /// A bus starts using this transport (when it is built, or made with
    /// [`Bus::publisher`](crate::Bus::publisher)). A transport that counts its buses, in the
    /// state its clones share, adds one ([`UseCount::attach`]); see
    /// [Shared by several buses](Self#shared-by-several-buses). The default counts
    /// nothing.
    fn attach(&self) {}

    /// A bus that [`attach`](Self::attach)ed stopped using this transport (it was closed or
    /// dropped). Returns whether it was the last bus attached: then
    /// [`Bus::close`](crate::Bus::close) closes the transport ([`UseCount::detach`]). The
    /// default returns `false`, so that a transport that does not count its buses is never
    /// closed under one of them: it closes when [`close`](Self::close) is called.
    fn detach(&self) -> bool {
        false
    }

    /// Flushes outstanding work and closes connections. Afterwards every operation fails
    /// with [`TransportError::Closed`] at once and nothing reconnects. Idempotent. Closes
    /// it for every bus using it, whether or not they were closed.
    async fn close(&self) -> Result<(), TransportError>;
}

/// A shared transport is a transport: `Arc<dyn Transport>` (or `Arc<AmqpTransport>`) goes
/// wherever one is taken, [`Bus::publisher`](crate::Bus::publisher) and
/// [`BusBuilder::transport`](crate::BusBuilder::transport) alike. Every method forwards
/// to the shared one.
///
/// ```
/// use std::sync::Arc;
/// use pubsub::{Bus, MemoryTransport, transport::Transport};
///
/// let shared: Arc<dyn Transport> = Arc::new(MemoryTransport::new());
/// let web = Bus::publisher("web", shared.clone());
/// let admin = Bus::publisher("admin", shared);
/// # let _ = (web, admin);
/// ```
#[async_trait]
impl<T: Transport + ?Sized> Transport for std::sync::Arc<T> {
    fn name(&self) -> &'static str {
        (**self).name()
    }

    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }

    fn stream_naming(&self) -> Option<StreamNaming> {
        (**self).stream_naming()
    }

    async fn send(&self, outgoing: Outgoing) -> Result<Confirmation, TransportError> {
        (**self).send(outgoing).await
    }

    async fn publish(&self, outgoing: Outgoing) -> Result<(), TransportError> {
        (**self).publish(outgoing).await
    }

    async fn declare(&self, subscription: &Subscription) -> Result<(), TransportError> {
        (**self).declare(subscription).await
    }

    async fn consume(
        &self,
        subscription: &Subscription,
    ) -> Result<Box<dyn Consumer>, TransportError> {
        (**self).consume(subscription).await
    }

    async fn request(
        &self,
        request: Outgoing,
        timeout: Duration,
    ) -> Result<Message, TransportError> {
        (**self).request(request, timeout).await
    }

    fn dropped_replies(&self) -> Option<u64> {
        (**self).dropped_replies()
    }

    fn health(&self) -> TransportHealth {
        (**self).health()
    }

    async fn dead_letters(
        &self,
        service: &str,
    ) -> Result<Vec<DeadLetteredMessage>, TransportError> {
        (**self).dead_letters(service).await
    }

    fn attach(&self) {
        (**self).attach();
    }

    fn detach(&self) -> bool {
        (**self).detach()
    }

    async fn close(&self) -> Result<(), TransportError> {
        (**self).close().await
    }
}

/// `transport` behind an `Arc<dyn Transport>`: the one it is when it is already one, so that
/// a bus given a shared transport calls it directly, not through the forwarding impl above
/// (one boxed future more per call).
pub(crate) fn into_shared<T: Transport>(transport: T) -> std::sync::Arc<dyn Transport> {
    let any: &dyn std::any::Any = &transport;
    match any.downcast_ref::<std::sync::Arc<dyn Transport>>() {
        Some(shared) => std::sync::Arc::clone(shared),
        None => std::sync::Arc::new(transport),
    }
}

/// The deliveries of one subscription.
///
/// The bus polls [`next`](Self::next) while deliveries are in flight, and settles each
/// delivery through its own [`Acker`], in any order. At shutdown it calls
/// [`cancel`](Self::cancel), settles what it still holds, then [`close`](Self::close).
#[async_trait]
pub trait Consumer: Send {
    /// The next delivery; `None` once the consumer is cancelled or the transport closed.
    /// An `Err` is a transport problem the bus logs before asking again
    /// ([`TransportError::Closed`] ends the bus's run).
    ///
    /// Waits only for what the transport's own tasks hand over: reconnecting is their job,
    /// never the caller's. Must be cancel-safe: the bus polls it in `tokio::select!`, and a
    /// future dropped before completion must not have taken a delivery.
    async fn next(&mut self) -> Option<Result<Delivery, TransportError>>;

    /// Stops new deliveries. Deliveries already handed out can still be settled.
    async fn cancel(&mut self) -> Result<(), TransportError>;

    /// Ends the consumer once the bus settled (or gave up on) every delivery: a stream
    /// consumer stores its offset here; a queue consumer lets the broker requeue whatever
    /// is still unsettled.
    async fn close(self: Box<Self>) -> Result<(), TransportError> {
        Ok(())
    }
}
