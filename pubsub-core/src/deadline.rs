//! A time bound that costs nothing for work done at once.

use std::future::Future;
use std::time::Duration;

/// Awaits `future` for at most `wait`; `None` if it took longer. A future ready on its
/// first poll never arms a timer (no clock read, no timer-wheel entry).
pub(crate) async fn within<F: Future>(wait: Duration, future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    if let std::task::Poll::Ready(output) = futures::poll!(future.as_mut()) {
        return Some(output);
    }
    tokio::time::timeout(wait, future).await.ok()
}
