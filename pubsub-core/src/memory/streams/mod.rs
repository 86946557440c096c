//! The stream broker: append-only logs with offsets, named consumers whose offsets it
//! stores, single active consumer, super streams' partitions, and each service's error
//! stream, as RabbitMQ's streams behave.

pub(super) mod consumer;
pub(super) mod log;
pub(super) mod retention;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use self::consumer::MemoryStreamConsumer;
use self::log::Log;
use self::retention::MAX_MEMORY_STREAM_LENGTH;
use super::connection::Connection;
use super::error::InspectError;
use super::signal::BrokerSignal;
use super::sync::{read, write};
use crate::metadata::Message;
use crate::stream::{ErrorStreamEntry, Retention, StreamNaming};
use crate::transport::MergedConsumer;
use crate::transport::{
    Consumer, Destination, Source, StoreOffsets, StreamSource, Subscription, TransportError,
};

/// The streams of one in-memory broker.
#[derive(Debug)]
pub(super) struct StreamBroker {
    /// How events map to streams, and the error streams' names.
    pub(super) naming: StreamNaming,
    retention: Retention,
    logs: RwLock<HashMap<String, Arc<Log>>>,
    signal: Arc<BrokerSignal>,
    next_reader: AtomicU64,
}

/// What a stream subscription reads: its logs (a super stream's partitions), the
/// service's error stream (`None` for an anonymous reader, which dead-letters nothing and
/// so creates no error stream), and how.
struct Declared<'s> {
    logs: Vec<Arc<Log>>,
    errors: Option<Arc<Log>>,
    source: &'s StreamSource,
}

impl StreamBroker {
    pub(super) fn new(
        naming: StreamNaming,
        retention: Retention,
        signal: Arc<BrokerSignal>,
    ) -> Self {
        Self {
            naming,
            retention,
            logs: RwLock::default(),
            signal,
            next_reader: AtomicU64::new(0),
        }
    }

    /// The log named `name`, created if missing.
    fn log(&self, name: &str) -> Arc<Log> {
        if let Some(log) = read(&self.logs).get(name) {
            return Arc::clone(log);
        }
        let mut logs = write(&self.logs);
        let log = logs.entry(name.to_owned()).or_insert_with(|| {
            Arc::new(Log::new(
                name.to_owned(),
                self.retention,
                MAX_MEMORY_STREAM_LENGTH,
                Arc::clone(&self.signal),
            ))
        });
        Arc::clone(log)
    }

    /// The log named `name`; an error naming those that exist if it does not.
    pub(super) fn existing_log(&self, name: &str) -> Result<Arc<Log>, InspectError> {
        let logs = read(&self.logs);
        logs.get(name).cloned().ok_or_else(|| {
            let mut known: Vec<String> = logs.keys().cloned().collect();
            known.sort();
            InspectError::UnknownStream {
                stream: name.to_owned(),
                known,
            }
        })
    }

    /// The names of the streams, sorted.
    pub(super) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = read(&self.logs).keys().cloned().collect();
        names.sort();
        names
    }

    /// The error stream of `service`, oldest first, if it exists.
    pub(super) fn error_stream(
        &self,
        service: &str,
    ) -> Result<Vec<ErrorStreamEntry>, InspectError> {
        let messages = self
            .existing_log(&self.naming.error_stream(service))?
            .messages();
        Ok(messages
            .into_iter()
            .map(|(_, message)| ErrorStreamEntry::read(message))
            .collect())
    }

    /// Appends a published message to its stream: the stream of its key for a topic
    /// publish, or the stream named (a super stream's partition chosen by its key).
    pub(super) fn append(
        &self,
        message: Arc<Message>,
        destination: Destination,
    ) -> Result<(), TransportError> {
        let naming = &self.naming;
        let (stream, partition_key) = match destination {
            Destination::Topic => (naming.stream_of_key(&message.metadata.key), None),
            Destination::Stream {
                stream,
                partition_key,
            } => (stream, partition_key),
            Destination::Queue(_) | Destination::Reply(_) => {
                return Err(TransportError::Unsupported {
                    what: "queues and replies on a stream-backed broker (use MemoryTransport::new())",
                    transport: "memory-streams",
                });
            }
        };
        let stream = naming.publish_target(stream, partition_key, &message.metadata)?;
        self.log(&stream).append(message);
        Ok(())
    }

    /// Declares the stream (each partition of a super stream) and the service's error
    /// stream; fixes where a new consumer starting at `Next` begins.
    fn declare<'s>(&self, subscription: &'s Subscription) -> Result<Declared<'s>, TransportError> {
        let source = match &subscription.source {
            Source::Stream(source) => source,
            Source::Queue(_) | Source::DeadLetters | Source::Live(_) => {
                return Err(TransportError::Unsupported {
                    what: "queues on a stream-backed broker (read the error stream as a stream instead of the dead-letter queue)",
                    transport: "memory-streams",
                });
            }
        };
        let names = match (source.super_stream, self.naming.partitions(&source.stream)) {
            (false, _) => vec![source.stream.clone()],
            (true, Some(partitions)) => partitions,
            (true, None) => {
                return Err(TransportError::topology(format!(
                    "stream {} is not a super stream (StreamNaming::super_stream makes it one)",
                    source.stream
                )));
            }
        };
        let logs: Vec<Arc<Log>> = names.iter().map(|name| self.log(name)).collect();
        let errors = (source.store != StoreOffsets::Never)
            .then(|| self.log(&self.naming.error_stream(&subscription.service)));
        for log in &logs {
            log.declare_reader(&subscription.service, source);
        }
        Ok(Declared {
            logs,
            errors,
            source,
        })
    }

    /// Declares what a stream subscription reads.
    pub(super) fn declare_subscription(
        &self,
        subscription: &Subscription,
    ) -> Result<(), TransportError> {
        self.declare(subscription).map(drop)
    }

    /// Reads the stream with a consumer named after the service, on `connection`.
    pub(super) fn consume(
        &self,
        subscription: &Subscription,
        connection: &Arc<Connection>,
    ) -> Result<Box<dyn Consumer>, TransportError> {
        let Declared {
            logs,
            errors,
            source,
        } = self.declare(subscription)?;
        let mut consumers: Vec<Box<dyn Consumer>> = Vec::with_capacity(logs.len());
        for log in logs {
            let id = self.next_reader.fetch_add(1, Ordering::Relaxed);
            log.attach(
                id,
                &subscription.service,
                source,
                usize::from(subscription.prefetch),
            );
            connection.opened_reader(&log, id);
            let consumer = MemoryStreamConsumer {
                log,
                errors: errors.clone(),
                id,
                connection: Arc::clone(connection),
                detached: false,
            };
            consumer.start_store_timer(source.store);
            consumers.push(Box::new(consumer));
        }
        if consumers.is_empty() {
            return Err(TransportError::topology(
                "a super stream without partitions",
            ));
        }
        Ok(MergedConsumer::of(consumers))
    }

    /// Whether no stream has a reader with work left.
    pub(super) fn is_idle(&self) -> bool {
        read(&self.logs).values().all(|log| !log.is_busy())
    }
}
