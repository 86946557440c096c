//! [`StreamConfig`]: where the broker's stream port is, how to log in, and how streams are
//! created, from the environment or code. The password is never printed.

use std::fmt;
use std::time::Duration;

use pubsub_core::stream::{Retention, StreamNaming};

use crate::error::StreamsError;

/// Broker host (default `localhost`); [`ENV_STREAM_HOST`] wins over it.
pub const ENV_HOST: &str = "RABBITMQ_HOST";
/// Broker host for the stream protocol only (as `scripts/broker.sh env` prints it).
pub const ENV_STREAM_HOST: &str = "RABBITMQ_STREAM_HOST";
/// The stream protocol port (default 5552).
pub const ENV_STREAM_PORT: &str = "RABBITMQ_STREAM_PORT";
/// User name (default `guest`).
pub const ENV_USERNAME: &str = "RABBITMQ_USERNAME";
/// Password (default `guest`).
pub const ENV_PASSWORD: &str = "RABBITMQ_PASSWORD";
/// Virtual host (default `/`).
pub const ENV_VHOST: &str = "RABBITMQ_VHOST";
/// `true` to connect only to the configured host and port (see
/// [`StreamConfig::load_balancer_mode`]).
pub const ENV_LOAD_BALANCER: &str = "RABBITMQ_STREAM_LOAD_BALANCER";

/// How to reach RabbitMQ's stream protocol, how streams are named and created, and the
/// bounds of publishing.
///
/// Precedence: code (the builder methods), then [`ENV_STREAM_HOST`] over [`ENV_HOST`], and
/// the other variables, then the defaults. `Debug`, errors and logs never show the
/// password.
///
/// **Docker and the advertised host.** After the first connection the client connects to
/// the host and port the broker *advertises* for the stream's leader: by default the host
/// part of the node name, in Docker the container id, which the host cannot resolve.
/// Either set `stream.advertised_host` / `stream.advertised_port` on the broker, or turn
/// on [`load_balancer_mode`](Self::load_balancer_mode) (or `RABBITMQ_STREAM_LOAD_BALANCER=true`):
/// every connection then goes to the configured host and port.
///
/// ```
/// use std::time::Duration;
/// use pubsub_streams::StreamConfig;
///
/// let config = StreamConfig::from_lookup(|name| match name {
///     "RABBITMQ_HOST" => Some("rabbit.internal".into()),
///     "RABBITMQ_PASSWORD" => Some("s3cret".into()),
///     _ => None,
/// })?
/// .max_length_bytes(5_000_000_000)
/// .max_age(Duration::from_secs(7 * 24 * 3600));
/// assert_eq!((config.host.as_str(), config.port), ("rabbit.internal", 5552));
/// assert!(!format!("{config:?}").contains("s3cret"));
/// # Ok::<(), pubsub_streams::StreamsError>(())
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct StreamConfig {
    /// Broker host.
    pub host: String,
    /// Stream protocol port.
    pub port: u16,
    /// User name.
    pub username: String,
    password: String,
    /// Virtual host.
    pub vhost: String,
    /// Connect every client to `host:port`, never to the advertised host (default off).
    pub load_balancer_mode: bool,
    /// Retention of the streams the transport creates (the broker's defaults unless set):
    /// the same [`Retention`] the memory broker's streams take.
    pub retention: Retention,
    /// How events map to streams (default: `events.{domain}`).
    pub naming: StreamNaming,
    /// Longest wait for one operation with the broker: a confirm, a connect, a create
    /// (default 10 s).
    pub timeout: Duration,
    /// Longest a publish may take from start to confirm (default 30 s), reconnecting,
    /// re-creating a deleted stream and re-sending included.
    pub publish_timeout: Duration,
    /// Connection attempts before giving up on a broker that cannot be reached (at least 1;
    /// default 10, as on AMQP). A refused login or a wrong port fails at the first.
    pub connection_attempts: u32,
    /// Wait after the first failed reconnect (default 500 ms), doubling up to
    /// `max_backoff` (default 10 s), each wait jittered by ±20 %.
    pub initial_backoff: Duration,
    /// Longest wait between reconnect attempts; see [`backoff`](Self::backoff).
    pub max_backoff: Duration,
    /// How often a consumer waiting for messages checks that its stream still exists
    /// (default 1 s): the client does not tell a consumer its stream was deleted.
    pub check_interval: Duration,
    /// Most messages per publish frame (default 100). Whatever the count, a producer
    /// keeps the bytes it has sent and not seen confirmed under the frame size of 1 MiB,
    /// so no frame (and no chunk the broker writes of them) passes it: consumers could not
    /// read such a chunk.
    pub batch_size: usize,
    /// Largest message this transport publishes, body and properties (default 64 KiB); a
    /// larger one is refused with an error.
    pub max_message_size: usize,
    /// Tells this process's producers from those of other instances of the same service
    /// (default none). A producer is named `{service}@{stream}`, or
    /// `{service}#{instance}@{stream}` with an instance: the broker de-duplicates by name,
    /// so **two running producers must never share a name** (the second's ids would be
    /// dropped as duplicates). Give each instance of a service that runs several a stable
    /// instance id (a pod name, say).
    pub instance: Option<String>,
}

