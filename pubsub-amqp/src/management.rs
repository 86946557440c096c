//! The RabbitMQ management HTTP API, for what AMQP 0-9-1 cannot do: list a queue's
//! bindings (`GET /api/queues/{vhost}/{queue}/bindings`) and remove one
//! (`DELETE /api/bindings/{vhost}/e/{exchange}/q/{queue}/{properties_key}`).
//!
//! [`ManagementUrl`] is where the API is and with which credentials (the password never
//! printed); [`ManagementApi`] makes the calls, each bounded by a timeout, with ureq on
//! tokio's blocking pool.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use lapin::uri::{AMQPScheme, AMQPUri};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// The port of the management API when its URL is derived from an `amqp://` URL.
const HTTP_PORT: u16 = 15672;
/// The port of the management API when its URL is derived from an `amqps://` URL.
const HTTPS_PORT: u16 = 15671;

/// A path segment: everything but the unreserved characters is percent-encoded (`/` in a
/// vhost becomes `%2F`, `#` in a routing key `%23`).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Where the management API is: `http(s)://host:port[/prefix]`, and who to be there.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ManagementUrl {
    /// Scheme, host, port and path prefix, without credentials or a trailing `/`.
    base: String,
    /// Credentials from the URL, if it had some.
    credentials: Option<(String, String)>,
}

impl ManagementUrl {
    /// Parses `http(s)://[user[:password]@]host[:port][/prefix]`; the error names what is
    /// wrong, without the password.
    pub(crate) fn parse(url: &str) -> Result<Self, String> {
        let url = url.trim();
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| "not a URL (expected http://host:port)".to_owned())?;
        if !matches!(scheme, "http" | "https") {
            return Err(format!("the scheme is {scheme:?}, not http or https"));
        }
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (credentials, host) = match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
                (Some((decode(user), decode(password))), host)
            }
            None => (None, authority),
        };
        if host.is_empty() || host.starts_with(':') {
            return Err("the URL has no host".to_owned());
        }
        Ok(Self {
            base: format!("{scheme}://{host}{}", path.trim_end_matches('/')),
            credentials,
        })
    }

    /// `http://<host>:15672` for an `amqp://` broker (`https://<host>:15671` for `amqps://`).
    pub(crate) fn derived(amqp: &AMQPUri) -> Self {
        let (scheme, port) = match amqp.scheme {
            AMQPScheme::AMQP => ("http", HTTP_PORT),
            AMQPScheme::AMQPS => ("https", HTTPS_PORT),
        };
        let host = &amqp.authority.host;
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]") // an IPv6 address
        } else {
            host.clone()
        };
        Self {
            base: format!("{scheme}://{host}:{port}"),
            credentials: None,
        }
    }

    /// This URL with `amqp`'s credentials where it has none of its own.
    pub(crate) fn with_default_credentials(mut self, amqp: &AMQPUri) -> Self {
        if self.credentials.is_none() {
            let user = &amqp.authority.userinfo;
            self.credentials = Some((user.username.clone(), user.password.clone()));
        }
        self
    }
}

/// The URL with the password replaced by `***`.
impl fmt::Display for ManagementUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.credentials, self.base.split_once("://")) {
            (Some((user, _)), Some((scheme, rest))) => write!(f, "{scheme}://{user}:***@{rest}"),
            _ => f.write_str(&self.base),
        }
    }
}

impl fmt::Debug for ManagementUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One binding of a queue, as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub(crate) struct Binding {
    /// The exchange (`""`: the default exchange).
    pub(crate) source: String,
    /// The queue (or exchange) bound.
    pub(crate) destination: String,
    /// `queue` or `exchange`.
    pub(crate) destination_type: String,
    /// The binding key.
    pub(crate) routing_key: String,
    /// What names the binding in a `DELETE` (the key, and a hash of its arguments if any).
    pub(crate) properties_key: String,
}

/// Why the management API could not answer.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// No answer: refused, unknown host, timed out, TLS failed.
    Unreachable(String),
    /// 401 or 403: the credentials are wrong, or the user may not use the API.
    Denied(u16),
    /// 404: no such queue or binding (or no management API at this address).
    NotFound,
    /// Another status.
    Status(u16),
    /// An answer that is not what the API returns.
    Malformed(String),
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable(reason) => write!(f, "no answer: {reason}"),
            Self::Denied(status) => write!(
                f,
                "HTTP {status}: the credentials are refused or the user lacks the management tag"
            ),
            Self::NotFound => {
                f.write_str("HTTP 404: not found (is the management plugin enabled?)")
            }
            Self::Status(status) => write!(f, "HTTP {status}"),
            Self::Malformed(reason) => write!(f, "an answer the API does not give: {reason}"),
        }
    }
}

/// A client of the management API, each call bounded by a timeout.
#[derive(Clone)]
pub(crate) struct ManagementApi {
    url: ManagementUrl,
    agent: ureq::Agent,
}

