//! [`AmqpConfig`]: where the broker is and how to talk to it, from a URL, the environment or
//! code. The password lives only inside the parsed URL and is never printed.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use lapin::uri::AMQPUri;

use crate::error::AmqpError;
use crate::management::ManagementUrl;

/// The kind of the service queues the AMQP transport declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum QueueType {
    /// A classic queue (single replica).
    #[default]
    Classic,
    /// A replicated quorum queue; past `delivery_limit` deliveries the broker dead-letters
    /// a message instead of delivering it again (RabbitMQ's default limit is 20).
    Quorum {
        /// The broker's delivery limit (`None`: the broker's default).
        delivery_limit: Option<u32>,
    },
}

/// The full broker URL, `amqp://user:password@host:port/vhost` (or `amqps://`).
pub const ENV_URL: &str = "RABBITMQ_URL";
/// Broker host, when [`ENV_URL`] is not set (default `localhost`).
pub const ENV_HOST: &str = "RABBITMQ_HOST";
/// Broker port, when [`ENV_URL`] is not set (default 5672).
pub const ENV_PORT: &str = "RABBITMQ_PORT";
/// User name, when [`ENV_URL`] is not set (default `guest`).
pub const ENV_USERNAME: &str = "RABBITMQ_USERNAME";
/// Password, when [`ENV_URL`] is not set (default `guest`).
pub const ENV_PASSWORD: &str = "RABBITMQ_PASSWORD";
/// Virtual host, when [`ENV_URL`] is not set (default `/`).
pub const ENV_VHOST: &str = "RABBITMQ_VHOST";
/// The RabbitMQ management HTTP API, `http(s)://[user:password@]host:port` (default: the
/// AMQP host on port 15672, with the AMQP credentials); `off` turns off the check for
/// stale bindings that needs it (see [`AmqpConfig::management_url`]).
pub const ENV_MANAGEMENT_URL: &str = "RABBITMQ_MANAGEMENT_URL";

/// How to reach RabbitMQ over AMQP 0-9-1, and the options of what the transport declares.
///
/// Settings come, in this order of precedence, from code (the builder methods), the
/// specific environment variables, [`ENV_URL`], then the defaults. `Debug` and every error
/// show the URL with its password replaced by `***`.
///
/// ```
/// use std::time::Duration;
/// use pubsub_amqp::{AmqpConfig, QueueType};
///
/// let config = AmqpConfig::from_url("amqp://app:s3cret@rabbit.internal:5672/shop")?
///     .connection_attempts(5)
///     .prefetch(200)
///     .exchange("shop.events")
///     .queue_type(QueueType::Quorum { delivery_limit: Some(10) });
/// assert_eq!(config.url(), "amqp://app:***@rabbit.internal:5672/shop");
/// assert!(!format!("{config:?}").contains("s3cret"));
/// # Ok::<(), pubsub_amqp::AmqpError>(())
/// ```
#[derive(Clone)]
pub struct AmqpConfig {
    uri: AMQPUri,
    /// Connection attempts before giving up (at least 1; default 10).
    pub connection_attempts: u32,
    /// Wait after the first failed attempt, doubling up to `max_backoff` (default 500 ms).
    pub initial_backoff: Duration,
    /// Longest wait between attempts (default 10 s); see [`backoff`](Self::backoff).
    pub max_backoff: Duration,
    /// Unsettled deliveries per consumer (default 100).
    pub prefetch: u16,
    /// The durable topic exchange events are published to (default `pubsub.events`).
    pub exchange: String,
    /// Classic or quorum service queues (default classic).
    pub queue_type: QueueType,
    /// How service queues are declared.
    pub queue: QueueOptions,
    /// How long a publish waits for its frames to be written and for the broker's
    /// confirmation, each (default 30 s).
    pub publish_timeout: Duration,
    /// Where the management API is (`None`: the AMQP host, port 15672, or 15671 for
    /// `amqps://`), for the check for stale bindings.
    management: Option<ManagementUrl>,
    /// Whether a service's start removes the stale bindings of its queue.
    remove_stale_bindings: bool,
}

/// How the transport declares a service queue (as the seed systems let their users).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueOptions {
    /// Survives a broker restart (default true).
    pub durable: bool,
    /// Only this connection may use it, and it goes with it (default false). For a queue
    /// of one process (a live reader named with a uuid, say): its dead-letter queue and
    /// wait queues are then exclusive and its dead-letter exchange auto-delete, so nothing
    /// of it outlives the process.
    pub exclusive: bool,
    /// Deleted when its last consumer goes (default false); its dead-letter queue, wait
    /// queues and dead-letter exchange then go with their connection, as for `exclusive`.
    pub auto_delete: bool,
    /// Extra `x-` arguments (`x-max-length`, `x-message-ttl`, ...).
    pub arguments: BTreeMap<String, Argument>,
}

