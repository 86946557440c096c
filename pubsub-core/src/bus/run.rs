//! The bus's run loop: consume deliveries, hand each to the dispatcher, settle what it
//! decided, and shut down within the deadline.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::watch;
use tracing::Instrument;

use super::signal::StopSignal;
use super::{Bus, BusInner};
use crate::dispatch::{Abandon, Dispatcher, Incoming, Outcome};
use crate::error::{Error, Result};
use crate::runtime_end::runtime_is_ending;
use crate::stats::Ended;
use crate::transport::{Acker, Consumer, Delivery, Settlement, TransportError};

/// How long one settlement may take (an ack, or a copy to a dead-letter queue or error
/// stream confirmed first) before the bus gives up on it, so that a transport whose
/// channel stopped answering cannot hold an in-flight slot, or a shutdown, for ever. The
/// broker delivers an unsettled message again.
const SETTLE_WAIT: Duration = Duration::from_secs(60);

/// What a shutdown may take beyond its `shutdown_timeout`, whatever the broker does:
/// cancelling the consumer, aborting the handlers still running, settling what they leave
/// and closing the consumer all share it. What is still unsettled then is left to the
/// broker, which delivers it again.
pub(crate) const SHUTDOWN_MARGIN: Duration = Duration::from_secs(3);

impl Bus {
    /// Starts consuming, then runs the bus in a background task until
    /// [`shutdown`](Self::shutdown). Returns once the bus consumes its queue (so a
    /// transport that refuses to consume fails here); the handle yields how the run ended.
    pub async fn spawn(&self) -> Result<tokio::task::JoinHandle<Result<()>>> {
        let bus = self.clone();
        let Some(consumption) = &self.inner.intake else {
            return Ok(tokio::spawn(async move {
                bus.run_until(std::future::pending::<()>()).await
            }));
        };
        let claim = self.claim()?;
        let consumer = consumption
            .consume(&*self.inner.publisher.transport)
            .await?;
        Ok(tokio::spawn(async move {
            let _claim = claim;
            let never = std::future::pending::<()>;
            bus.run_consumer(consumer, never(), never()).await
        }))
    }

    /// Consumes and handles deliveries until `signal` says stop (any future, e.g. a timer,
    /// or [`shutdown_signal()`](crate::shutdown_signal) for Ctrl-C) or
    /// [`shutdown`](Self::shutdown) is called, then shuts down gracefully: stops taking
    /// deliveries, logs at `INFO` how many are in flight, in which handlers, and how long
    /// it waits for them at most, and lets them finish within the shutdown timeout. At the
    /// deadline — or at once when the signal's second stage comes (a second Ctrl-C) — it
    /// abandons the rest (their handler tasks aborted and awaited) and requeues them
    /// explicitly, unacked, so the broker redelivers them; then closes the consumer (a
    /// stream consumer stores its offset). Call [`close`](Self::close) afterwards.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use pubsub::prelude::*;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> pubsub::Result<()> {
    /// # let bus = Bus::publisher("doc", MemoryTransport::new());
    /// // in a service: bus.run_until(pubsub::shutdown_signal()).await
    /// bus.run_until(tokio::time::sleep(Duration::from_millis(10))).await
    /// # }
    /// ```
    ///
    /// Fails if the bus is already running or was shut down, or if the transport closed the
    /// consumer without being asked to.
    pub async fn run_until<S: StopSignal>(&self, signal: S) -> Result<()> {
        let (stop, abandon) = signal.into_stages();
        let Some(consumption) = &self.inner.intake else {
            // Nothing to consume, just wait for the signal.
            let mut stopped = self.inner.shutdown.subscribe();
            tokio::select! {
                _ = stop => {}
                _ = raised(&mut stopped) => {}
            }
            return Ok(());
        };
        let _claim = self.claim()?;
        let consumer = consumption
            .consume(&*self.inner.publisher.transport)
            .await?;
        self.run_consumer(consumer, stop, abandon).await
    }

    /// Marks the bus as running until the claim is dropped.
    fn claim(&self) -> Result<RunningClaim> {
        if *self.inner.shutdown.borrow() {
            return Err(Error::ShutDown);
        }
        if self.inner.running.send_replace(true) {
            return Err(Error::AlreadyRunning {
                service: self.service().to_owned(),
            });
        }
        Ok(RunningClaim(Arc::clone(&self.inner)))
    }

