//! Connections: the client [`Environment`] producers and consumers are built from, and one
//! raw [`Client`] for everything else (creating and deleting streams, offsets, publisher
//! sequences). Every call is bounded by the configured timeout.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use rabbitmq_stream_client::error::ClientError;
use rabbitmq_stream_client::types::{OffsetSpecification, ResponseCode};
use rabbitmq_stream_client::{Client, ClientOptions, Environment};
use tokio::sync::Mutex;

use pubsub_core::transport::Reconnects;

use crate::config::StreamConfig;
use crate::connect_failure::{classify, describe};
use crate::error::StreamsError;

/// Waits at most `after` for `future`.
pub(crate) async fn bounded<T>(
    what: &'static str,
    after: Duration,
    future: impl Future<Output = Result<T, StreamsError>>,
) -> Result<T, StreamsError> {
    tokio::time::timeout(after, future)
        .await
        .map_err(|_| StreamsError::TimedOut { what, after })?
}

/// Waits between reconnect attempts: the configured initial wait, doubling up to the
/// maximum, each jittered by ±20 %.
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(config: &StreamConfig) -> Self {
        Self {
            next: config.initial_backoff,
            max: config.max_backoff,
        }
    }

    /// The next wait.
    pub(crate) fn next_wait(&mut self) -> Duration {
        let wait = self.next.mul_f64(0.8 + 0.4 * fastrand::f64());
        self.next = (self.next * 2).min(self.max);
        wait
    }
}

/// The environment producers and consumers are built from.
pub(crate) async fn environment(
    config: &StreamConfig,
    reconnects: &Reconnects,
) -> Result<Environment, StreamsError> {
    connect(config, reconnects, "environment", || {
        Environment::builder()
            .host(&config.host)
            .port(config.port)
            .username(&config.username)
            .password(config.secret())
            .virtual_host(&config.vhost)
            .load_balancer_mode(config.load_balancer_mode)
            .client_provided_name("pubsub-streams")
            .build()
    })
    .await
}

/// Connects with `attempt`, each try bounded by the configured timeout. A broker that
/// cannot be reached is tried [`StreamConfig::connection_attempts`] times with the
/// configured backoff, each failure logged once at WARN; a refused login, an unknown
/// virtual host or a port that speaks another protocol fails at once with what to check.
async fn connect<T, F, Fut>(
    config: &StreamConfig,
    reconnects: &Reconnects,
    role: &'static str,
    mut attempt: F,
) -> Result<T, StreamsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let started = std::time::Instant::now();
    let attempts = config.connection_attempts.max(1);
    let mut backoff = Backoff::new(config);
    let mut tried = 1;
    loop {
        let mark = reconnects.mark();
        let error = match tokio::time::timeout(config.timeout, attempt()).await {
            Ok(Ok(connected)) => {
                tracing::debug!(address = %config.address(), role, attempt = tried, "connected to RabbitMQ Streams");
                reconnects.connected();
                return Ok(connected);
            }
            Ok(Err(error)) => error,
            Err(_) => ClientError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {:?}", config.timeout),
            )),
        };
        let failure = classify(config, &error).await;
        if !failure.is_transient() || tried >= attempts {
            return Err(StreamsError::Connect {
                failure,
                message: describe(config, failure, tried, started.elapsed()),
                source: std::sync::Arc::new(error),
            });
        }
        let pause = backoff.next_wait();
        tracing::warn!(address = %config.address(), role, attempt = tried, of = attempts, error = %pubsub_core::Report::new(&error), retry_in = ?pause, "cannot reach RabbitMQ Streams yet; retrying");
        reconnects.wait(pause, mark).await;
        tried += 1;
    }
}

/// What [`Admin::probe`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    /// The stream does not exist.
    Missing,
    /// The stream exists; the consumer stored nothing on it.
    NoOffset,
    /// The stream exists; the consumer stored this offset.
    Stored(u64),
}

/// The raw client, connected on first use and again after it failed.
pub(crate) struct Admin {
    config: StreamConfig,
    client: Mutex<Option<Client>>,
    /// The reconnect waits of every connection of the transport (see [`Reconnects`]).
    pub(crate) reconnects: Reconnects,
}

impl Admin {
    pub(crate) fn new(config: StreamConfig) -> Self {
        Self {
            reconnects: Reconnects::new(config.host.clone(), config.port),
            config,
            client: Mutex::new(None),
        }
    }

