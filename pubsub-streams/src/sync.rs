//! [`lock`]: a std mutex that a panic elsewhere does not make unusable.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, taking the data over if a thread panicked while holding it (the state
/// kept behind these mutexes stays consistent at every step).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
