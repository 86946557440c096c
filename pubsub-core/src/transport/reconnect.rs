//! [`Reconnects`]: how the connections of one transport wait between reconnect attempts,
//! so that all of them are back soon after the broker is.
//!
//! Each connection backs off on its own (capped, jittered), but a wait ends early:
//! - when another connection of the same transport came back since the attempt began
//!   (the broker answers again: there is no reason to wait any longer);
//! - when the broker's port, closed as the wait began, accepts a bare TCP connect again
//!   (probed every [`PROBE_EVERY`]: a cheap SYN, far cheaper than the client's full
//!   handshake). A port open as the wait began (a broker that accepts TCP and refuses the
//!   handshake) does not end it: the backoff paces those attempts.
//!
//! So the time from the broker's port reopening to a connection being back is about
//! [`PROBE_EVERY`] plus the handshake, whatever the backoff has grown to.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;

/// How often a waiting connection probes the broker's port with a bare TCP connect (each
/// probe bounded by this too).
pub const PROBE_EVERY: Duration = Duration::from_millis(250);

/// What the connections of one transport share between reconnect attempts (see the
/// [module](self)). Clones share it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// use pubsub::transport::Reconnects;
/// let reconnects = Reconnects::new("127.0.0.1", 9);
/// let mark = reconnects.mark();
/// reconnects.connected(); // another connection is back
/// // so this wait ends at once
/// tokio::time::timeout(Duration::from_secs(1), reconnects.wait(Duration::from_secs(60), mark))
///     .await
///     .expect("woken");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Reconnects {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    host: String,
    port: u16,
    /// Counts the connections that came back.
    back: watch::Sender<u64>,
}

impl Reconnects {
    /// For the connections of a transport to the broker at `host`:`port`.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            inner: Arc::new(Shared {
                host: host.into(),
                port,
                back: watch::Sender::new(0),
            }),
        }
    }

    /// Taken before an attempt: a connection that comes back after this ends the wait
    /// that follows a failed attempt.
    pub fn mark(&self) -> u64 {
        *self.inner.back.borrow()
    }

    /// A connection of the transport is (back) up: ends the waits of the others.
    pub fn connected(&self) {
        self.inner.back.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Waits `pause` (the caller's backoff) before the next attempt, or less: until a
    /// connection came back since `mark`, or until the broker's port, closed now, accepts
    /// a connect again.
    pub async fn wait(&self, pause: Duration, mark: u64) {
        let mut back = self.inner.back.subscribe();
        let woken = back.wait_for(|n| *n != mark);
        tokio::select! {
            _ = woken => {}
            () = tokio::time::sleep(pause) => {}
            () = self.reopened() => {}
        }
    }

    /// Completes once the port, closed at the first probe, accepts a connect; pending
    /// forever if it was open at the first probe.
    async fn reopened(&self) {
        if self.reachable().await {
            return std::future::pending().await;
        }
        let mut probes = tokio::time::interval(PROBE_EVERY);
        probes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        probes.tick().await;
        loop {
            probes.tick().await;
            if self.reachable().await {
                return;
            }
        }
    }

    /// Whether the broker's port accepts a TCP connect within [`PROBE_EVERY`].
    async fn reachable(&self) -> bool {
        let connect = TcpStream::connect((self.inner.host.as_str(), self.inner.port));
        matches!(tokio::time::timeout(PROBE_EVERY, connect).await, Ok(Ok(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn a_wait_ends_when_the_closed_port_opens() {
        // a port free now, closed
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let port = probe.local_addr().expect("its address").port();
        drop(probe);
        let reconnects = Reconnects::new("127.0.0.1", port);
        let started = Instant::now();
        let opener = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            tokio::net::TcpListener::bind(("127.0.0.1", port)).await
        });
        let mark = reconnects.mark();
        reconnects.wait(Duration::from_secs(30), mark).await;
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "{took:?}");
        drop(opener.await);
    }

    #[tokio::test]
    async fn a_wait_on_an_open_port_takes_its_pause() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let port = listener.local_addr().expect("its address").port();
        let reconnects = Reconnects::new("127.0.0.1", port);
        let started = Instant::now();
        let mark = reconnects.mark();
        reconnects.wait(Duration::from_millis(600), mark).await;
        assert!(started.elapsed() >= Duration::from_millis(600));
    }

    #[tokio::test]
    async fn a_connection_back_before_the_wait_ends_it_at_once() {
        let reconnects = Reconnects::new("127.0.0.1", 9);
        let mark = reconnects.mark();
        reconnects.connected();
        let started = Instant::now();
        reconnects.wait(Duration::from_secs(30), mark).await;
        assert!(started.elapsed() < Duration::from_millis(100));
    }
}
