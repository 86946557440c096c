//! [`Bus::subscribe`]: a typed stream of events, of every entity or of the ones named by
//! key parameters, opened and dropped at run time.

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;

use super::Bus;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::key_template::{KeyParam, ParamValue, narrow};
use crate::pattern::Pattern;
use crate::stream::EventStream;
use crate::transport::{StartAt, StoreOffsets, StreamSource, Subscription, TransportError};

/// How many messages an event stream reads ahead of its iterator.
const READ_AHEAD: u16 = 100;

/// A subscription about to be opened: name the entity with [`param`](Self::param), say
/// where a stream is read from with [`start_at`](Self::start_at), then `.await` it for an
/// [`EventStream`]. Made by [`Bus::subscribe`]; opens nothing until awaited.
///
/// What it opens depends on the transport:
///
/// - **A queue transport** (memory, AMQP): a private queue bound to the event's key with
///   the parameters filled in (`session.42.code_updated`; the others `*`), so the broker
///   routes it only that entity's events, from the moment it is open. On AMQP it is an
///   exclusive, auto-delete queue, removed when the stream is dropped. Events published
///   while it is not open (or while the connection is being recovered) are not seen.
/// - **A stream-backed transport** (memory stream-backed, RabbitMQ Streams): an anonymous
///   reader of the stream of the event's domain, from [`start_at`](Self::start_at)
///   (history, then live). With every parameter named, the broker is asked for that
///   entity's key only (RabbitMQ's stream filtering: it skips chunks that cannot hold it).
///   Of a super stream, every partition is read, so that events partitioned by another
///   key (an explicit partition key, another client, older history) are not missed.
///
/// Either way, only events of type `E` whose key matches reach the stream.
///
/// ```
/// use futures::StreamExt;
/// use pubsub::prelude::*;
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
/// #[event(key = "session.{session_id}.code_updated")]
/// struct CodeUpdated { session_id: u64, delta: String }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> pubsub::Result<()> {
/// let bus = Bus::publisher("editor", MemoryTransport::new());
/// // a WebSocket joins session 42
/// let mut session_42 = bus.subscribe::<CodeUpdated>().param(CodeUpdated::SESSION_ID, 42).await?;
/// bus.publish(&CodeUpdated { session_id: 7, delta: "elsewhere".into() }).await?;
/// bus.publish(&CodeUpdated { session_id: 42, delta: "+fn main".into() }).await?;
/// let update = session_42.next().await.expect("open")?;
/// assert_eq!(update.event.delta, "+fn main");
/// assert_eq!(update.metadata.key, "session.42.code_updated");
/// drop(session_42); // its queue goes with it
/// # Ok(())
/// # }
/// ```
#[must_use = "a subscription is opened only when it is awaited"]
pub struct SubscribeCall<'a, E> {
    bus: &'a Bus,
    params: Vec<(&'static str, String)>,
    start: StartAt,
    stream: Option<String>,
    _event: PhantomData<fn() -> E>,
}

