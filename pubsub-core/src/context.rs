//! [`Context`]: what a handler knows about the delivery it is handling.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use uuid::Uuid;

use crate::error::Result;
use crate::event::Event;
use crate::handler_error::HandlerError;
use crate::key_template::param_of;
use crate::metadata::{Message, Metadata};
use crate::publish::{PublishOptions, Publisher};
use crate::state::StateMap;

/// Per-invocation context: the event's metadata, the attempt number, a publisher that keeps
/// the conversation's correlation id, and the bus's shared state.
///
/// ```
/// use pubsub::prelude::*;
///
/// #[derive(Debug, Clone, Serialize, Deserialize, Event)]
/// #[event(domain = "order", action = "placed")]
/// struct OrderPlaced { id: u64 }
///
/// #[derive(Debug, Clone, Serialize, Deserialize, Event)]
/// #[event(domain = "invoice", action = "requested")]
/// struct InvoiceRequested { order: u64 }
///
/// struct Prices { vat_percent: u32 }
///
/// #[handler]
/// async fn invoice(order: OrderPlaced, ctx: Context) -> Result<(), HandlerError> {
///     let prices = ctx.state::<Prices>()?;
///     tracing::info!(attempt = ctx.attempt(), vat = prices.vat_percent, "invoicing");
///     // correlation id flows on, causation id = this event's id
///     ctx.publish(&InvoiceRequested { order: order.id }).await?;
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Context {
    scope: Arc<DeliveryScope>,
    handler: Arc<str>,
    /// The key template of a typed handler's event.
    event_key: Option<&'static str>,
    attempt: u32,
    /// Publishes made so far in this handler call (clones share it).
    publishes: Arc<AtomicU32>,
}

/// What every handler of one delivery shares.
#[derive(Debug)]
pub(crate) struct DeliveryScope {
    pub(crate) message: Arc<Message>,
    pub(crate) redelivered: bool,
    pub(crate) delivery_count: Option<u32>,
    /// Its offset in the stream it was read from; `None` for queues.
    pub(crate) offset: Option<u64>,
    /// The bus's sequence number of this delivery.
    pub(crate) delivery: u64,
    pub(crate) publisher: Publisher,
    pub(crate) state: Arc<StateMap>,
}

/// The namespace of the ids of caused events (a name-based UUID, version 5).
const CAUSED_ID_NAMESPACE: Uuid = Uuid::from_u128(0x5d1c_63a4_8e0b_4b7e_9a51_2f4c_0d3e_7b19);

/// The id of the `position`-th event (from 0) published by `handler` while handling the
/// event `cause`: the same on every retry and redelivery, so that consumers downstream
/// (and a de-duplicating Streams producer) recognise a re-publish.
pub(crate) fn caused_event_id(cause: Uuid, handler: &str, position: u32) -> Uuid {
    let mut name = Vec::with_capacity(16 + handler.len() + 5);
    name.extend_from_slice(cause.as_bytes());
    name.extend_from_slice(handler.as_bytes());
    name.push(0);
    name.extend_from_slice(&position.to_be_bytes());
    Uuid::new_v5(&CAUSED_ID_NAMESPACE, &name)
}

impl Context {
    pub(crate) fn new(scope: Arc<DeliveryScope>, handler: Arc<str>, attempt: u32) -> Self {
        Self {
            scope,
            handler,
            event_key: None,
            attempt,
            publishes: Arc::default(),
        }
    }

    /// The context of a typed handler of the event whose key template is `event_key`.
    pub(crate) fn of_event(mut self, event_key: Option<&'static str>) -> Self {
        self.event_key = event_key;
        self
    }

    /// The envelope of the event being handled.
    pub fn metadata(&self) -> &Metadata {
        &self.scope.message.metadata
    }

    /// The event id (stable across retries and redeliveries: use it to de-duplicate).
    pub fn event_id(&self) -> Uuid {
        self.scope.message.metadata.id
    }

    /// The routing key (`session.42.code_updated`).
    pub fn key(&self) -> &str {
        &self.scope.message.metadata.key
    }