impl QueueOptions {
    /// Whether the queue goes with its connection or its consumers (exclusive or
    /// auto-delete): a queue of one process, whose dead-letter queue, dead-letter exchange
    /// and wait queues must go too.
    pub(crate) fn per_process(&self) -> bool {
        self.exclusive || self.auto_delete
    }
}

impl Default for QueueOptions {
    fn default() -> Self {
        Self {
            durable: true,
            exclusive: false,
            auto_delete: false,
            arguments: BTreeMap::new(),
        }
    }
}

/// The value of a queue argument.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Argument {
    /// A string (`x-overflow: reject-publish`).
    Str(String),
    /// An integer (`x-max-length: 10000`).
    Int(i64),
    /// A boolean (`x-single-active-consumer: true`).
    Bool(bool),
}

impl AmqpConfig {
    /// The broker at `url` (`amqp://` or `amqps://`), with the defaults.
    pub fn from_url(url: &str) -> Result<Self, AmqpError> {
        let uri: AMQPUri = url.parse().map_err(|reason: String| {
            AmqpError::Config(format!(
                "{ENV_URL} is not an AMQP URL ({}): {reason}",
                redact_text(url)
            ))
        })?;
        Ok(Self::from_uri(uri))
    }

    /// From the environment (a `.env` file in the working directory or above is read
    /// first, without overriding variables already set): [`ENV_URL`], or [`ENV_HOST`],
    /// [`ENV_PORT`], [`ENV_USERNAME`], [`ENV_PASSWORD`] and [`ENV_VHOST`], which also
    /// override the URL's parts.
    pub fn from_env() -> Result<Self, AmqpError> {
        // a missing .env is fine; a malformed one is not silently ignored
        if let Err(error) = dotenvy::dotenv()
            && !error.not_found()
        {
            return Err(AmqpError::Config(format!("cannot read .env: {error}")));
        }
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup` (for tests and
    /// for settings kept elsewhere).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, AmqpError> {
        let mut config = match lookup(ENV_URL) {
            Some(url) => Self::from_url(&url)?,
            None => Self::from_url("amqp://guest:guest@localhost:5672/%2f")?,
        };
        let authority = &mut config.uri.authority;
        if let Some(host) = lookup(ENV_HOST) {
            authority.host = host;
        }
        if let Some(port) = lookup(ENV_PORT) {
            authority.port = port.trim().parse().map_err(|_| {
                AmqpError::Config(format!("{ENV_PORT}={port:?} is not a port number"))
            })?;
        }
        if let Some(username) = lookup(ENV_USERNAME) {
            authority.userinfo.username = username;
        }
        if let Some(password) = lookup(ENV_PASSWORD) {
            authority.userinfo.password = password;
        }
        if let Some(vhost) = lookup(ENV_VHOST) {
            config.uri.vhost = vhost;
        }
        match lookup(ENV_MANAGEMENT_URL).as_deref().map(str::trim) {
            None | Some("") => {}
            Some(off) if off.eq_ignore_ascii_case("off") => config.remove_stale_bindings = false,
            Some(url) => {
                let url = ManagementUrl::parse(url).map_err(|reason| {
                    AmqpError::Config(format!("{ENV_MANAGEMENT_URL}: {reason}"))
                })?;
                config.management = Some(url);
            }
        }
        Ok(config)
    }

    fn from_uri(uri: AMQPUri) -> Self {
        Self {
            uri,
            connection_attempts: 10,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
            prefetch: 100,
            exchange: "pubsub.events".to_owned(),
            queue_type: QueueType::Classic,
            queue: QueueOptions::default(),
            publish_timeout: Duration::from_secs(30),
            management: None,
            remove_stale_bindings: true,
        }
    }

    /// The broker URL with the password replaced by `***`.
    pub fn url(&self) -> String {
        let scheme = match self.uri.scheme {
            lapin::uri::AMQPScheme::AMQP => "amqp",
            lapin::uri::AMQPScheme::AMQPS => "amqps",
        };
        let a = &self.uri.authority;
        let vhost = if self.uri.vhost == "/" {
            "%2f".to_owned()
        } else {
            self.uri.vhost.clone()
        };
        format!(
            "{scheme}://{}:***@{}:{}/{vhost}",
            a.userinfo.username, a.host, a.port
        )
    }

    /// The parsed URL, password included, for the connection.
    pub(crate) fn uri(&self) -> &AMQPUri {
        &self.uri
    }

    /// The virtual host.
    pub(crate) fn vhost(&self) -> &str {
        &self.uri.vhost
    }

    /// The management API to check for stale bindings with, credentials included (the
    /// AMQP URL's unless it has its own); `None` when the check is off.
    pub(crate) fn management(&self) -> Option<ManagementUrl> {
        if !self.remove_stale_bindings {
            return None;
        }
        let url = match &self.management {
            Some(url) => url.clone(),
            None => ManagementUrl::derived(&self.uri),
        };
        Some(url.with_default_credentials(&self.uri))
    }

    /// The management API the transport checks a service queue's bindings with, password
    /// hidden; `None` when that check is off.
    ///
    /// ```
    /// use pubsub_amqp::AmqpConfig;
    ///
    /// let config = AmqpConfig::from_url("amqp://app:s3cret@rabbit:5672/%2f")?;
    /// assert_eq!(config.management_endpoint().as_deref(), Some("http://app:***@rabbit:15672"));
    /// assert_eq!(config.remove_stale_bindings(false).management_endpoint(), None);
    /// # Ok::<(), pubsub_amqp::AmqpError>(())
    /// ```
    pub fn management_endpoint(&self) -> Option<String> {
        self.management().map(|url| url.to_string())
    }

    /// The heartbeat interval negotiated with the broker, if set (URL query
    /// `?heartbeat=30`, or [`heartbeat`](Self::heartbeat)).
    pub fn heartbeat_interval(&self) -> Option<Duration> {
        self.uri
            .query
            .heartbeat
            .map(|s| Duration::from_secs(s.into()))
    }

    /// Connection attempts before giving up (at least 1).
    #[must_use]
    pub fn connection_attempts(mut self, attempts: u32) -> Self {
        self.connection_attempts = attempts.max(1);
        self
    }

    /// Backoff between attempts: `initial`, doubling up to `max`, each wait jittered by
    /// ±20 %.
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

    /// The heartbeat interval (whole seconds; 0 turns heartbeats off).
    #[must_use]
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.uri.query.heartbeat = Some(u16::try_from(interval.as_secs()).unwrap_or(u16::MAX));
        self
    }