/// The frame size RabbitMQ and the client agree on (1 MiB), less room for the frame's
/// own header.
pub(crate) const FRAME_BUDGET: usize = 1_048_576 - 1024;
/// Room per message in a frame for its encoding (ids, lengths, AMQP 1.0 sections).
pub(crate) const MESSAGE_OVERHEAD: usize = 512;

impl StreamConfig {
    /// `localhost:5552`, user `guest`, vhost `/`, the defaults.
    pub fn new() -> Self {
        Self {
            host: "localhost".to_owned(),
            port: 5552,
            username: "guest".to_owned(),
            password: "guest".to_owned(),
            vhost: "/".to_owned(),
            load_balancer_mode: false,
            retention: Retention::default(),
            naming: StreamNaming::default(),
            timeout: Duration::from_secs(10),
            publish_timeout: Duration::from_secs(30),
            connection_attempts: 10,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
            check_interval: Duration::from_secs(1),
            batch_size: 100,
            max_message_size: 64 * 1024,
            instance: None,
        }
    }

    /// From the environment (a `.env` file in the working directory or above is read
    /// first, without overriding variables already set).
    ///
    /// # Errors
    /// [`StreamsError::Config`] for a malformed `.env` or a bad number.
    pub fn from_env() -> Result<Self, StreamsError> {
        if let Err(error) = dotenvy::dotenv()
            && !error.not_found()
        {
            return Err(StreamsError::Config(format!("cannot read .env: {error}")));
        }
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup`.
    ///
    /// # Errors
    /// [`StreamsError::Config`] for a port that is not a number or a bad boolean.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, StreamsError> {
        let mut config = Self::new();
        if let Some(host) = lookup(ENV_STREAM_HOST).or_else(|| lookup(ENV_HOST)) {
            config.host = host;
        }
        if let Some(port) = lookup(ENV_STREAM_PORT) {
            config.port = port.trim().parse().map_err(|_| {
                StreamsError::Config(format!("{ENV_STREAM_PORT}={port:?} is not a port number"))
            })?;
        }
        if let Some(username) = lookup(ENV_USERNAME) {
            config.username = username;
        }
        if let Some(password) = lookup(ENV_PASSWORD) {
            config.password = password;
        }
        if let Some(vhost) = lookup(ENV_VHOST) {
            config.vhost = vhost;
        }
        if let Some(lb) = lookup(ENV_LOAD_BALANCER) {
            config.load_balancer_mode = match lb.trim() {
                "1" | "true" | "yes" => true,
                "0" | "false" | "no" | "" => false,
                other => {
                    return Err(StreamsError::Config(format!(
                        "{ENV_LOAD_BALANCER}={other:?} is not a boolean"
                    )));
                }
            };
        }
        Ok(config)
    }

    /// Sets the password.
    #[must_use]
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = password.into();
        self
    }

    /// Connects only to the configured host and port (the Docker trap, above).
    #[must_use]
    pub fn load_balancer_mode(mut self, enabled: bool) -> Self {
        self.load_balancer_mode = enabled;
        self
    }

    /// Created streams keep what `retention` says.
    ///
    /// ```
    /// use std::time::Duration;
    /// use pubsub_core::stream::Retention;
    /// use pubsub_streams::StreamConfig;
    ///
    /// let day = Retention::default().max_age(Duration::from_secs(86_400));
    /// let config = StreamConfig::new().retention(day);
    /// assert_eq!(config.retention.max_age, Some(Duration::from_secs(86_400)));
    /// ```
    #[must_use]
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// Created streams keep at most this many bytes.
    #[must_use]
    pub fn max_length_bytes(mut self, bytes: u64) -> Self {
        self.retention.max_length_bytes = Some(bytes);
        self
    }

    /// Created streams drop segments older than `age`.
    #[must_use]
    pub fn max_age(mut self, age: Duration) -> Self {
        self.retention.max_age = Some(age);
        self
    }

    /// Segment size of created streams.
    #[must_use]
    pub fn max_segment_size_bytes(mut self, bytes: u64) -> Self {
        self.retention.max_segment_size_bytes = Some(bytes);
        self
    }

    /// How events map to streams.
    #[must_use]
    pub fn naming(mut self, naming: StreamNaming) -> Self {
        self.naming = naming;
        self
    }

    /// Longest wait for one broker operation.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Longest a publish may take, confirm and recovery included.
    #[must_use]
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// Connection attempts before giving up on a broker that cannot be reached (at least
    /// 1): the first connection and each reconnect of the raw client.
    #[must_use]
    pub fn connection_attempts(mut self, attempts: u32) -> Self {
        self.connection_attempts = attempts.max(1);
        self
    }

    /// Backoff between connection attempts and reconnects: `initial`, doubling up to
    /// `max`, each wait jittered by ±20 %.
    ///
    /// The backoff only paces attempts at a broker whose port accepts TCP but not the
    /// handshake: between attempts each connection probes the port with a bare TCP connect
    /// every [`PROBE_EVERY`](pubsub_core::transport::PROBE_EVERY) (250 ms) and attempts at
    /// once when a port that was closed accepts again, and a connection of the transport
    /// that comes back ends the others' waits
    /// ([`Reconnects`](pubsub_core::transport::Reconnects)). So every connection is back
    /// within about 2 s of the broker's port reopening, however long the outage was.
    #[must_use]
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// How often an idle consumer checks that its stream still exists.
    #[must_use]
    pub fn check_interval(mut self, interval: Duration) -> Self {
        self.check_interval = interval.max(Duration::from_millis(50));
        self
    }

    /// Messages per publish frame (at least 1).
    #[must_use]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Largest message published (at least 1 KiB, at most 1 MiB less room for the
    /// frame).
    #[must_use]
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes.clamp(1024, FRAME_BUDGET - MESSAGE_OVERHEAD);
        self
    }