    /// The word of the routing key that the key parameter `name` stands for: `"42"` for
    /// `session_id` in `session.42.code_updated`, whose event's key is
    /// `session.{session_id}.code_updated`. The key template is the typed handler's event's,
    /// or, for a `RawEvent` handler, the event type the message carries. `None` if neither
    /// has that parameter.
    ///
    /// ```
    /// use pubsub::prelude::*;
    ///
    /// #[derive(Debug, Clone, Serialize, Deserialize, Event)]
    /// #[event(key = "session.{session_id}.code_updated")]
    /// struct CodeUpdated { session_id: u64, delta: String }
    ///
    /// #[handler]
    /// async fn index(update: CodeUpdated, ctx: Context) -> Result<(), HandlerError> {
    ///     assert_eq!(ctx.key_param("session_id"), Some(update.session_id.to_string().as_str()));
    ///     Ok(())
    /// }
    /// ```
    pub fn key_param(&self, name: &str) -> Option<&str> {
        let metadata = &self.scope.message.metadata;
        let template = self.event_key.or(metadata.event_type.as_deref())?;
        param_of(template, &metadata.key, name)
    }

    /// The payload version.
    pub fn version(&self) -> u32 {
        self.scope.message.metadata.version
    }

    /// The correlation id of the conversation, if the publisher set one.
    pub fn correlation_id(&self) -> Option<&str> {
        self.scope.message.metadata.correlation_id.as_deref()
    }

    /// The id of the event that caused this one, if any.
    pub fn causation_id(&self) -> Option<&str> {
        self.scope.message.metadata.causation_id.as_deref()
    }

    /// A free header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.scope
            .message
            .metadata
            .headers
            .get(name)
            .map(String::as_str)
    }

    /// 1 on the first attempt, 2 on the first retry, and so on (counting attempts made
    /// before a delayed redelivery).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// How often the broker has delivered this message, this time included, where the
    /// transport knows it (quorum queues, the in-memory broker).
    pub fn delivery_count(&self) -> Option<u32> {
        self.scope.delivery_count
    }

    /// The offset of this event in the stream it was read from, on a stream-backed
    /// transport (the in-memory broker in stream mode, RabbitMQ Streams); `None` for a
    /// queue. The offset an error-stream entry records
    /// ([`ErrorStreamEntry::offset`](crate::stream::ErrorStreamEntry::offset)), and the one
    /// the consumer stores once the event is settled.
    pub fn stream_offset(&self) -> Option<u64> {
        self.scope.offset
    }

    /// Whether the broker delivered this message before (to a consumer that did not settle it).
    pub fn redelivered(&self) -> bool {
        self.scope.redelivered
    }

    /// The name of the handler being run.
    pub fn handler_name(&self) -> &str {
        &self.handler
    }

    /// The service (queue / consumer name) of the bus running the handler.
    pub fn service(&self) -> &str {
        &self.scope.publisher.service
    }

    /// Shared state registered with [`BusBuilder::state`](crate::BusBuilder::state).
    pub fn state<T: Send + Sync + 'static>(&self) -> Result<&T, HandlerError> {
        self.scope.state.get::<T>().ok_or_else(|| {
            HandlerError::permanent(format!(
                "no state of type {} was registered on the bus builder",
                std::any::type_name::<T>()
            ))
        })
    }

    /// Publishes `event` in the same conversation: correlation id passed on, causation id set
    /// to the event being handled. Returns once the transport confirmed it.
    ///
    /// The new event's id is derived from the handled event's id, this handler's name and
    /// the publish's position within this handler call (a name-based UUID), so a retried or
    /// redelivered handler publishes the same ids again and consumers downstream can
    /// de-duplicate by event id. Publish in a deterministic order for this to hold.
    pub async fn publish<E: Event>(&self, event: &E) -> Result<Uuid> {
        self.publish_with(event, PublishOptions::new()).await
    }

    /// Like [`publish`](Self::publish) with extra options; correlation and causation ids
    /// are filled from the event being handled unless `options` sets them.
    pub async fn publish_with<E: Event>(&self, event: &E, options: PublishOptions) -> Result<Uuid> {
        let position = self.publishes.fetch_add(1, Ordering::Relaxed);
        let cause = PublishOptions::caused_by(self.metadata());
        let options = PublishOptions {
            correlation_id: options.correlation_id.or(cause.correlation_id),
            causation_id: options.causation_id.or(cause.causation_id),
            id: Some(caused_event_id(self.event_id(), &self.handler, position)),
            ..options
        };
        self.scope.publisher.publish(event, options).await
    }
}