    /// Unsettled deliveries per consumer (0 is taken as 1).
    #[must_use]
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch.max(1);
        self
    }

    /// The topic exchange events are published to.
    #[must_use]
    pub fn exchange(mut self, exchange: impl Into<String>) -> Self {
        self.exchange = exchange.into();
        self
    }

    /// Classic or quorum service queues.
    #[must_use]
    pub fn queue_type(mut self, queue_type: QueueType) -> Self {
        self.queue_type = queue_type;
        self
    }

    /// How service queues are declared.
    #[must_use]
    pub fn queue_options(mut self, options: QueueOptions) -> Self {
        self.queue = options;
        self
    }

    /// How long a publish waits for the write and for the confirmation, each.
    #[must_use]
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// The RabbitMQ management HTTP API, `http(s)://[user:password@]host:port[/prefix]`,
    /// with the AMQP URL's credentials unless it has its own (default: the AMQP host on
    /// port 15672, or 15671 for `amqps://`; [`ENV_MANAGEMENT_URL`] in the environment).
    ///
    /// When a service starts, the transport asks it for the service queue's bindings and
    /// removes each binding from the events exchange that none of the service's patterns
    /// asks for any more (AMQP cannot list bindings). Without it the service still starts,
    /// and says once, at WARN, that the bindings could not be checked.
    ///
    /// ```
    /// use pubsub_amqp::AmqpConfig;
    ///
    /// let config = AmqpConfig::from_url("amqp://app:s3cret@rabbit:5672/%2f")?
    ///     .management_url("https://rabbit.internal:8443/rabbitmq")?;
    /// assert_eq!(
    ///     config.management_endpoint().as_deref(),
    ///     Some("https://app:***@rabbit.internal:8443/rabbitmq")
    /// );
    /// # Ok::<(), pubsub_amqp::AmqpError>(())
    /// ```
    pub fn management_url(mut self, url: &str) -> Result<Self, AmqpError> {
        let url = ManagementUrl::parse(url)
            .map_err(|reason| AmqpError::Config(format!("the management URL: {reason}")))?;
        self.management = Some(url);
        Ok(self)
    }

    /// Whether a service's start removes the bindings from the events exchange to its
    /// queue that none of its patterns asks for (default true; needs the management API,
    /// see [`management_url`](Self::management_url)). `false` leaves every binding as it
    /// is and never calls the management API; so does [`ENV_MANAGEMENT_URL`]`=off`.
    ///
    /// ```
    /// use pubsub_amqp::AmqpConfig;
    ///
    /// let config = AmqpConfig::from_url("amqp://localhost")?.remove_stale_bindings(false);
    /// assert_eq!(config.management_endpoint(), None);
    /// # Ok::<(), pubsub_amqp::AmqpError>(())
    /// ```
    #[must_use]
    pub fn remove_stale_bindings(mut self, remove: bool) -> Self {
        self.remove_stale_bindings = remove;
        self
    }
}

