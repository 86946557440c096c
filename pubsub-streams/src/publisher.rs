//! De-duplicating producers: one per producer name and stream, publishing ids from 1,
//! resumed from the broker's last one + 1, each confirmation awaited with a bound.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use pubsub_core::{Confirmation, Message, TransportError};
use rabbitmq_stream_client::error::ProducerCreateError;
use rabbitmq_stream_client::{Dedup, Environment, Producer};
use tokio::sync::{Mutex, oneshot};

use crate::connection::{Admin, bounded};
use crate::convert;
use crate::error::StreamsError;

/// One named producer on one stream.
pub(crate) struct NamedProducer {
    name: String,
    stream: String,
    state: Mutex<State>,
    timeout: Duration,
}

struct State {
    producer: Option<Producer<Dedup>>,
    /// The next publishing id: strictly increasing, never 0, never reused.
    next_id: u64,
}

impl NamedProducer {
    /// Builds producer `name` on `stream`, resuming after the broker's last id.
    pub(crate) async fn build(
        environment: &Environment,
        admin: &Admin,
        name: &str,
        stream: &str,
        batch_size: usize,
        timeout: Duration,
    ) -> Result<Self, StreamsError> {
        // The broker answers 0 both for "unknown" and "last id 0"; ids start at 1, so 0
        // always means "none yet" here.
        let last = admin.publisher_sequence(name, stream).await?;
        let producer = bounded("build a producer", timeout, async {
            environment
                .producer()
                .name(name)
                .batch_size(batch_size)
                .client_provided_name(name)
                .build(stream)
                .await
                .map_err(|e: ProducerCreateError| {
                    StreamsError::client(format!("build producer {name} on {stream}"), e)
                })
        })
        .await?;
        tracing::debug!(
            producer = name,
            stream,
            next_id = last + 1,
            "producer ready"
        );
        Ok(Self {
            name: name.to_owned(),
            stream: stream.to_owned(),
            state: Mutex::new(State {
                producer: Some(producer),
                next_id: last + 1,
            }),
            timeout,
        })
    }

    /// Hands `message` to the producer with the next id; the confirmation resolves when
    /// the broker confirmed it, or fails after the timeout.
    pub(crate) async fn send(&self, message: &Message) -> Result<Confirmation, TransportError> {
        let mut state = self.state.lock().await;
        let id = state.next_id;
        state.next_id += 1;
        self.send_with_id(&mut state, message, id).await
    }

    /// Sends `message` under an id chosen by the caller (re-sending a batch: the broker
    /// drops ids it already has, and still confirms them).
    pub(crate) async fn resend(
        &self,
        message: &Message,
        id: u64,
    ) -> Result<Confirmation, TransportError> {
        let mut state = self.state.lock().await;
        self.send_with_id(&mut state, message, id).await
    }

    async fn send_with_id(
        &self,
        state: &mut State,
        message: &Message,
        id: u64,
    ) -> Result<Confirmation, TransportError> {
        let producer = state.producer.as_mut().ok_or(TransportError::Closed)?;
        let wire = convert::to_wire(message, id);
        let (tx, rx) = oneshot::channel();
        let sent = tokio::time::timeout(
            self.timeout,
            producer.send(wire, move |outcome| async move {
                let _ = tx.send(
                    outcome.map(|status| (status.confirmed(), format!("{:?}", status.status()))),
                );
            }),
        )
        .await;
        match sent {
            Err(_) => {
                return Err(TransportError::TimedOut {
                    operation: "stream publish (producer queue full)",
                    after: self.timeout,
                });
            }
            Ok(Err(error)) => {
                return Err(StreamsError::client(
                    format!("publish to {} as {}", self.stream, self.name),
                    error,
                )
                .into());
            }
            Ok(Ok(())) => {}
        }
        let timeout = self.timeout;
        let stream = self.stream.clone();
        Ok(Confirmation::new(async move {
            match tokio::time::timeout(timeout, rx).await {
                Err(_) => Err(TransportError::TimedOut {
                    operation: "stream publish confirm",
                    after: timeout,
                }),
                Ok(Err(_)) => Err(TransportError::unavailable(format!(
                    "the producer on {stream} went away before confirming publishing id {id}"
                ))),
                Ok(Ok(Err(error))) => Err(StreamsError::client(
                    format!("confirm of publishing id {id} on {stream}"),
                    error,
                )
                .into()),
                Ok(Ok(Ok((true, _)))) => Ok(()),
                Ok(Ok(Ok((false, code)))) => Err(TransportError::Nacked {
                    reason: format!("stream {stream} refused publishing id {id}: {code}"),
                }),
            }
        }))
    }

    /// The id the next [`send`](Self::send) uses.
    pub(crate) async fn next_id(&self) -> u64 {
        self.state.lock().await.next_id
    }

    /// Closes the producer (explicitly: its `Drop` blocks a runtime thread).
    pub(crate) async fn close(&self) {
        let producer = self.state.lock().await.producer.take();
        if let Some(producer) = producer {
            let _ = tokio::time::timeout(self.timeout, producer.close()).await;
        }
    }
}

/// The producers of a transport, by (name, stream), built on first use.
#[derive(Default)]
pub(crate) struct Producers {
    by_name: Mutex<HashMap<(String, String), Arc<NamedProducer>>>,
}

impl Producers {
    /// The producer `name` on `stream`, built with `build` if there is none.
    pub(crate) async fn get_or_build<F, Fut>(
        &self,
        name: &str,
        stream: &str,
        build: F,
    ) -> Result<Arc<NamedProducer>, StreamsError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<NamedProducer, StreamsError>>,
    {
        let mut producers = self.by_name.lock().await;
        let key = (name.to_owned(), stream.to_owned());
        if let Some(producer) = producers.get(&key) {
            return Ok(Arc::clone(producer));
        }
        let producer = Arc::new(build().await?);
        producers.insert(key, Arc::clone(&producer));
        Ok(producer)
    }

    /// Closes every producer.
    pub(crate) async fn close(&self) {
        let producers: Vec<_> = self.by_name.lock().await.drain().map(|(_, p)| p).collect();
        for producer in producers {
            producer.close().await;
        }
    }
}
