//! The broker's node SIGKILLed mid-run (what an OOM kill or a crash does) and started again
//! three seconds later, under load: on AMQP classic and quorum queues and on Streams. Each
//! test counts what it published, what the broker confirmed and what was handled, says
//! none confirmed was lost, and measures, from the moment the ports answer again, the
//! first confirmed publish and the bus healthy again; then the bus shuts down within its
//! bound.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::fixture::*;
use crate::support::broker;
use pubsub::Bus;

pub(crate) const PATIENCE: Duration = Duration::from_secs(120);
/// How long the node stays dead.
pub(crate) const OUTAGE: Duration = Duration::from_secs(3);
/// How soon after the broker answers again its connections must be back (about 2 s).
pub(crate) const BACK_WITHIN: Duration = Duration::from_millis(2500);
/// How soon after the last event is handled nothing may be in flight: a settlement lost
/// with its connection fails at once (it used to wait out the bus's 60 s settle bound).
pub(crate) const SETTLED_WITHIN: Duration = Duration::from_secs(5);
/// What a shutdown may take beyond its `shutdown_timeout`.
pub(crate) const SHUTDOWN_MARGIN: Duration = Duration::from_secs(3);

/// What one kill measured.
pub(crate) struct Killed {
    /// From the ports answering to the first confirmed publish.
    pub(crate) to_confirm: Duration,
    /// From the ports answering to `bus.health().is_healthy()`.
    pub(crate) to_healthy: Duration,
}

/// The tick the probe publishes after the restart (counted apart from the load's).
pub(crate) const PROBE_TICK: u64 = u64::MAX / 2;

