//! Why a connection to the broker failed, sorted by what fixes it, and what answers at an
//! address when the client's handshake fails there.
//!
//! Both RabbitMQ transports sort their client's connect errors into a [`ConnectFailure`]:
//! a refused login, an unknown virtual host, a peer that speaks another protocol and a
//! failed TLS handshake are reported at once (retrying repeats them), while a broker that
//! cannot be reached yet is retried with backoff.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why no connection to the broker could be made, by what fixes it. Only
/// [`Unreachable`](Self::Unreachable) may go away by waiting.
///
/// ```
/// use pubsub::transport::{ConnectFailure, Peer};
/// assert!(ConnectFailure::Unreachable.is_transient());
/// assert!(!ConnectFailure::LoginRefused.is_transient());
/// assert!(!ConnectFailure::NotTheProtocol { found: Peer::Http }.is_transient());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectFailure {
    /// The broker refused the user name or password.
    LoginRefused,
    /// The virtual host does not exist, or the user may not use it.
    VhostRefused,
    /// Something answers at the address, but not the protocol the transport speaks (the
    /// streams port given for AMQP, the management port, ...).
    NotTheProtocol {
        /// What answers there.
        found: Peer,
    },
    /// The TLS handshake failed (a plain port for `amqps://`, a certificate not trusted).
    Tls,
    /// Nothing answered in time, the connection was refused or reset, or the name did not
    /// resolve: the broker may not be up yet.
    Unreachable,
}

impl ConnectFailure {
    /// Whether waiting and trying again may help.
    pub fn is_transient(self) -> bool {
        self == Self::Unreachable
    }

    /// Why a handshake that the peer at `host:port` broke off failed, for a transport
    /// whose protocol is `speaks`: [`identify_peer`] looks; a peer of that protocol (a
    /// broker closing on us while it shuts down, say) or one gone meanwhile is
    /// [`Unreachable`](Self::Unreachable), anything else is
    /// [`NotTheProtocol`](Self::NotTheProtocol).
    ///
    /// ```no_run
    /// # async fn run() {
    /// use pubsub::transport::{ConnectFailure, Peer};
    /// let failure = ConnectFailure::of_broken_handshake("localhost", 5552, Peer::Amqp).await;
    /// assert_eq!(failure, ConnectFailure::NotTheProtocol { found: Peer::RabbitStreams });
    /// # }
    /// ```
    pub async fn of_broken_handshake(host: &str, port: u16, speaks: Peer) -> Self {
        match identify_peer(host, port).await {
            Peer::Unreachable => Self::Unreachable,
            found if found == speaks => Self::Unreachable,
            found => Self::NotTheProtocol { found },
        }
    }
}

/// What answers at a host and port, as far as a short probe can tell
/// ([`identify_peer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Peer {
    /// An AMQP 0-9-1 broker (RabbitMQ's port 5672, or 5671 under TLS).
    Amqp,
    /// A RabbitMQ Streams server (port 5552, or 5551 under TLS).
    RabbitStreams,
    /// An HTTP server (RabbitMQ's management UI and API on 15672, say).
    Http,
    /// A server that expects a TLS handshake first.
    Tls,
    /// It accepts the connection and closes it without a word, or answers with bytes of no
    /// protocol named here.
    Unknown,
    /// Nothing could be reached there (refused, unresolved, or no answer in time).
    Unreachable,
}

impl Peer {
    /// What usually listens this way, for error messages (`the RabbitMQ Streams port
    /// (5552 by default)`).
    pub fn describe(self) -> &'static str {
        match self {
            Self::Amqp => "an AMQP 0-9-1 port (RabbitMQ's 5672 by default)",
            Self::RabbitStreams => "a RabbitMQ Streams port (5552 by default)",
            Self::Http => "an HTTP server (RabbitMQ's management port is 15672 by default)",
            Self::Tls => "a TLS port (amqps:// on 5671 by default)",
            Self::Unknown => "a server that speaks neither AMQP nor RabbitMQ Streams",
            Self::Unreachable => "nothing reachable",
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

/// How long [`identify_peer`] waits for each probe's answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Finds out what answers at `host:port`, in at most two short connections of at most
/// two seconds each: one sends an HTTP request line (an AMQP broker answers it with its
/// protocol header, an HTTP server with a status line, a TLS server with an alert), and
/// if the peer closed without a word, one sends a RabbitMQ Streams `PeerProperties`
/// request. Transports call it when their client's handshake fails, to say which port
/// was given.
///
/// ```no_run
/// # async fn run() {
/// use pubsub::transport::{identify_peer, Peer};
/// let peer = identify_peer("localhost", 5552).await;
/// assert_eq!(peer, Peer::RabbitStreams);
/// # }
/// ```
pub async fn identify_peer(host: &str, port: u16) -> Peer {
    let first = match probe(host, port, b"HEAD / HTTP/1.0\r\n\r\n").await {
        Ok(answer) => answer,
        Err(()) => return Peer::Unreachable,
    };
    match first.as_slice() {
        [b'A', b'M', b'Q', b'P', ..] => Peer::Amqp,
        [b'H', b'T', b'T', b'P', ..] => Peer::Http,
        // a TLS record: alert (21) or handshake (22), version 3.x
        [21 | 22, 3, ..] => Peer::Tls,
        [] => match probe(host, port, &PEER_PROPERTIES_REQUEST).await {
            Ok(answer) if answer.get(4..6) == Some(&[0x80, 0x11]) => Peer::RabbitStreams,
            Ok(_) => Peer::Unknown,
            Err(()) => Peer::Unreachable,
        },
        _ => Peer::Unknown,
    }
}

/// A RabbitMQ Streams `PeerProperties` request (key 0x0011, version 1, correlation 1, no
/// properties), framed with its size; the answer has key 0x8011.
const PEER_PROPERTIES_REQUEST: [u8; 16] = [
    0, 0, 0, 12, // frame size
    0x00, 0x11, // key: PeerProperties
    0x00, 0x01, // version
    0, 0, 0, 1, // correlation id
    0, 0, 0, 0, // no properties
];

/// Connects, writes `request`, and reads what comes back within [`PROBE_TIMEOUT`]
/// (empty: the peer closed without a word, or said nothing in time). `Err`: no
/// connection.
async fn probe(host: &str, port: u16, request: &[u8]) -> Result<Vec<u8>, ()> {
    let connect = tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect((host, port)));
    let mut stream = match connect.await {
        Ok(Ok(stream)) => stream,
        _ => return Err(()),
    };
    let exchange = async {
        stream.write_all(request).await?;
        let mut answer = vec![0; 16];
        let mut read = 0;
        while read < 8 {
            match stream.read(&mut answer[read..]).await? {
                0 => break,
                n => read += n,
            }
        }
        answer.truncate(read);
        Ok::<_, std::io::Error>(answer)
    };
    match tokio::time::timeout(PROBE_TIMEOUT, exchange).await {
        Ok(Ok(answer)) => Ok(answer),
        // reset while writing or reading, or silent: nothing told
        _ => Ok(Vec::new()),
    }
}
