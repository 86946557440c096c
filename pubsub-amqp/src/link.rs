//! [`Link`]: one supervised connection. It connects, notices when the connection is lost
//! (or blocked by a broker alarm), and reconnects with capped, jittered backoff until it is
//! closed; whoever needs the connection waits for it, up to a deadline of their own.
//!
//! lapin's own recovery is off: it re-sends no unconfirmed publish, does not recover a
//! channel closed by a channel-level error, and its `wait_for_recovery` can stay pending
//! forever. Here the publisher and each consumer rebuild their channels on the link's next
//! connection, re-declaring their topology, so there is one place where recovery happens
//! and it always ends (in a connection, or in the caller's deadline).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::{Connection, Event};
use pubsub_core::{
    health::{ConnectionHealth, ConnectionState},
    transport::{Reconnects, TransportError},
};
use tokio::sync::watch;

use crate::config::AmqpConfig;
use crate::connection::{connect, connect_once, jittered};
use crate::error::AmqpError;
use crate::sync::lock;

/// How often the state of a connection is checked, besides lapin's events.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// One supervised connection (see the module docs). Dropping it stops the supervisor.
#[derive(Debug)]
pub(crate) struct Link {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

/// When an operation started and until when it may wait: every error of the operation
/// that reports a wait reports the time since its start, whichever step it was in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    started: Instant,
    pub(crate) at: Instant,
}

impl Deadline {
    /// An operation starting now that may take `timeout`.
    pub(crate) fn after(timeout: Duration) -> Self {
        let started = Instant::now();
        Self {
            started,
            at: started + timeout,
        }
    }

    /// How long the operation has waited so far.
    pub(crate) fn waited(&self) -> Duration {
        self.started.elapsed()
    }

    /// Whether the deadline has passed.
    pub(crate) fn passed(&self) -> bool {
        Instant::now() >= self.at
    }
}

/// What the supervisor and the users of the link share.
#[derive(Debug)]
struct Shared {
    role: &'static str,
    url: String,
    current: watch::Sender<Current>,
    health: Mutex<ConnectionHealth>,
    /// Shared with the transport's other connections: a reconnect ends their waits.
    reconnects: Reconnects,
}

/// The connection now, if there is one.
#[derive(Debug, Clone)]
enum Current {
    Up(Arc<Connection>, u64),
    Down,
    Closed,
}

impl Link {
    /// Connects (the configured attempts: an unreachable broker at start is an error), then
    /// keeps the connection up in a task of its own.
    pub(crate) async fn open(
        config: &AmqpConfig,
        role: &'static str,
        reconnects: Reconnects,
    ) -> Result<Self, AmqpError> {
        let connection = Arc::new(connect(config, role).await?);
        reconnects.connected();
        let shared = Arc::new(Shared {
            role,
            url: config.url(),
            current: watch::Sender::new(Current::Up(Arc::clone(&connection), 1)),
            health: Mutex::new(ConnectionHealth::new(role, ConnectionState::Up)),
            reconnects,
        });
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(supervise(
            Arc::clone(&shared),
            config.clone(),
            connection,
            stopped,
        ));
        Ok(Self { shared, stop })
    }

    /// The connection and its generation (1 for the first, +1 for each reconnect), waiting
    /// for one until `deadline` (`None`: as long as it takes, until the link closes). The
    /// error after the deadline reports the wait since the deadline's start (the caller's
    /// operation), not since this call.
    pub(crate) async fn connection(
        &self,
        deadline: Option<&Deadline>,
    ) -> Result<(Arc<Connection>, u64), TransportError> {
        let mut current = self.shared.current.subscribe();
        loop {
            match &*current.borrow_and_update() {
                Current::Up(connection, generation) => {
                    return Ok((Arc::clone(connection), *generation));
                }
                Current::Closed => return Err(TransportError::Closed),
                Current::Down => {}
            }
            let changed = current.changed();
            let changed = match deadline {
                Some(deadline) => {
                    match tokio::time::timeout_at(deadline.at.into(), changed).await {
                        Ok(changed) => changed,
                        Err(_) => return Err(self.unavailable(deadline.waited())),
                    }
                }
                None => changed.await,
            };
            if changed.is_err() {
                return Err(TransportError::Closed);
            }
        }
    }