    async fn run_consumer<F: Future, A: Future>(
        &self,
        mut consumer: Box<dyn Consumer>,
        signal: F,
        abandon_signal: A,
    ) -> Result<()> {
        let Some(dispatcher) = &self.inner.dispatcher else {
            return Ok(());
        };
        let mut stop = self.inner.shutdown.subscribe();
        let stop = &mut stop;
        let (abandon_all, abandon) = watch::channel(false);
        let abandon = Abandon(abandon);
        let mut in_flight = FuturesUnordered::new();
        // The transport bounds unsettled deliveries by the prefetch; the bus does too, so
        // that a transport with coarser credit (streams) cannot overload it.
        let limit = self
            .inner
            .intake
            .as_ref()
            .map_or(1, |c| usize::from(c.prefetch().max(1)));
        let mut signal = std::pin::pin!(signal);
        let mut outcome = Ok(());
        tracing::info!(service = %self.service(), handlers = ?self.inner.handler_names, "bus running");
        'consume: loop {
            let next = tokio::select! {
                biased;
                _ = &mut signal => break,
                _ = raised(stop) => break,
                Some(()) = in_flight.next(), if !in_flight.is_empty() => continue,
                next = consumer.next(), if in_flight.len() < limit => next,
            };
            match next {
                Some(Ok(delivery)) => {
                    self.inner.counters.delivered();
                    in_flight.push(self.process(Arc::clone(dispatcher), delivery, abandon.clone()));
                }
                Some(Err(TransportError::Closed)) | None => {
                    if runtime_is_ending().await {
                        crate::runtime_end::report_runtime_end(self.service());
                    } else {
                        tracing::error!(service = %self.service(), "the transport closed the consumer");
                    }
                    outcome = Err(Error::Transport(TransportError::Closed));
                    break;
                }
                Some(Err(error)) => {
                    tracing::warn!(error = %crate::Report::new(&error), "consumer error; continuing");
                    // pause before asking again, while in-flight deliveries keep running
                    let mut pause = std::pin::pin!(tokio::time::sleep(Duration::from_millis(100)));
                    loop {
                        tokio::select! {
                            biased;
                            _ = &mut signal => break 'consume,
                            _ = raised(stop) => break 'consume,
                            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
                            _ = &mut pause => break,
                        }
                    }
                }
            }
        }
        self.drain(dispatcher, consumer, in_flight, abandon_all, abandon_signal)
            .await;
        outcome
    }

    /// Handles one delivery and settles it: the only place a delivery is settled.
    fn process(
        &self,
        dispatcher: Arc<Dispatcher>,
        delivery: Delivery,
        abandon: Abandon,
    ) -> impl Future<Output = ()> + Send + 'static {
        let counters = Arc::clone(&self.inner.counters);
        let can_requeue = self.inner.capabilities.requeue;
        let Delivery {
            message,
            redelivered,
            delivery_count,
            offset,
            acker,
        } = delivery;
        let span = tracing::info_span!(
            "delivery",
            service = %dispatcher.publisher.service,
            id = %message.metadata.id,
            key = %message.metadata.key,
            redelivered,
        );
        async move {
            let incoming = Incoming {
                message,
                redelivered,
                delivery_count,
                offset,
            };
            // boxed: the handling state is large, and is moved less this way
            let settlement = match Box::pin(dispatcher.dispatch(&incoming, &abandon)).await {
                Outcome::Settle(settlement) => settlement,
                Outcome::Abandoned if can_requeue => Settlement::Requeue,
                Outcome::Abandoned => {
                    // a stream reads it again from the stored offset
                    drop(acker);
                    counters.ended(Ended::Abandoned);
                    return;
                }
            };
            let ended = match &settlement {
                Settlement::Ack => Ended::Acked,
                Settlement::DeadLetter(_) => Ended::DeadLettered,
                Settlement::Requeue => Ended::Requeued,
                Settlement::Retry(_) => Ended::Retried,
            };
            match settle(acker, settlement).await {
                Ok(()) => counters.ended(ended),
                Err(error) => {
                    let id = &incoming.message.metadata.id;
                    // at the runtime's end, said once already (runtime_end)
                    if !runtime_is_ending().await {
                        tracing::error!(%id, error = %crate::Report::new(&error), "could not settle the delivery; the broker will deliver it again");
                    }
                    counters.ended(Ended::SettleError);
                }
            }
        }
        .instrument(span)
    }

    async fn drain<D: Future<Output = ()>, A: Future>(
        &self,
        dispatcher: &Dispatcher,
        mut consumer: Box<dyn Consumer>,
        mut in_flight: FuturesUnordered<D>,
        abandon: watch::Sender<bool>,
        abandon_signal: A,
    ) {
        // the whole drain ends by `deadline + SHUTDOWN_MARGIN`, whatever the broker does
        let started = tokio::time::Instant::now();
        let deadline = self.inner.shutdown_timeout;
        let hard_end = started + deadline + SHUTDOWN_MARGIN;
        let step = SHUTDOWN_MARGIN / 3;
        match tokio::time::timeout_at(started + step, consumer.cancel()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) if !runtime_is_ending().await => {
                tracing::warn!(error = %crate::Report::new(&error), "cancelling the consumer failed");
            }
            Ok(Err(_)) => {}
            Err(_) => tracing::warn!("cancelling the consumer got no answer; going on"),
        }
        let count = in_flight.len();
        let service = self.service();
        if count > 0 {
            let handlers = dispatcher.running_handlers();
            tracing::info!(
                %service,
                in_flight = count,
                ?handlers,
                timeout = ?deadline,
                "stopping: waiting up to {deadline:?} for {count} {} in flight",
                if count == 1 { "delivery" } else { "deliveries" },
            );
        }
        let ended = {
            let finish = async { while in_flight.next().await.is_some() {} };
            tokio::select! {
                biased;
                ended = tokio::time::timeout_at(started + deadline, finish) => ended.map_err(|_| "shutdown timeout"),
                _ = abandon_signal => Err("asked to stop at once"),
            }
        };
        if let Err(why) = ended {
            let then = if self.inner.capabilities.requeue {
                "they are requeued"
            } else {
                "the stream reads them again from its stored offset"
            };
            tracing::warn!(
                %service,
                remaining = in_flight.len(),
                ?deadline,
                "{why}: abandoning {} unfinished {}; {then}",
                in_flight.len(),
                if in_flight.len() == 1 { "delivery" } else { "deliveries" },
            );
            // Each remaining delivery aborts its handler task, waits for it (bounded), and
            // is settled with `Requeue` (or left to the stream's stored offset).
            abandon.send_replace(true);
            // the handlers get their abort grace, the settlements what is left of the margin
            let finish = async { while in_flight.next().await.is_some() {} };
            let until = (hard_end - step).min(tokio::time::Instant::now() + 2 * step);
            if tokio::time::timeout_at(until, finish).await.is_err() {
                tracing::warn!(
                    %service,
                    unsettled = in_flight.len(),
                    margin = ?SHUTDOWN_MARGIN,
                    "deliveries still unsettled at the end of the shutdown margin: left to the \
                     broker, which delivers them again"
                );
                // never settled: counted as settle errors, so `in_flight` drops
                for _ in 0..in_flight.len() {
                    self.inner.counters.ended(Ended::SettleError);
                }
            }
        }
        drop(in_flight);
        close_consumer(
            consumer,
            hard_end.min(tokio::time::Instant::now() + SHUTDOWN_MARGIN),
        )
        .await;
        tracing::info!(%service, in_flight = count, "bus stopped");
    }
}

/// Closes `consumer`, waiting at most until `until`.
async fn close_consumer(consumer: Box<dyn Consumer>, until: tokio::time::Instant) {
    match tokio::time::timeout_at(until, consumer.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) if !runtime_is_ending().await => {
            tracing::warn!(error = %crate::Report::new(&error), "closing the consumer failed");
        }
        Ok(Err(_)) => {}
        Err(_) => tracing::warn!("closing the consumer got no answer; left to the transport"),
    }
}

/// Settles through `acker`, bounded by [`SETTLE_WAIT`] (a settlement done on its first
/// poll, as most acks are, arms no timer).
async fn settle(acker: Box<dyn Acker>, settlement: Settlement) -> Result<(), TransportError> {
    crate::deadline::within(SETTLE_WAIT, acker.settle(settlement))
        .await
        .unwrap_or(Err(TransportError::TimedOut {
            operation: "settling a delivery",
            after: SETTLE_WAIT,
        }))
}

/// Completes once the flag is raised (or its sender is gone).
async fn raised(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|raised| *raised).await;
}

/// Clears the bus's running flag when its run ends.
struct RunningClaim(Arc<BusInner>);

impl Drop for RunningClaim {
    fn drop(&mut self) {
        self.0.running.send_replace(false);
    }
}