    async fn client(&self) -> Result<Client, StreamsError> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let c = &self.config;
        let options = ClientOptions::builder()
            .host(&c.host)
            .port(c.port)
            .user(&c.username)
            .password(c.secret())
            .v_host(&c.vhost)
            .load_balancer_mode(c.load_balancer_mode)
            .client_provided_name("pubsub-streams-admin".to_owned())
            .build();
        let client = connect(c, &self.reconnects, "admin", || {
            Client::connect(options.clone())
        })
        .await?;
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Runs `call` on the client; a client error drops the client, so the next call
    /// connects again.
    async fn call<T, F, Fut>(&self, what: &'static str, call: F) -> Result<T, StreamsError>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let client = self.client().await?;
        let outcome = tokio::time::timeout(self.config.timeout, call(client)).await;
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(ClientError::RequestError(code))) => Err(StreamsError::Refused {
                what: what.to_owned(),
                code: format!("{code:?}"),
            }),
            Ok(Err(error)) => {
                self.client.lock().await.take();
                Err(StreamsError::client(what, error))
            }
            Err(_) => {
                self.client.lock().await.take();
                Err(StreamsError::TimedOut {
                    what,
                    after: self.config.timeout,
                })
            }
        }
    }

    /// The stream arguments of the configured retention.
    fn retention(&self) -> HashMap<String, String> {
        let retention = &self.config.retention;
        let mut options = HashMap::new();
        if let Some(bytes) = retention.max_length_bytes {
            options.insert("max-length-bytes".to_owned(), bytes.to_string());
        }
        if let Some(age) = retention.max_age {
            options.insert("max-age".to_owned(), format!("{}s", age.as_secs().max(1)));
        }
        if let Some(bytes) = retention.max_segment_size_bytes {
            options.insert(
                "stream-max-segment-size-bytes".to_owned(),
                bytes.to_string(),
            );
        }
        options
    }

    /// Creates `stream` with the configured retention; one that exists is fine.
    pub(crate) async fn create_stream(&self, stream: &str) -> Result<(), StreamsError> {
        let options = self.retention();
        let response = self
            .call("create a stream", |c| async move {
                c.create_stream(stream, options).await
            })
            .await?;
        match response.code() {
            ResponseCode::Ok | ResponseCode::StreamAlreadyExists => Ok(()),
            ResponseCode::PreconditionFailed => {
                // it exists with other arguments (made by another client or an older
                // configuration): RabbitMQ keeps an existing stream's settings anyway
                tracing::warn!(
                    stream,
                    "the stream exists with other arguments than this transport's retention; it keeps its own"
                );
                Ok(())
            }
            code => Err(StreamsError::Refused {
                what: format!("create stream {stream}"),
                code: format!("{code:?}"),
            }),
        }
    }

    /// Creates super stream `stream` (its exchange, and `partitions` bound with keys
    /// `0..n`, as RabbitMQ names them) with the configured retention. One that exists is
    /// fine; if only some partitions exist (one re-created alone), each missing one is
    /// created as a stream.
    pub(crate) async fn create_super_stream(
        &self,
        stream: &str,
        partitions: &[String],
    ) -> Result<(), StreamsError> {
        let options = self.retention();
        let keys: Vec<String> = (0..partitions.len()).map(|i| i.to_string()).collect();
        let names = partitions.to_vec();
        let response = self
            .call("create a super stream", |c| async move {
                c.create_super_stream(stream, names, keys, options).await
            })
            .await?;
        match response.code() {
            ResponseCode::Ok | ResponseCode::StreamAlreadyExists => Ok(()),
            code => {
                tracing::debug!(
                    stream,
                    ?code,
                    "creating the super stream whole failed; creating its partitions"
                );
                for partition in partitions {
                    self.create_stream(partition).await?;
                }
                Ok(())
            }
        }
    }

    /// Deletes `stream`; one that does not exist is fine.
    pub(crate) async fn delete_stream(&self, stream: &str) -> Result<(), StreamsError> {
        let response = self
            .call("delete a stream", |c| async move {
                c.delete_stream(stream).await
            })
            .await?;
        match response.code() {
            ResponseCode::Ok | ResponseCode::StreamDoesNotExist => Ok(()),
            code => Err(StreamsError::Refused {
                what: format!("delete stream {stream}"),
                code: format!("{code:?}"),
            }),
        }
    }

    /// Deletes super stream `stream` (its exchange and partitions); one that does not
    /// exist is fine.
    pub(crate) async fn delete_super_stream(&self, stream: &str) -> Result<(), StreamsError> {
        let response = self
            .call("delete a super stream", |c| async move {
                c.delete_super_stream(stream).await
            })
            .await?;
        match response.code() {
            ResponseCode::Ok | ResponseCode::StreamDoesNotExist => Ok(()),
            code => Err(StreamsError::Refused {
                what: format!("delete super stream {stream}"),
                code: format!("{code:?}"),
            }),
        }
    }

    /// The offset stored for consumer `name` on `stream`; `None` if none is.
    pub(crate) async fn stored_offset(
        &self,
        name: &str,
        stream: &str,
    ) -> Result<Option<u64>, StreamsError> {
        match self.probe(name, stream).await? {
            Probe::Stored(offset) => Ok(Some(offset)),
            Probe::NoOffset => Ok(None),
            Probe::Missing => Err(StreamsError::Refused {
                what: format!("query the offset of {name} on {stream}"),
                code: format!("{:?}", ResponseCode::StreamDoesNotExist),
            }),
        }
    }

    /// Whether `stream` exists, and the offset consumer `name` stored on it: one request
    /// (the client's metadata answer can crash its reader, so it is not used).
    pub(crate) async fn probe(&self, name: &str, stream: &str) -> Result<Probe, StreamsError> {
        let reference = name.to_owned();
        let outcome = self
            .call("query a stored offset", |c| async move {
                c.query_offset(reference, stream).await
            })
            .await;
        let refused = |code: ResponseCode| format!("{code:?}");
        match outcome {
            Ok(offset) => Ok(Probe::Stored(offset)),
            Err(StreamsError::Refused { code, .. })
                if code == refused(ResponseCode::OffsetNotFound) =>
            {
                Ok(Probe::NoOffset)
            }
            Err(StreamsError::Refused { code, .. })
                if code == refused(ResponseCode::StreamDoesNotExist) =>
            {
                Ok(Probe::Missing)
            }
            Err(error) => Err(error),
        }
    }

    /// Stores `offset` for consumer `name` on `stream` (the broker does not answer).
    pub(crate) async fn store_offset(
        &self,
        name: &str,
        stream: &str,
        offset: u64,
    ) -> Result<(), StreamsError> {
        self.call("store an offset", |c| async move {
            c.store_offset(name, stream, offset).await
        })
        .await
    }

    /// Stores `offset` and waits until the broker reads it back, so that a consumer
    /// started right after (on any connection) resumes after it.
    pub(crate) async fn store_offset_confirmed(
        &self,
        name: &str,
        stream: &str,
        offset: u64,
    ) -> Result<(), StreamsError> {
        self.store_offset(name, stream, offset).await?;
        bounded("store an offset", self.config.timeout, async {
            loop {
                if self
                    .stored_offset(name, stream)
                    .await?
                    .is_some_and(|stored| stored >= offset)
                {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
    }

    /// The last publishing id the broker has for producer `name` on `stream` (0: none).
    pub(crate) async fn publisher_sequence(
        &self,
        name: &str,
        stream: &str,
    ) -> Result<u64, StreamsError> {
        self.call("query a publisher sequence", |c| async move {
            c.query_publisher_sequence(name, stream).await
        })
        .await
    }

    pub(crate) async fn close(&self) {
        if let Some(client) = self.client.lock().await.take() {
            let _ = client.close().await;
        }
    }
}

/// Where a subscription starts, in the client's terms.
pub(crate) fn offset_specification(start: pubsub_core::stream::StartAt) -> OffsetSpecification {
    use pubsub_core::stream::StartAt;
    match start {
        StartAt::First => OffsetSpecification::First,
        StartAt::Last => OffsetSpecification::Last,
        StartAt::Offset(offset) => OffsetSpecification::Offset(offset),
        StartAt::Timestamp(time) => {
            let millis = time
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            OffsetSpecification::Timestamp(millis)
        }
        // StartAt::Next and anything added later
        _ => OffsetSpecification::Next,
    }
}
