//! What ends a bus's run: [`StopSignal`], met by any future (one stage: stop gracefully)
//! and by [`ShutdownSignal`] (two: Ctrl-C stops gracefully, a second Ctrl-C at once).

use std::future::Future;
use std::sync::{Arc, Once};

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::watch;

/// What [`Bus::run_until`](crate::Bus::run_until) stops on, in two stages: `stop` makes
/// the bus take no new deliveries and wait for those in flight (up to the shutdown
/// timeout); `abandon`, if it comes before they finished, makes it give them up at once
/// (their handler tasks aborted, the deliveries requeued, unacked).
///
/// Every future is a stop signal with the first stage only (its output is ignored), such
/// as `tokio::signal::ctrl_c()`; [`ShutdownSignal`] has both.
pub trait StopSignal {
    /// Completes when the bus should stop gracefully.
    type Stop: Future<Output = ()>;
    /// Completes when the bus should give up what is in flight; polled after `Stop`.
    type Abandon: Future<Output = ()>;

    /// The two stages.
    fn into_stages(self) -> (Self::Stop, Self::Abandon);
}

impl<F: Future> StopSignal for F {
    type Stop = futures::future::Map<F, fn(F::Output)>;
    type Abandon = std::future::Pending<()>;

    fn into_stages(self) -> (Self::Stop, Self::Abandon) {
        (
            self.map(drop::<F::Output> as fn(F::Output)),
            std::future::pending(),
        )
    }
}

/// Ctrl-C (SIGINT), or SIGTERM on Unix, as a [`StopSignal`]: the first signal stops the
/// bus gracefully — it logs, at `INFO`, how many deliveries it waits for, in which
/// handlers, and for how long at most — and a second one stops it at once: unfinished
/// deliveries are not acked but requeued (a stream reads them again from its stored
/// offset), so the broker delivers them again, and `run_until` returns promptly.
///
/// Made by [`shutdown_signal`]. Clones share one listener, so one signal can stop
/// several buses: `tokio::join!(a.run_until(signal.clone()), b.run_until(signal))`.
#[derive(Debug, Clone)]
pub struct ShutdownSignal {
    received: watch::Receiver<u32>,
    listener: Arc<Listener>,
}

#[derive(Debug)]
struct Listener {
    received: watch::Sender<u32>,
    started: Once,
}

/// Listens for Ctrl-C (and SIGTERM on Unix) from now on, when called in a Tokio runtime
/// (else from the first run that uses it): the signal [`Bus::run_until`](crate::Bus::run_until)
/// understands, in two stages — see [`ShutdownSignal`]. Once it listens, Ctrl-C no longer
/// ends the process by itself.
///
/// ```
/// use std::time::Duration;
/// use pubsub::prelude::*;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> pubsub::Result<()> {
/// let bus = Bus::builder()
///     .service("billing")
///     .transport(MemoryTransport::new())
///     .select_handlers(pubsub::handlers![])
///     .shutdown_timeout(Duration::from_secs(10)) // how long the first Ctrl-C waits at most
///     .build()
///     .await?;
/// # let stopper = bus.clone();
/// # tokio::spawn(async move { stopper.shutdown() }); // in place of a Ctrl-C
/// // Ctrl-C: finish what is in flight (10 s at most); Ctrl-C again: requeue it, stop now
/// bus.run_until(pubsub::shutdown_signal()).await
/// # }
/// ```
pub fn shutdown_signal() -> ShutdownSignal {
    let (sender, received) = watch::channel(0);
    let signal = ShutdownSignal {
        received,
        listener: Arc::new(Listener {
            received: sender,
            started: Once::new(),
        }),
    };
    signal.listen();
    signal
}

impl ShutdownSignal {
    /// Starts the listener once, if in a runtime.
    fn listen(&self) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        self.listener.started.call_once(|| {
            let received = self.listener.received.clone();
            match Signals::install() {
                Ok(signals) => {
                    tokio::spawn(signals.forward(received));
                }
                Err(error) => {
                    tracing::error!(%error, "cannot listen for Ctrl-C; stop the bus another way");
                }
            }
        });
    }
}

impl StopSignal for ShutdownSignal {
    type Stop = BoxFuture<'static, ()>;
    type Abandon = BoxFuture<'static, ()>;

    fn into_stages(self) -> (Self::Stop, Self::Abandon) {
        self.listen();
        let stage = |n: u32| {
            let mut received = self.received.clone();
            // the listener holds the sender; without one, no signal ever comes
            let listener = Arc::clone(&self.listener);
            async move {
                if received.wait_for(|count| *count >= n).await.is_err() {
                    std::future::pending::<()>().await;
                }
                drop(listener);
            }
            .boxed()
        };
        (stage(1), stage(2))
    }
}

/// The process signals that stop a bus, registered as soon as installed.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    #[cfg(unix)]
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    #[cfg(not(unix))]
    fn install() -> std::io::Result<Self> {
        Ok(Self {})
    }

    /// The next signal's name; `None` once no more can come.
    async fn next(&mut self) -> Option<&'static str> {
        #[cfg(unix)]
        {
            tokio::select! {
                got = self.interrupt.recv() => got.map(|()| "Ctrl-C"),
                got = self.terminate.recv() => got.map(|()| "SIGTERM"),
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await.ok().map(|()| "Ctrl-C")
        }
    }

    /// Counts the signals into `received`, logging what each one does.
    async fn forward(mut self, received: watch::Sender<u32>) {
        while let Some(signal) = self.next().await {
            // logged first, so that it reads before what the buses log on it
            match *received.borrow() + 1 {
                1 => tracing::info!(
                    "{signal}: stopping gracefully; press Ctrl-C again to stop at once (unfinished deliveries are requeued)"
                ),
                2 => tracing::warn!("{signal} again: stopping at once"),
                _ => tracing::warn!("{signal}: already stopping at once"),
            }
            received.send_modify(|n| *n += 1);
        }
    }
}