impl fmt::Debug for ManagementApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagementApi")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl ManagementApi {
    /// A client of the API at `url`; every call gives up after `timeout`. HTTPS trusts the
    /// host's certificate store, as the AMQP connection does.
    pub(crate) fn new(url: ManagementUrl, timeout: Duration) -> Self {
        let mut config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .user_agent("pubsub-amqp");
        if url.base.starts_with("https:") {
            let roots = native_roots();
            if !roots.is_empty() {
                let roots = ureq::tls::RootCerts::Specific(Arc::new(roots));
                config =
                    config.tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build());
            }
        }
        Self {
            url,
            agent: config.build().into(),
        }
    }

    /// Where the API is (password hidden when displayed).
    pub(crate) fn url(&self) -> &ManagementUrl {
        &self.url
    }

    /// Every binding of `queue` in `vhost`.
    pub(crate) async fn queue_bindings(
        &self,
        vhost: &str,
        queue: &str,
    ) -> Result<Vec<Binding>, ApiError> {
        let path = format!("/api/queues/{}/{}/bindings", segment(vhost), segment(queue));
        let body = self.call(Method::Get, path).await?;
        serde_json::from_str(&body).map_err(|e| ApiError::Malformed(e.to_string()))
    }

    /// Removes the binding `properties_key` (as the API listed it: already percent-encoded,
    /// `%23.failed` for `#.failed`) from `exchange` to `queue` in `vhost`.
    pub(crate) async fn delete_binding(
        &self,
        vhost: &str,
        exchange: &str,
        queue: &str,
        properties_key: &str,
    ) -> Result<(), ApiError> {
        let path = format!(
            "/api/bindings/{}/e/{}/q/{}/{}",
            segment(vhost),
            segment(exchange),
            segment(queue),
            properties_key
        );
        self.call(Method::Delete, path).await.map(drop)
    }

    /// One request on the blocking pool; the body of a 2xx answer.
    async fn call(&self, method: Method, path: String) -> Result<String, ApiError> {
        let url = format!("{}{path}", self.url.base);
        let authorization = self.url.credentials.as_ref().map(|(user, password)| {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            format!("Basic {token}")
        });
        let agent = self.agent.clone();
        let call = move || {
            let mut response = match method {
                Method::Get => with_auth(agent.get(&url), authorization).call(),
                Method::Delete => with_auth(agent.delete(&url), authorization).call(),
            }
            .map_err(|e| ApiError::Unreachable(e.to_string()))?;
            match response.status().as_u16() {
                200..=299 => response
                    .body_mut()
                    .read_to_string()
                    .map_err(|e| ApiError::Unreachable(e.to_string())),
                401 | 403 => Err(ApiError::Denied(response.status().as_u16())),
                404 => Err(ApiError::NotFound),
                status => Err(ApiError::Status(status)),
            }
        };
        tokio::task::spawn_blocking(call)
            .await
            .map_err(|e| ApiError::Unreachable(format!("the request's task failed: {e}")))?
    }
}

#[derive(Debug, Clone, Copy)]
enum Method {
    Get,
    Delete,
}

fn with_auth<B>(
    request: ureq::RequestBuilder<B>,
    authorization: Option<String>,
) -> ureq::RequestBuilder<B> {
    match authorization {
        Some(value) => request.header("Authorization", value),
        None => request,
    }
}

fn segment(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

/// The host's trusted roots (empty if none load: then ureq's bundled ones are used).
fn native_roots() -> Vec<ureq::tls::Certificate<'static>> {
    let loaded = rustls_native_certs::load_native_certs();
    for error in &loaded.errors {
        tracing::debug!(%error, "loading the host's trusted certificates");
    }
    loaded
        .certs
        .iter()
        .map(|der| ureq::tls::Certificate::from_der(der.as_ref()).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_with_credentials_and_a_prefix() {
        let url = ManagementUrl::parse("https://ops:p%40ss@mq.internal:8443/rabbit/").unwrap();
        assert_eq!(url.base, "https://mq.internal:8443/rabbit");
        assert_eq!(url.credentials, Some(("ops".to_owned(), "p@ss".to_owned())));
        assert_eq!(url.to_string(), "https://ops:***@mq.internal:8443/rabbit");
        assert!(!format!("{url:?}").contains("p@ss"));
    }

    #[test]
    fn bad_urls_are_refused_without_the_password() {
        for bad in [
            "mq:15672",
            "amqp://u:secret@h:5672",
            "http://",
            "http://u:secret@:1",
        ] {
            let error = ManagementUrl::parse(bad).unwrap_err();
            assert!(!error.contains("secret"), "{error}");
        }
    }

    #[test]
    fn derived_from_the_amqp_url_with_its_credentials() {
        let amqp: AMQPUri = "amqp://app:pw@rabbit:5673/shop".parse().unwrap();
        let url = ManagementUrl::derived(&amqp).with_default_credentials(&amqp);
        assert_eq!(url.to_string(), "http://app:***@rabbit:15672");
        assert_eq!(url.credentials, Some(("app".into(), "pw".into())));
        let amqps: AMQPUri = "amqps://rabbit/%2f".parse().unwrap();
        assert_eq!(ManagementUrl::derived(&amqps).base, "https://rabbit:15671");
        // a URL's own credentials win
        let own = ManagementUrl::parse("http://ops:x@h:1").unwrap();
        assert_eq!(
            own.with_default_credentials(&amqp).to_string(),
            "http://ops:***@h:1"
        );
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(segment("/"), "%2F");
        assert_eq!(segment("#.failed"), "%23.failed");
        assert_eq!(segment("order.*"), "order.%2A");
        assert_eq!(segment("key~abc"), "key~abc");
    }
}
