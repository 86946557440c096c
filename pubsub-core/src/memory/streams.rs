//! The in-memory transport in stream mode ([`MemoryTransport::streams`]): topic publishes
//! appended to the stream of their domain, consumers reading streams with named offsets,
//! error streams, and inspection for tests.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use super::MemoryTransport;
use super::broker::{Broker, lock};
use super::retention::StreamRetention;
use super::stream::Log;
use super::stream_consumer::MemoryStreamConsumer;
use crate::error::{Error, TransportError};
use crate::metadata::Message;
use crate::stream::{ErrorStreamEntry, MergedConsumer, StreamNaming};
use crate::transport::{
    Consumer, DeadLetteredMessage, Destination, Source, StreamSource, Subscription,
};

/// Most messages a memory stream keeps by default ([`MemoryTransport::streams`]).
pub const DEFAULT_MEMORY_STREAM_LENGTH: usize = 1_000_000;

/// What a stream subscription reads: its logs (a super stream's partitions), the
/// service's error stream, and how.
pub(super) struct Declared<'s> {
    logs: Vec<Arc<Log>>,
    errors: Arc<Log>,
    source: &'s StreamSource,
}

/// The streams of a broker in stream mode.
#[derive(Debug)]
pub(super) struct Streams {
    pub(super) naming: StreamNaming,
    retention: StreamRetention,
    logs: RwLock<HashMap<String, Arc<Log>>>,
}