    /// Messages per publish frame: the batch size, at least 1 (the field is public).
    pub(crate) fn frame_messages(&self) -> usize {
        self.batch_size.max(1)
    }

    /// Names this instance's producers (see [`instance`](Self#structfield.instance)).
    #[must_use]
    pub fn instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// The producer name of `service` on `stream`.
    pub fn producer_name(&self, service: &str, stream: &str) -> String {
        match &self.instance {
            Some(instance) => format!("{service}#{instance}@{stream}"),
            None => format!("{service}@{stream}"),
        }
    }

    /// `rabbitmq-stream://user:***@host:port/vhost` (vhost `/` written `%2f`, as in AMQP
    /// URLs), for logs and errors.
    pub fn address(&self) -> String {
        let vhost = self.vhost.replace('/', "%2f");
        format!(
            "rabbitmq-stream://{}:***@{}:{}/{vhost}",
            self.username, self.host, self.port
        )
    }

    /// The password, for the connection only.
    pub(crate) fn secret(&self) -> &str {
        &self.password
    }
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for StreamConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamConfig")
            .field("address", &self.address())
            .field("load_balancer_mode", &self.load_balancer_mode)
            .field("retention", &self.retention)
            .field("naming", &self.naming)
            .field("timeout", &self.timeout)
            .field("max_message_size", &self.max_message_size)
            .field("publish_timeout", &self.publish_timeout)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("check_interval", &self.check_interval)
            .field("batch_size", &self.batch_size)
            .field("instance", &self.instance)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn defaults_without_environment() {
        let config = StreamConfig::from_lookup(|_| None).expect("defaults");
        assert_eq!(
            config.address(),
            "rabbitmq-stream://guest:***@localhost:5552/%2f"
        );
        assert!(!config.load_balancer_mode);
        assert_eq!(config.naming, StreamNaming::default());
    }

    #[test]
    fn the_stream_host_wins_over_the_generic_one() {
        let config = StreamConfig::from_lookup(lookup(&[
            (ENV_HOST, "generic"),
            (ENV_STREAM_HOST, "127.0.0.1"),
            (ENV_STREAM_PORT, "5553"),
            (ENV_USERNAME, "app"),
            (ENV_PASSWORD, "hunter2"),
            (ENV_VHOST, "shop"),
            (ENV_LOAD_BALANCER, "true"),
        ]))
        .expect("valid");
        assert_eq!((config.host.as_str(), config.port), ("127.0.0.1", 5553));
        assert_eq!(config.secret(), "hunter2");
        assert!(config.load_balancer_mode);
        let shown = format!("{config:?} {}", config.address());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("app:***@127.0.0.1:5553/shop"), "{shown}");
    }

    #[test]
    fn bad_numbers_are_reported_without_the_password() {
        let error = StreamConfig::from_lookup(lookup(&[
            (ENV_STREAM_PORT, "fifty"),
            (ENV_PASSWORD, "hunter2"),
        ]))
        .expect_err("not a port");
        let text = error.to_string();
        assert!(
            text.contains("fifty") && !text.contains("hunter2"),
            "{text}"
        );
        assert!(StreamConfig::from_lookup(lookup(&[(ENV_LOAD_BALANCER, "maybe")])).is_err());
    }
}