/// Kills the node while `counts` grows, waits until `bus` notices, starts the node again
/// after [`OUTAGE`], and measures, from the moment `port` (`host:port` of the transport)
/// accepts connections again, how long `probe` (a publisher on the bus's transport) takes
/// to get [`PROBE_TICK`] confirmed and `bus` to be healthy.
pub(crate) async fn kill_and_restart(
    script: &str,
    port: &str,
    bus: &Bus,
    probe: &Bus,
    counts: &Counts,
    publishing: &tokio::task::JoinHandle<(BTreeSet<u64>, Vec<String>)>,
) -> Killed {
    wait_until("handling goes on", PATIENCE, || counts.distinct() >= 500).await;
    assert!(
        !publishing.is_finished(),
        "the kill comes under load: raise N"
    );
    // RabbitMQ keeps its quorum queues' registry in a DETS table saved every few minutes: a
    // queue declared since the last save recovers from a SIGKILL as a new, empty member
    // whose channels time out for a minute ("name_not_registered"). Save it first.
    ctl(&["-q", "eval", "'[dets:sync(T) || T <- dets:all()].'"]);
    let revive = broker::kill_node(script);
    wait_until("the bus noticed", PATIENCE, || !bus.health().is_healthy()).await;
    tokio::time::sleep(OUTAGE).await; // the outage itself, not a wait for a condition
    let starting = tokio::task::spawn_blocking(move || revive.start());
    let address = port.to_owned();
    let open = move || std::net::TcpStream::connect(&address).is_ok();
    wait_until("the port answers again", PATIENCE, open).await;
    let reopened = Instant::now();
    loop {
        let publish = probe.publish(&Tick {
            n: PROBE_TICK,
            note: None,
        });
        match tokio::time::timeout(Duration::from_secs(5), publish).await {
            Ok(Ok(_)) => break,
            _ if reopened.elapsed() > PATIENCE => panic!("no publish confirmed after the restart"),
            // refused while the node starts: again at a pace, not in a tight loop
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let to_confirm = reopened.elapsed();
    wait_until("healthy again", PATIENCE, || bus.health().is_healthy()).await;
    let to_healthy = reopened.elapsed();
    starting.await.expect("starting the node");
    assert!(
        to_confirm <= BACK_WITHIN && to_healthy <= BACK_WITHIN,
        "back {to_confirm:?} (confirm) and {to_healthy:?} (healthy) after the port reopened, \
         over {BACK_WITHIN:?}"
    );
    Killed {
        to_confirm,
        to_healthy,
    }
}

/// Shuts `bus` down (its `shutdown_timeout` is 5 s) and requires its run, `running`, to
/// end within that plus [`SHUTDOWN_MARGIN`].
pub(crate) async fn shut_down_within_bound(
    test: &str,
    bus: &Bus,
    running: tokio::task::JoinHandle<pubsub::Result<()>>,
) {
    let stopping = Instant::now();
    bus.shutdown();
    let bound = Duration::from_secs(5) + SHUTDOWN_MARGIN;
    tokio::time::timeout(bound, running)
        .await
        .unwrap_or_else(|_| panic!("the shutdown took over {bound:?}"))
        .expect("the bus task")
        .expect("the bus run");
    eprintln!("{test}: shut down in {:.1?}", stopping.elapsed());
}

#[cfg(feature = "amqp")]
mod amqp {
    use super::*;
    use pubsub::amqp::QueueType;
    use pubsub::transport::Transport;

    async fn killed_under_load(name: &str, queue_type: QueueType) {
        let Some(script) = broker::broker_script() else {
            return;
        };
        let Some(Fixture {
            _one,
            _cleanup,
            ns,
            config: _,
            transport,
            counts,
            bus,
        }) = Fixture::start_with_config(name, |c| c.queue_type(queue_type), |b| b.prefetch(100))
            .await
        else {
            return;
        };
        let running = bus.spawn().await.expect("running the bus");
        let publisher = Bus::publisher(format!("{name}-shop"), transport.clone());
        const N: u64 = 20_000;
        let load = publisher.clone();
        let publishing = tokio::spawn(async move { publish(&load, 0..N, 16).await });
        let Some(port) = broker::amqp_address() else {
            return;
        };
        let killed = kill_and_restart(&script, &port, &bus, &publisher, &counts, &publishing).await;
        let (confirmed, failed) = publishing.await.expect("the publishing task");
        wait_for(PATIENCE, || counts.missing(&confirmed).is_empty()).await;
        let lost = counts.missing(&confirmed).len();
        // the probe's tick, confirmed after the restart, is counted too
        report(
            &format!("SIGKILL, AMQP {name}"),
            N as usize + 1,
            confirmed.len() + 1,
            &counts,
            &format!(
                " / failed {} / lost {lost} / re-sent {} / port → confirm {:.1?} / port → healthy {:.1?}",
                failed.len(),
                transport.resent_publishes(),
                killed.to_confirm,
                killed.to_healthy
            ),
        );
        if lost > 0 && broker::has_rabbitmqctl() {
            // where the lost ones are, for whoever reads the failure: still queued
            // (ready or unacked: a consumer that stopped taking them), or gone from the broker
            let queues = broker::ctl(&[
                "-q",
                "list_queues",
                "name",
                "messages_ready",
                "messages_unacknowledged",
                "consumers",
            ]);
            let ours: Vec<&str> = queues.lines().filter(|l| l.contains(&ns)).collect();
            eprintln!("{name}: the broker's queues of {ns} now: {ours:?}");
            eprintln!("{name}: bus health: {:?}", bus.health());
        }
        assert_eq!(
            lost,
            0,
            "confirmed, never handled: {:?}",
            counts.missing(&confirmed)
        );
        let settled = wait_for(SETTLED_WITHIN, || bus.stats().in_flight == 0).await;
        assert!(settled, "still in flight: {:?}", bus.stats());
        shut_down_within_bound(&format!("SIGKILL, AMQP {name}"), &bus, running).await;
        transport.close().await.expect("closing");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_killed_broker_loses_nothing_on_classic_queues() {
        killed_under_load("kill-classic", QueueType::Classic).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_killed_broker_loses_nothing_on_quorum_queues() {
        killed_under_load(
            "kill-quorum",
            QueueType::Quorum {
                delivery_limit: None,
            },
        )
        .await;
    }
}