impl MemoryTransport {
    /// A new, empty broker that behaves like the RabbitMQ Streams transport: every event
    /// published is appended to the stream of its domain (named by
    /// [`StreamNaming::default`], `events.order`), each an append-only log with offsets
    /// that keeps the last [`DEFAULT_MEMORY_STREAM_LENGTH`] messages (retention by bytes and
    /// age: [`streams_with_retention`](Self::streams_with_retention)); a bus on it reads the
    /// streams its handlers need with a consumer named after its service, whose offset is
    /// stored after handling; single active consumer; each service's failures go to its
    /// error stream; super streams if the naming has some
    /// ([`StreamNaming::super_stream`]), each partition its own log. Its capabilities are [`Capabilities::stream`](crate::Capabilities::stream):
    /// no queues, no requeue, retries in process.
    ///
    /// ```
    /// use pubsub::prelude::*;
    /// use pubsub::{Bus, MemoryTransport};
    ///
    /// #[derive(Debug, Clone, Serialize, Deserialize, Event)]
    /// #[event(domain = "room", action = "said")]
    /// struct Said { text: String }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> pubsub::Result<()> {
    /// let broker = MemoryTransport::streams();
    /// let chat = Bus::publisher("chat", broker.clone());
    /// chat.publish(&Said { text: "hi".into() }).await?;
    /// assert_eq!(broker.stream_length("events.room")?, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn streams() -> Self {
        Self::streams_with_retention(StreamNaming::default(), StreamRetention::default())
    }

    /// Like [`streams`](Self::streams), with these stream names, each stream keeping the
    /// last `max_length` messages (retention; at least 1): short for
    /// [`streams_with_retention`](Self::streams_with_retention) with
    /// `StreamRetention::default().max_length(max_length)`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> pubsub::Result<()> {
    /// use pubsub::{Bytes, Message, MemoryTransport, StreamNaming, Transport};
    /// let broker = MemoryTransport::streams_with(StreamNaming::default(), 2);
    /// for _ in 0..3 {
    ///     broker.publish(Message::new("room.said", Bytes::from_static(b"{}")).into()).await?;
    /// }
    /// let offsets: Vec<u64> = broker.stream_messages("events.room")?.iter().map(|(o, _)| *o).collect();
    /// assert_eq!(offsets, [1, 2]); // the oldest went; offsets never change
    /// # Ok(())
    /// # }
    /// ```
    pub fn streams_with(naming: StreamNaming, max_length: usize) -> Self {
        Self::streams_with_retention(naming, StreamRetention::default().max_length(max_length))
    }

    /// Like [`streams`](Self::streams), with these stream names, each stream created with
    /// this retention, as the RabbitMQ Streams transport creates its streams: past the
    /// maximum count or bytes the oldest messages go, and messages older than the maximum
    /// age go (checked whenever the stream is appended to or read). Offsets never change;
    /// a consumer whose next offset was removed goes on from the oldest message kept.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> pubsub::Result<()> {
    /// use pubsub::{Bytes, Message, MemoryTransport, StreamNaming, StreamRetention, Transport};
    /// let retention = StreamRetention::default().max_length_bytes(10);
    /// let broker = MemoryTransport::streams_with_retention(StreamNaming::default(), retention);
    /// for _ in 0..3 {
    ///     broker.publish(Message::new("room.said", Bytes::from_static(b"12345")).into()).await?;
    /// }
    /// assert_eq!(broker.stream_length("events.room")?, 2); // 10 bytes of bodies
    /// let (oldest, _) = &broker.stream_messages("events.room")?[0];
    /// assert_eq!(*oldest, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn streams_with_retention(naming: StreamNaming, retention: StreamRetention) -> Self {
        Self {
            broker: Arc::new(Broker {
                streams: Some(Streams {
                    naming,
                    retention,
                    logs: RwLock::default(),
                }),
                ..Broker::default()
            }),
            connection: Arc::default(),
        }
    }

    pub(super) fn stream_mode(&self) -> Option<&Streams> {
        self.broker.streams.as_ref()
    }

    fn streams_or_error(&self) -> Result<&Streams, TransportError> {
        self.stream_mode().ok_or(TransportError::Unsupported {
            what: "streams on a queue broker (use MemoryTransport::streams())",
            transport: "memory",
        })
    }

    /// The log named `name`, created if missing.
    fn log(&self, streams: &Streams, name: &str) -> Arc<Log> {
        if let Some(log) = read(&streams.logs).get(name) {
            return Arc::clone(log);
        }
        let mut logs = streams
            .logs
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let log = logs.entry(name.to_owned()).or_insert_with(|| {
            Arc::new(Log::new(
                name.to_owned(),
                streams.retention,
                Arc::clone(&self.broker.signal),
            ))
        });
        Arc::clone(log)
    }

    fn existing_log(&self, stream: &str) -> Result<Arc<Log>, Error> {
        let logs = self.stream_mode().map(|s| read(&s.logs).clone());
        let logs = logs.unwrap_or_default();
        logs.get(stream).cloned().ok_or_else(|| {
            let mut known: Vec<String> = logs.keys().cloned().collect();
            known.sort();
            Error::UnknownStream {
                stream: stream.to_owned(),
                known,
            }
        })
    }

    /// The names of the streams, sorted (empty for a queue broker).
    pub fn stream_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .stream_mode()
            .map(|s| read(&s.logs).keys().cloned().collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    /// How many messages `stream` holds (after retention).
    pub fn stream_length(&self, stream: &str) -> Result<u64, Error> {
        let (first, end) = self.existing_log(stream)?.bounds();
        Ok(end - first)
    }

    /// The messages `stream` holds, with their offsets, oldest first.
    pub fn stream_messages(&self, stream: &str) -> Result<Vec<(u64, Message)>, Error> {
        Ok(self.existing_log(stream)?.messages())
    }

    /// The offset consumer `consumer` (a service) stored on `stream`: the last one it
    /// handled; it resumes after it. `None` if it stored none.
    pub fn stored_offset(&self, stream: &str, consumer: &str) -> Result<Option<u64>, Error> {
        Ok(self.existing_log(stream)?.stored_offset(consumer))
    }

    /// Stores `offset` as consumer `consumer`'s offset on `stream`, or forgets it with
    /// `None` (its next start follows its start position): an operator's offset reset,
    /// effective when the consumer next starts.
    pub fn reset_offset(
        &self,
        stream: &str,
        consumer: &str,
        offset: Option<u64>,
    ) -> Result<(), Error> {
        self.existing_log(stream)?.store_offset(consumer, offset);
        Ok(())
    }

    /// The error stream of `service`
    /// ([`StreamNaming::error_stream`](crate::StreamNaming::error_stream)), oldest first:
    /// every event its handlers gave up on, with the reason, the failed handlers, and the
    /// stream and offset it came from. An error if it does not exist (the service never
    /// consumed here).
    pub fn error_stream(&self, service: &str) -> Result<Vec<ErrorStreamEntry>, Error> {
        let name = match self.stream_mode() {
            Some(streams) => streams.naming.error_stream(service),
            None => StreamNaming::default().error_stream(service),
        };
        let messages = self.existing_log(&name)?.messages();
        Ok(messages
            .into_iter()
            .map(|(_, message)| ErrorStreamEntry::read(message))
            .collect())
    }

    /// The error stream of `service` as dead letters (what the harness and the
    /// conformance suite read).
    pub(super) fn stream_dead_letters(
        &self,
        service: &str,
    ) -> Result<Vec<DeadLetteredMessage>, Error> {
        Ok(self
            .error_stream(service)?
            .into_iter()
            .map(|entry| DeadLetteredMessage {
                queue: service.to_owned(),
                reason: entry.reason,
                failed_handlers: entry.failed_handlers,
                message: entry.message,
            })
            .collect())
    }

    /// Appends a published message to its stream.
    pub(super) fn append(
        &self,
        message: Arc<Message>,
        destination: Destination,
    ) -> Result<(), TransportError> {
        let streams = self.streams_or_error()?;
        let naming = &streams.naming;
        let (stream, partition_key) = match destination {
            Destination::Topic => (naming.stream_of_key(&message.metadata.key), None),
            Destination::Stream {
                stream,
                partition_key,
            } => (stream, partition_key),
            Destination::Queue(_) | Destination::Reply(_) => {
                return Err(TransportError::Unsupported {
                    what: "queues and replies in stream mode (use MemoryTransport::new())",
                    transport: "memory-streams",
                });
            }
        };
        let stream = naming.publish_target(stream, partition_key, &message.metadata)?;
        self.log(streams, &stream).append(message);
        Ok(())
    }

    /// Declares the stream (each partition of a super stream) and the service's error
    /// stream; fixes where a new consumer starting at `Next` begins.
    pub(super) fn declare_stream<'s>(
        &self,
        subscription: &'s Subscription,
    ) -> Result<Declared<'s>, TransportError> {
        self.check_open()?;
        let streams = self.streams_or_error()?;
        let source = match &subscription.source {
            Source::Stream(source) => source,
            Source::Queue(_) | Source::DeadLetters => {
                return Err(TransportError::Unsupported {
                    what: "queues in stream mode (read the error stream as a stream instead of the dead-letter queue)",
                    transport: "memory-streams",
                });
            }
        };
        let names = match (
            source.super_stream,
            streams.naming.partitions(&source.stream),
        ) {
            (false, _) => vec![source.stream.clone()],
            (true, Some(partitions)) => partitions,
            (true, None) => {
                return Err(TransportError::topology(format!(
                    "stream {} is not a super stream (StreamNaming::super_stream makes it one)",
                    source.stream
                )));
            }
        };
        let logs: Vec<Arc<Log>> = names.iter().map(|name| self.log(streams, name)).collect();
        let errors = self.log(streams, &streams.naming.error_stream(&subscription.service));
        for log in &logs {
            log.declare_reader(&subscription.service, source);
        }
        Ok(Declared {
            logs,
            errors,
            source,
        })
    }

    /// Reads the stream with a consumer named after the service.
    pub(super) fn consume_stream(
        &self,
        subscription: &Subscription,
    ) -> Result<Box<dyn Consumer>, TransportError> {
        let Declared {
            logs,
            errors,
            source,
        } = self.declare_stream(subscription)?;
        let mut consumers: Vec<Box<dyn Consumer>> = Vec::with_capacity(logs.len());
        for log in logs {
            let id = self.broker.next_consumer.fetch_add(1, Ordering::Relaxed);
            log.attach(
                id,
                &subscription.service,
                source,
                usize::from(subscription.prefetch),
            );
            lock(&self.connection.readers).push((Arc::clone(&log), id));
            let consumer = MemoryStreamConsumer {
                log,
                errors: Arc::clone(&errors),
                id,
                connection: Arc::clone(&self.connection),
                detached: false,
            };
            consumer.start_store_timer(source.store);
            consumers.push(Box::new(consumer));
        }
        match consumers.pop() {
            Some(only) if consumers.is_empty() => Ok(only),
            Some(last) => {
                consumers.push(last);
                Ok(Box::new(MergedConsumer::new(consumers)))
            }
            None => Err(TransportError::topology(
                "a super stream without partitions",
            )),
        }
    }

    /// Whether no stream has a reader with work left.
    pub(super) fn streams_idle(&self) -> bool {
        self.stream_mode()
            .is_none_or(|s| read(&s.logs).values().all(|log| !log.is_busy()))
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}