    /// Resolves once connection `generation` is lost (or the link closed): what was sent
    /// on it and not answered never will be.
    pub(crate) async fn lost(&self, generation: u64) {
        let mut current = self.shared.current.subscribe();
        let _ = current
            .wait_for(|c| !matches!(c, Current::Up(_, g) if *g == generation))
            .await;
    }

    /// Opens what `open` makes (a channel and what goes with it) on the current
    /// connection, waiting for one until `deadline`. A connection lost while opening, before
    /// the link noticed, is waited past; any other failure is returned.
    pub(crate) async fn open_on<T, F>(
        &self,
        deadline: &Deadline,
        open: impl Fn(Arc<Connection>) -> F,
    ) -> Result<T, TransportError>
    where
        F: Future<Output = Result<T, AmqpError>>,
    {
        loop {
            let (connection, _) = self.connection(Some(deadline)).await?;
            let opening = open(Arc::clone(&connection));
            match tokio::time::timeout_at(deadline.at.into(), opening).await {
                Ok(Ok(opened)) => return Ok(opened),
                // a connection lost a moment ago, before the link noticed: wait for the next
                Ok(Err(_)) if !connection.status().connected() && !deadline.passed() => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(Err(error)) => return Err(error.into()),
                Err(_) => return Err(self.unavailable(deadline.waited())),
            }
        }
    }

    /// The error for a caller that waited `waited` (since its operation started) for a
    /// connection, or for the broker: blocked by an alarm, down (with the last error), or
    /// just slow.
    pub(crate) fn unavailable(&self, waited: Duration) -> TransportError {
        let health = self.shared.health();
        match health.state {
            ConnectionState::Blocked => TransportError::Blocked {
                reason: health.blocked_reason.unwrap_or_default(),
                waited,
            },
            ConnectionState::Closed => TransportError::Closed,
            ConnectionState::Up => TransportError::TimedOut {
                operation: "waiting for the broker",
                after: waited,
            },
            _ => TransportError::unavailable(format!(
                "no connection to RabbitMQ at {} after waiting {waited:.1?} (the {} connection is reconnecting; last error: {})",
                self.shared.url,
                self.shared.role,
                health.last_error.as_deref().unwrap_or("none")
            )),
        }
    }

    /// The reconnect waits this connection shares with the transport's others.
    pub(crate) fn reconnects(&self) -> &Reconnects {
        &self.shared.reconnects
    }

    /// The state of the connection.
    pub(crate) fn health(&self) -> ConnectionHealth {
        self.shared.health()
    }

    /// Closes the connection; everything waiting for it gets [`TransportError::Closed`].
    pub(crate) async fn close(&self) {
        self.stop.send_replace(true);
        let mut current = self.shared.current.subscribe();
        let closed = current.wait_for(|c| matches!(c, Current::Closed));
        if tokio::time::timeout(Duration::from_secs(5), closed)
            .await
            .is_err()
        {
            tracing::debug!(role = self.shared.role, "the connection took long to close");
        }
    }
}

impl Shared {
    fn health(&self) -> ConnectionHealth {
        lock(&self.health).clone()
    }

