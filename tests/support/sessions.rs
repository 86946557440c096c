//! An event with a key parameter, `session.{session_id}.code_updated`, its handlers
//! `index` (every session) and `watch_42` (session 42), and what they saw, for the tests of
//! each broker transport. Not in `support`: its event would be a domain of every binary's
//! (streams read them all); a binary includes it with `#[path]`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pubsub::prelude::*;
use tokio::sync::Notify;

/// Code changed in one session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(key = "session.{session_id}.code_updated")]
pub(crate) struct CodeUpdated {
    pub(crate) session_id: u64,
    pub(crate) delta: String,
}

/// An update of `session_id`.
pub(crate) fn update(session_id: u64) -> CodeUpdated {
    CodeUpdated {
        session_id,
        delta: format!("+{session_id}"),
    }
}

/// Every session; records into the bus's `Arc<SessionsSeen>`.
#[handler]
pub(crate) async fn index(update: CodeUpdated, ctx: Context) -> Result<(), HandlerError> {
    let seen = ctx.state::<Arc<SessionsSeen>>()?;
    seen.record("index", update.session_id, ctx.key_param("session_id"));
    Ok(())
}

/// Session 42 only.
#[handler("session.42.code_updated")]
pub(crate) async fn watch_42(update: CodeUpdated, ctx: Context) -> Result<(), HandlerError> {
    let seen = ctx.state::<Arc<SessionsSeen>>()?;
    seen.record("watch_42", update.session_id, ctx.key_param("session_id"));
    Ok(())
}

/// (handler, session, `ctx.key_param("session_id")`) per call, and a wake-up on each.
#[derive(Debug, Default)]
pub(crate) struct SessionsSeen {
    calls: Mutex<Vec<(&'static str, u64, Option<String>)>>,
    changed: Notify,
}

impl SessionsSeen {
    /// `handler` was called for `session`, and its context's key parameter was `param`.
    pub(crate) fn record(&self, handler: &'static str, session: u64, param: Option<&str>) {
        let mut calls = self.calls.lock().unwrap();
        calls.push((handler, session, param.map(str::to_owned)));
        self.changed.notify_waiters();
    }

    /// The sessions `handler` saw, sorted.
    pub(crate) fn sessions(&self, handler: &str) -> Vec<u64> {
        let calls = self.calls.lock().unwrap();
        let mut sessions: Vec<u64> = calls
            .iter()
            .filter(|(h, _, _)| *h == handler)
            .map(|(_, s, _)| *s)
            .collect();
        sessions.sort_unstable();
        sessions
    }

    /// Waits (at most 30 s) until `handler` has seen exactly `sessions`.
    pub(crate) async fn until_seen(&self, handler: &str, sessions: &[u64]) {
        let wait = async {
            loop {
                let changed = self.changed.notified();
                if self.sessions(handler) == sessions {
                    return;
                }
                changed.await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .is_err()
        {
            panic!(
                "{handler} saw {:?}, not {sessions:?}",
                self.sessions(handler)
            );
        }
    }

    /// Once sessions 7, 9 and 42 were published: waits for `index` to see them all, closes
    /// `bus` (which waits for the handlers in flight), and asserts that `watch_42` saw 42
    /// only and that every context read its session back.
    pub(crate) async fn assert_index_and_watch_42(
        &self,
        bus: &Bus,
        task: tokio::task::JoinHandle<pubsub::Result<()>>,
    ) {
        self.until_seen("index", &[7, 9, 42]).await;
        bus.close().await.unwrap();
        task.await.unwrap().unwrap();
        assert_eq!(
            self.sessions("watch_42"),
            [42],
            "watch_42 sees session 42 only"
        );
        self.assert_key_params();
    }

    /// Asserts that every call's `ctx.key_param` was its session.
    fn assert_key_params(&self) {
        for (handler, session, param) in self.calls.lock().unwrap().iter() {
            assert_eq!(
                param.as_deref(),
                Some(session.to_string().as_str()),
                "{handler}'s ctx.key_param(\"session_id\")"
            );
        }
    }
}
