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

use crate::config::StreamConfig;
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

/// The environment producers and consumers are built from.
pub(crate) async fn environment(config: &StreamConfig) -> Result<Environment, StreamsError> {
    let builder = Environment::builder()
        .host(&config.host)
        .port(config.port)
        .username(&config.username)
        .password(config.secret())
        .virtual_host(&config.vhost)
        .load_balancer_mode(config.load_balancer_mode)
        .client_provided_name("pubsub-streams");
    bounded("connect", config.timeout, async {
        builder
            .build()
            .await
            .map_err(|e| StreamsError::client(format!("connect to {}", config.address()), e))
    })
    .await
}

/// The raw client, connected on first use and again after it failed.
pub(crate) struct Admin {
    config: StreamConfig,
    client: Mutex<Option<Client>>,
}

impl Admin {
    pub(crate) fn new(config: StreamConfig) -> Self {
        Self {
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
        let client = bounded("connect", c.timeout, async {
            Client::connect(options)
                .await
                .map_err(|e| StreamsError::client(format!("connect to {}", c.address()), e))
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

    /// Creates `stream` with the configured retention; one that exists is fine.
    pub(crate) async fn create_stream(&self, stream: &str) -> Result<(), StreamsError> {
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
        let response = self
            .call("create a stream", |c| async move {
                c.create_stream(stream, options).await
            })
            .await?;
        match response.code() {
            ResponseCode::Ok | ResponseCode::StreamAlreadyExists => Ok(()),
            code => Err(StreamsError::Refused {
                what: format!("create stream {stream}"),
                code: format!("{code:?}"),
            }),
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

    /// The offset stored for consumer `name` on `stream`; `None` if none is.
    pub(crate) async fn stored_offset(
        &self,
        name: &str,
        stream: &str,
    ) -> Result<Option<u64>, StreamsError> {
        let name = name.to_owned();
        let outcome = self
            .call("query a stored offset", |c| async move {
                c.query_offset(name, stream).await
            })
            .await;
        match outcome {
            Ok(offset) => Ok(Some(offset)),
            Err(StreamsError::Refused { code, .. })
                if code == format!("{:?}", ResponseCode::OffsetNotFound) =>
            {
                Ok(None)
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
pub(crate) fn offset_specification(start: pubsub_core::StartAt) -> OffsetSpecification {
    use pubsub_core::StartAt;
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
