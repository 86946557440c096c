//! A TCP proxy between a client and the broker that a test can break: cut every
//! connection at once (a reset, as a broker SIGKILLed), refuse new ones (the port closed,
//! as a broker down), black-hole them (bytes accepted, nothing answered, as a network
//! partition), and restore. It disturbs no one else on the shared broker.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

/// What the proxy does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Forwards both ways.
    Forward,
    /// The listening port is closed: connects are refused.
    Refuse,
    /// Accepts connections and bytes, forwards and answers nothing.
    BlackHole,
}

/// A proxy on a port of its own on 127.0.0.1 to `upstream`; stops when dropped.
pub(crate) struct Proxy {
    port: u16,
    mode: watch::Sender<Mode>,
    /// Raised to cut every connection open now.
    cut: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
    connections: Arc<Mutex<u64>>,
}

impl Proxy {
    /// Starts forwarding from a free local port to `upstream` (`host:port`).
    pub(crate) async fn start(upstream: &str) -> Self {
        let upstream = tokio::net::lookup_host(upstream)
            .await
            .expect("resolving the upstream")
            .next()
            .expect("an upstream address");
        let listener = listen(0).await.expect("a free port");
        let port = listener.local_addr().expect("its address").port();
        let (mode, modes) = watch::channel(Mode::Forward);
        let (cut, cuts) = watch::channel(0);
        let connections = Arc::new(Mutex::new(0));
        let task = tokio::spawn(serve(
            listener,
            port,
            upstream,
            modes,
            cuts,
            Arc::clone(&connections),
        ));
        Self {
            port,
            mode,
            cut,
            task,
            connections,
        }
    }

    /// Its port on 127.0.0.1.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// How many connections it accepted so far.
    pub(crate) fn accepted(&self) -> u64 {
        *self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resets every connection open now (both sides see them end at once).
    pub(crate) fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    /// Closes the port: connects are refused until [`restore`](Self::restore).
    pub(crate) fn refuse(&self) {
        self.mode.send_replace(Mode::Refuse);
    }

    /// Connections open and new ones take bytes and answer nothing, until
    /// [`restore`](Self::restore).
    pub(crate) fn black_hole(&self) {
        self.mode.send_replace(Mode::BlackHole);
    }

    /// Forwards again (new connections; a black-holed one stays dead: cut it).
    pub(crate) fn restore(&self) {
        self.mode.send_replace(Mode::Forward);
    }

    /// Waits until the port accepts connections again after a [`restore`](Self::restore).
    pub(crate) async fn listening(&self) {
        let address = format!("127.0.0.1:{}", self.port);
        for _ in 0..500 {
            if self.mode.borrow().eq(&Mode::Forward)
                && let Ok(probe) = TcpStream::connect(&address).await
            {
                drop(probe);
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("the proxy does not listen again");
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

/// A listener on 127.0.0.1:`port` that can be opened again on the same port.
async fn listen(port: u16) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
    socket.listen(128)
}

async fn serve(
    listener: TcpListener,
    port: u16,
    upstream: SocketAddr,
    mut modes: watch::Receiver<Mode>,
    cuts: watch::Receiver<u64>,
    connections: Arc<Mutex<u64>>,
) {
    let mut listener = Some(listener);
    loop {
        let mode = *modes.borrow_and_update();
        match (mode, listener.is_some()) {
            (Mode::Refuse, true) => listener = None,
            (Mode::Forward | Mode::BlackHole, false) => loop {
                match listen(port).await {
                    Ok(l) => {
                        listener = Some(l);
                        break;
                    }
                    // the port lingers a moment after its close
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            },
            _ => {}
        }
        let Some(open) = listener.as_ref() else {
            if modes.changed().await.is_err() {
                return;
            }
            continue;
        };
        tokio::select! {
            changed = modes.changed() => if changed.is_err() { return },
            accepted = open.accept() => {
                let Ok((client, _)) = accepted else { continue };
                *connections.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                tokio::spawn(relay(client, upstream, modes.clone(), cuts.clone()));
            }
        }
    }
}

/// One connection: forwarded while the mode is `Forward`, drained into nothing once it
/// is `BlackHole`, reset when cut.
async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    mut modes: watch::Receiver<Mode>,
    mut cuts: watch::Receiver<u64>,
) {
    cuts.borrow_and_update();
    let mode = *modes.borrow_and_update();
    let server = if mode == Mode::Forward {
        match TcpStream::connect(upstream).await {
            Ok(server) => Some(server),
            Err(_) => return,
        }
    } else {
        None
    };
    let _ = client.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let Some(server) = server else {
        // black-holed from the start: read and drop until cut
        let mut sink = [0u8; 16 * 1024];
        loop {
            tokio::select! {
                _ = cuts.changed() => break,
                read = client_read.read(&mut sink) => if matches!(read, Ok(0) | Err(_)) { break },
            }
        }
        reset(client_read.reunite(client_write).ok());
        return;
    };
    let _ = server.set_nodelay(true);
    let (mut server_read, mut server_write) = server.into_split();
    let mut up = [0u8; 16 * 1024];
    let mut down = [0u8; 16 * 1024];
    let mut forwarding = true;
    loop {
        tokio::select! {
            _ = cuts.changed() => break,
            changed = modes.changed(), if forwarding => {
                if changed.is_err() { break }
                forwarding = *modes.borrow_and_update() == Mode::Forward;
            }
            read = client_read.read(&mut up) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) if forwarding => if server_write.write_all(&up[..n]).await.is_err() { break },
                Ok(_) => {}
            },
            read = server_read.read(&mut down), if forwarding => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => if client_write.write_all(&down[..n]).await.is_err() { break },
            },
        }
    }
    reset(client_read.reunite(client_write).ok());
    reset(server_read.reunite(server_write).ok());
}

/// Closes `stream` with a reset (linger 0), as the peer of a killed process sees it.
fn reset(stream: Option<TcpStream>) {
    if let Some(stream) = stream {
        let _ = stream.set_zero_linger();
        drop(stream);
    }
}