impl<E> std::fmt::Debug for SubscribeCall<'_, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscribeCall")
            .field("params", &self.params)
            .field("start", &self.start)
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl<'a, E: Event> SubscribeCall<'a, E> {
    pub(super) fn new(bus: &'a Bus) -> Self {
        Self {
            bus,
            params: Vec::new(),
            start: StartAt::Next,
            stream: None,
            _event: PhantomData,
        }
    }

    /// Only the events whose key parameter `param` is `value`: `param` is one of the
    /// constants `#[derive(Event)]` generates (`CodeUpdated::SESSION_ID`), so a misspelled
    /// parameter does not compile, nor does a value of another type. A value that cannot
    /// be a word of a key (empty, or with `.`, `*`, `#`, whitespace) fails the
    /// subscription with [`Error::Key`]; naming a parameter again replaces its value.
    pub fn param<T: ?Sized>(mut self, param: KeyParam<E, T>, value: impl ParamValue<T>) -> Self {
        self.params
            .push((param.name(), value.param_word().into_owned()));
        self
    }

    /// Where a stream-backed transport starts reading (default [`StartAt::Next`]: only
    /// what is published from now on). [`StartAt::First`] replays the history the stream
    /// still holds, then goes on live. A queue transport has no history: anything but
    /// `Next` fails the subscription with [`TransportError::Unsupported`].
    pub fn start_at(mut self, start: StartAt) -> Self {
        self.start = start;
        self
    }

    /// Reads the stream named `stream` instead of that of the event's domain (a
    /// stream-backed transport only), e.g. a stream per chat room. Of a super stream, every
    /// partition is read, each from the start position: events of one partition key come
    /// in order, across keys interleaved.
    pub fn stream(mut self, stream: impl Into<String>) -> Self {
        self.stream = Some(stream.into());
        self
    }

    async fn open(self) -> Result<EventStream<E>> {
        self.bus.check_open()?;
        let pattern = narrow(E::KEY, &self.params)?;
        tracing::debug!(event = E::KEY, %pattern, start = ?self.start, "opening a subscription");
        let transport = self.bus.transport();
        let service = self.bus.service();
        let (subscription, source) = match transport.stream_naming() {
            Some(naming) => {
                let stream = self
                    .stream
                    .unwrap_or_else(|| naming.stream_of_domain(E::DOMAIN));
                let partitioned = naming.partitions(&stream).is_some();
                let mut source = StreamSource::new(stream.clone())
                    .super_stream(partitioned)
                    .start_at(self.start)
                    .store_offsets(StoreOffsets::Never);
                if !self.params.is_empty() && !pattern.split('.').any(|w| w == "*") {
                    source = source.only_keys([pattern.clone()]);
                }
                (Subscription::stream(service, source), stream)
            }
            None => {
                if self.stream.is_some() {
                    return Err(unsupported(
                        transport.name(),
                        "reading a named stream (needs a stream-backed transport)",
                    ));
                }
                if self.start != StartAt::Next {
                    return Err(unsupported(
                        transport.name(),
                        "replaying history with start_at (a queue transport has only live \
                         events; use a stream-backed transport)",
                    ));
                }
                let subscription = Subscription::live(service, [pattern.clone()]);
                let queue = subscription.queue_name().unwrap_or_default().to_owned();
                (subscription, queue)
            }
        };
        let subscription = subscription.prefetch(READ_AHEAD);
        let consumer = transport.consume(&subscription).await?;
        let filter = (!self.params.is_empty())
            .then(|| Pattern::new(pattern.as_str()))
            .transpose()
            .map_err(|e| TransportError::topology(e.to_string()))?;
        Ok(EventStream::new(consumer, source, filter))
    }
}

fn unsupported(transport: &'static str, what: &'static str) -> Error {
    TransportError::Unsupported { what, transport }.into()
}

// bounded by `Event` only, as `RequestCall`
impl<'a, E: Event> IntoFuture for SubscribeCall<'a, E> {
    type Output = Result<EventStream<E>>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.open())
    }
}

impl Bus {
    /// A typed stream of the events of type `E`, opened at run time and closed when it is
    /// dropped: all of them, or with [`param`](SubscribeCall::param) those of one entity,
    /// as a WebSocket that joins session 42 wants. See [`SubscribeCall`] for what each
    /// transport opens.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use pubsub::prelude::*;
    /// use pubsub::{Bus, MemoryTransport, stream::StartAt};
    ///
    /// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
    /// #[event(domain = "room", action = "said")]
    /// struct Said { text: String }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> pubsub::Result<()> {
    /// let bus = Bus::publisher("chat", MemoryTransport::stream_backed());
    /// bus.publish(&Said { text: "first".into() }).await?;
    /// // a late joiner replays the history
    /// let mut history = bus.subscribe::<Said>().start_at(StartAt::First).await?;
    /// bus.publish(&Said { text: "second".into() }).await?;
    /// for expected in ["first", "second"] {
    ///     let said = history.next().await.expect("the stream goes on")?;
    ///     assert_eq!(said.event.text, expected);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// When awaited: [`Error::Key`] for a parameter value that cannot be a key's word;
    /// [`TransportError::Unsupported`] for a [`start_at`](SubscribeCall::start_at) or a
    /// [`stream`](SubscribeCall::stream) on a queue transport; the transport's error when
    /// the consumer cannot be opened.
    pub fn subscribe<E: Event>(&self) -> SubscribeCall<'_, E> {
        SubscribeCall::new(self)
    }
}