impl fmt::Debug for AmqpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpConfig")
            .field("url", &self.url())
            .field("heartbeat", &self.heartbeat_interval())
            .field("connection_attempts", &self.connection_attempts)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("prefetch", &self.prefetch)
            .field("exchange", &self.exchange)
            .field("queue_type", &self.queue_type)
            .field("queue", &self.queue)
            .field("publish_timeout", &self.publish_timeout)
            .field("management", &self.management_endpoint())
            .finish()
    }
}

/// `text` (a URL that did not parse) with whatever sits between `://user:` and `@` hidden.
fn redact_text(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return "a value that is not a URL".to_owned();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn defaults_to_a_local_broker() {
        let config = AmqpConfig::from_lookup(env(&[])).unwrap();
        assert_eq!(config.url(), "amqp://guest:***@localhost:5672/%2f");
        assert_eq!(config.connection_attempts, 10);
        assert_eq!(config.prefetch, 100);
        assert!(config.queue.durable);
    }

    #[test]
    fn the_url_from_the_environment_with_parts_overridden() {
        let config = AmqpConfig::from_lookup(env(&[
            (ENV_URL, "amqps://app:pw@rabbit:5671/shop?heartbeat=15"),
            (ENV_PORT, "5999"),
            (ENV_VHOST, "other"),
        ]))
        .unwrap();
        assert_eq!(config.url(), "amqps://app:***@rabbit:5999/other");
        assert_eq!(config.heartbeat_interval(), Some(Duration::from_secs(15)));
    }

    #[test]
    fn the_parts_from_the_environment() {
        let config = AmqpConfig::from_lookup(env(&[
            (ENV_HOST, "mq.internal"),
            (ENV_PORT, "5673"),
            (ENV_USERNAME, "svc"),
            (ENV_PASSWORD, "hunter2"),
            (ENV_VHOST, "prod"),
        ]))
        .unwrap();
        assert_eq!(config.url(), "amqp://svc:***@mq.internal:5673/prod");
        assert_eq!(config.uri().authority.userinfo.password, "hunter2");
    }

    #[test]
    fn bad_values_are_clear_errors_without_the_password() {
        let port = AmqpConfig::from_lookup(env(&[(ENV_PORT, "fifty")])).unwrap_err();
        assert!(port.to_string().contains("RABBITMQ_PORT"), "{port}");
        let url = AmqpConfig::from_lookup(env(&[(ENV_URL, "http://u:topsecret@h:x/")]))
            .unwrap_err()
            .to_string();
        assert!(url.contains("not an AMQP URL"), "{url}");
        assert!(!url.contains("topsecret"), "{url}");
    }

    #[test]
    fn the_management_api_from_the_environment() {
        let derived = AmqpConfig::from_lookup(env(&[(ENV_URL, "amqp://app:pw@mq:5673/%2f")]));
        assert_eq!(
            derived.unwrap().management_endpoint().as_deref(),
            Some("http://app:***@mq:15672")
        );
        let given = AmqpConfig::from_lookup(env(&[(ENV_MANAGEMENT_URL, "http://127.0.0.1:15673")]));
        let given = given.unwrap().management().unwrap();
        assert_eq!(given.to_string(), "http://guest:***@127.0.0.1:15673");
        let off = AmqpConfig::from_lookup(env(&[(ENV_MANAGEMENT_URL, "OFF")])).unwrap();
        assert_eq!(off.management_endpoint(), None);
        assert_eq!(
            off.remove_stale_bindings(true)
                .management_endpoint()
                .as_deref(),
            Some("http://guest:***@localhost:15672")
        );
        let bad = AmqpConfig::from_lookup(env(&[(ENV_MANAGEMENT_URL, "amqp://u:secret@h")]));
        let bad = bad.unwrap_err().to_string();
        assert!(
            bad.contains(ENV_MANAGEMENT_URL) && !bad.contains("secret"),
            "{bad}"
        );
    }

    #[test]
    fn the_password_never_shows_in_debug() {
        let config = AmqpConfig::from_url("amqp://app:pa55word@h:5672/%2f")
            .unwrap()
            .management_url("http://ops:pa55word@h:15672")
            .unwrap();
        let debug = format!("{config:?} {config:#?}");
        assert!(!debug.contains("pa55word"), "{debug}");
        assert!(debug.contains("app:***@h"), "{debug}");
    }
}
