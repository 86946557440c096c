//! [`UseCount`]: how many buses use a transport, so that the last one to close closes it.

use std::sync::atomic::{AtomicUsize, Ordering};

/// How many buses use one transport: what a transport keeps, in the state its clones
/// share, to implement [`Transport::attach`](super::Transport::attach) and
/// [`Transport::detach`](super::Transport::detach). The memory, AMQP and Streams transports
/// each hold one; a third-party transport shared by several buses can too.
///
/// ```
/// use pubsub::transport::UseCount;
///
/// let buses = UseCount::new();
/// buses.attach(); // a first bus
/// buses.attach(); // a second one
/// assert!(!buses.detach(), "one bus still uses the transport");
/// assert!(buses.detach(), "the last one left: close the transport");
/// assert!(!buses.detach(), "a detach without an attach is not a last one");
/// ```
#[derive(Debug, Default)]
pub struct UseCount(AtomicUsize);

impl UseCount {
    /// No users yet.
    pub const fn new() -> Self {
        Self(AtomicUsize::new(0))
    }

    /// One user more.
    pub fn attach(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    /// One user less; `true` when it was the last one. A detach with no user attached
    /// changes nothing and returns `false`.
    pub fn detach(&self) -> bool {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok_and(|before| before == 1)
    }

    /// How many users are attached now.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}