    /// Moves the connection to `state`, logging the transition.
    fn transition(&self, state: ConnectionState, update: impl FnOnce(&mut ConnectionHealth)) {
        let mut health = lock(&self.health);
        update(&mut health);
        let from = health.transition(state, None);
        let (role, url) = (self.role, &self.url);
        match state {
            _ if from == state => {}
            ConnectionState::Down => {
                tracing::warn!(role, %url, error = health.last_error.as_deref().unwrap_or(""), "connection to RabbitMQ lost; reconnecting");
            }
            ConnectionState::Up if from == ConnectionState::Blocked => {
                tracing::info!(role, %url, "the broker unblocked the connection");
            }
            ConnectionState::Up => {
                tracing::info!(role, %url, reconnects = health.reconnects, "connected to RabbitMQ again");
            }
            ConnectionState::Blocked => {
                tracing::warn!(role, %url, reason = health.blocked_reason.as_deref().unwrap_or(""), "the broker blocks publishing on this connection (an alarm); publishes wait");
            }
            ConnectionState::Closed => tracing::debug!(role, %url, "connection closed"),
            _ => tracing::info!(role, %url, ?state, "connection state"),
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// Keeps the link connected until it is stopped.
async fn supervise(
    shared: Arc<Shared>,
    config: AmqpConfig,
    mut connection: Arc<Connection>,
    mut stop: watch::Receiver<bool>,
) {
    let mut generation = 1;
    loop {
        let Some(lost) = watch_connection(&shared, &connection, &mut stop).await else {
            break;
        };
        shared.current.send_replace(Current::Down);
        shared.transition(ConnectionState::Down, |h| h.last_error = Some(lost));
        let Some(new) = reconnect(&shared, &config, &mut stop).await else {
            break;
        };
        connection = Arc::new(new);
        generation += 1;
        shared.transition(ConnectionState::Up, |h| {
            h.reconnects += 1;
            h.blocked_reason = None;
        });
        shared
            .current
            .send_replace(Current::Up(Arc::clone(&connection), generation));
    }
    shared.current.send_replace(Current::Closed);
    if connection.status().connected() {
        let close = connection.close(200, "closing".into());
        crate::connection::close_bounded(close, "connection").await;
    }
    shared.transition(ConnectionState::Closed, |_| {});
}

/// Waits until `connection` is lost (`Some(why)`) or the link is stopped (`None`), keeping
/// track of the broker blocking it meanwhile.
async fn watch_connection(
    shared: &Shared,
    connection: &Connection,
    stop: &mut watch::Receiver<bool>,
) -> Option<String> {
    let mut events = connection.events_listener();
    let mut check = tokio::time::interval(CHECK_EVERY);
    loop {
        if *stop.borrow_and_update() {
            return None;
        }
        tokio::select! {
            changed = stop.changed() => if changed.is_err() { return None },
            event = events.next() => match event {
                Some(Event::ConnectionBlocked(reason)) => {
                    shared.transition(ConnectionState::Blocked, |h| h.blocked_reason = Some(reason));
                }
                Some(Event::ConnectionUnblocked) => {
                    shared.transition(ConnectionState::Up, |h| h.blocked_reason = None);
                }
                // a channel-level error also comes here: only a lost connection counts
                Some(Event::Error(error)) if !connection.status().connected() => {
                    return Some(error.to_string());
                }
                Some(_) => {}
                None => return Some("the connection's events ended".to_owned()),
            },
            _ = check.tick() => if !connection.status().connected() {
                return Some("the connection is no longer connected".to_owned());
            },
        }
    }
}

/// Connects again, with capped, jittered backoff, until it works (`Some`) or the link is
/// stopped (`None`). A wait ends early once another connection of the transport is back,
/// or the broker's port, closed, accepts again ([`Reconnects`]).
async fn reconnect(
    shared: &Shared,
    config: &AmqpConfig,
    stop: &mut watch::Receiver<bool>,
) -> Option<Connection> {
    let mut wait = config.initial_backoff;
    let mut attempt: u32 = 1;
    loop {
        if *stop.borrow_and_update() {
            return None;
        }
        let mark = shared.reconnects.mark();
        let result = tokio::select! {
            result = connect_once(config, shared.role) => result,
            _ = stop.changed() => return None,
        };
        match result {
            Ok(connection) => {
                shared.reconnects.connected();
                return Some(connection);
            }
            Err(error) => {
                let pause = jittered(wait);
                tracing::debug!(role = shared.role, attempt, error = %pubsub_core::Report::new(&error), retry_in = ?pause, "reconnecting to RabbitMQ failed");
                shared.transition(ConnectionState::Down, |h| {
                    h.last_error = Some(error.to_string());
                });
                tokio::select! {
                    () = shared.reconnects.wait(pause, mark) => {}
                    _ = stop.changed() => return None,
                }
                wait = (wait * 2).min(config.max_backoff);
                attempt = attempt.saturating_add(1);
            }
        }
    }
}
