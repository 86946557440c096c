//! The AMQP transport under the faults a production broker has, against the real broker
//! (`RABBITMQ_URL`, `PUBSUB_RABBITMQCTL`, as `scripts/broker.sh` prints them): every
//! test publishes thousands of events, counts every one handled, shows that none the broker
//! confirmed was lost, and prints published / confirmed / handled / duplicates. Tests that
//! change the broker's state run one at a time and restore it even when they fail.

use std::time::Duration;

use pubsub::amqp::AmqpTransport;
use std::sync::Arc;

use crate::fixture::{self, *};
use pubsub::prelude::*;
use pubsub::{
    Bus, Error, Handler, RetryPolicy,
    health::{ConnectionState, ConsumerState},
    transport::{Transport, TransportError},
};

const PATIENCE: Duration = Duration::from_secs(90);

/// `rabbitmqctl close_all_connections`, three times, while events are published and
/// handled: publishers re-send what was not confirmed, consumers resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_closed_three_times_lose_nothing() {
    let Some(Fixture {
        _one,
        _cleanup,
        ns,
        config: _,
        transport,
        counts,
        bus,
    }) = Fixture::start("close").await
    else {
        return;
    };
    let running = bus.spawn().await.expect("running the bus");
    let publisher = Bus::publisher(format!("{ns}-shop"), transport.clone());

    const N: u64 = 5_000;
    let publishing = tokio::spawn(async move { publish(&publisher, 0..N, 16).await });
    for round in 1..=3_u64 {
        wait_until("handling goes on", PATIENCE, || {
            counts.distinct() as u64 >= round * N / 5
        })
        .await;
        ctl(&["close_all_connections", "'fault test'"]);
        wait_until(
            "both connections and the consumer are back",
            PATIENCE,
            || {
                let health = transport.health();
                health.connections.len() == 2
                    && health
                        .connections
                        .iter()
                        .all(|c| c.reconnects >= round && c.state == ConnectionState::Up)
                    && health
                        .consumers
                        .iter()
                        .all(|c| c.resumed >= round && c.state == ConsumerState::Running)
            },
        )
        .await;
    }
    let (confirmed, failed) = publishing.await.expect("the publishing task");
    wait_until("every confirmed event handled", PATIENCE, || {
        counts.missing(&confirmed).is_empty()
    })
    .await;
    let health = bus.health();
    report(
        "close_all_connections x3",
        N as usize,
        confirmed.len(),
        &counts,
        &format!(
            " / re-sent {} / settle errors {}",
            transport.resent_publishes(),
            bus.stats().settle_errors
        ),
    );
    assert!(
        failed.is_empty(),
        "{} publishes failed, first: {:?}",
        failed.len(),
        failed.first()
    );
    assert_eq!(confirmed.len() as u64, N);
    assert!(
        health.transport.consumers.iter().any(|c| c.resumed >= 3),
        "{health:#?}"
    );
    assert!(health.is_healthy(), "{health:#?}");
    bus.shutdown();
    running.await.expect("the bus task").expect("the bus run");
    transport.close().await.expect("closing");
}

/// `rabbitmqctl stop_app`, then `start_app`, in the middle of a run: publishes issued
/// meanwhile wait for the broker; nothing confirmed is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_stopped_and_started_loses_nothing() {
    let Some(Fixture {
        _one,
        _cleanup,
        ns,
        config: _,
        transport,
        counts,
        bus,
    }) = Fixture::start("restart").await
    else {
        return;
    };
    let running = bus.spawn().await.expect("running the bus");
    let publisher = Bus::publisher(format!("{ns}-shop"), transport.clone());

    const N: u64 = 3_000;
    let publishing = tokio::spawn(async move { publish(&publisher, 0..N, 16).await });
    wait_until("handling goes on", PATIENCE, || counts.distinct() >= 500).await;
    let _restore = Restore(&["start_app"]);
    ctl(&["stop_app"]);
    wait_until("both connections noticed", PATIENCE, || {
        let health = bus.health();
        !health.is_healthy()
            && health
                .transport
                .connections
                .iter()
                .all(|c| c.state != ConnectionState::Up)
    })
    .await;
    let during = bus.health();
    ctl(&["start_app"]);
    let (confirmed, failed) = publishing.await.expect("the publishing task");
    wait_until("every confirmed event handled", PATIENCE, || {
        counts.missing(&confirmed).is_empty()
    })
    .await;
    wait_until("healthy again", PATIENCE, || bus.health().is_healthy()).await;
    report(
        "stop_app / start_app",
        N as usize,
        confirmed.len(),
        &counts,
        &format!(" / re-sent {}", transport.resent_publishes()),
    );
    assert!(
        failed.is_empty(),
        "{} publishes failed, first: {:?}",
        failed.len(),
        failed.first()
    );
    assert!(
        during
            .transport
            .connections
            .iter()
            .all(|c| c.last_error.is_some()),
        "the outage has its error: {during:#?}"
    );
    bus.shutdown();
    running.await.expect("the bus task").expect("the bus run");
    transport.close().await.expect("closing");
}

/// A memory alarm blocks publishing; consumers on their own connection keep draining the
/// queue; publishes wait, a publish with a short timeout fails with `Blocked`, and
/// everything arrives once the alarm clears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_alarm_blocks_publishers_not_consumers() {
    let Some(Fixture {
        _one,
        _cleanup,
        ns,
        config,
        transport,
        counts,
        bus,
    }) = Fixture::start("alarm").await
    else {
        return;
    };
    let publisher = Bus::publisher(format!("{ns}-shop"), transport.clone());

    // a backlog, published before the alarm and consumed during it
    const BACKLOG: u64 = 2_000;
    const MORE: u64 = 1_000;
    let (mut confirmed, failed) = publish(&publisher, 0..BACKLOG, 16).await;
    assert!(failed.is_empty(), "{failed:?}");

    let _restore = Restore(&["set_vm_memory_high_watermark", "0.6"]);
    ctl(&["set_vm_memory_high_watermark", "0.000001"]);
    let running = bus.spawn().await.expect("running the bus");
    let blocked_publisher = publisher.clone();
    let publishing =
        tokio::spawn(async move { publish(&blocked_publisher, BACKLOG..BACKLOG + MORE, 8).await });
    wait_until("the publishing connection is blocked", PATIENCE, || {
        transport
            .health()
            .connections
            .iter()
            .any(|c| c.state == ConnectionState::Blocked)
    })
    .await;
    wait_until("the backlog is consumed during the alarm", PATIENCE, || {
        counts.distinct() as u64 >= BACKLOG
    })
    .await;
    assert!(
        !publishing.is_finished(),
        "publishes must wait while the broker blocks them"
    );
    // a publisher with a short bound gets a clear error
    let impatient = AmqpTransport::new(config.publish_timeout(Duration::from_secs(2)));
    let error = Bus::publisher(format!("{ns}-impatient"), impatient.clone())
        .publish(&Tick {
            n: u64::MAX,
            note: None,
        })
        .await
        .expect_err("a publish during the alarm fails after its timeout");
    assert!(
        matches!(error, Error::Transport(TransportError::Blocked { .. })),
        "{error:?}"
    );
    let _ = impatient.close().await;
    assert!(
        bus.health().is_healthy(),
        "blocked is healthy: {:#?}",
        bus.health()
    );

    ctl(&["set_vm_memory_high_watermark", "0.6"]);
    let (more, failed) = publishing.await.expect("the publishing task");
    confirmed.extend(more);
    wait_until("every confirmed event handled", PATIENCE, || {
        counts.missing(&confirmed).is_empty()
    })
    .await;
    report(
        "memory alarm",
        (BACKLOG + MORE) as usize,
        confirmed.len(),
        &counts,
        " (handled counts the impatient publish too: it failed with `Blocked`, yet its frame \
         was on the wire, so the broker took it once the alarm cleared; a timeout is no \"no\")",
    );
    assert!(
        failed.is_empty(),
        "{} publishes failed, first: {:?}",
        failed.len(),
        failed.first()
    );
    assert_eq!(confirmed.len() as u64, BACKLOG + MORE);
    let health = bus.health();
    assert!(
        health
            .transport
            .consumers
            .iter()
            .all(|c| c.state == ConsumerState::Running && c.resumed == 0),
        "the consumer never stopped: {health:#?}"
    );
    bus.shutdown();
    running.await.expect("the bus task").expect("the bus run");
    transport.close().await.expect("closing");
}

/// Poison published by a plain AMQP client, mixed into good events: each is
/// dead-lettered with its reason, and every good event around them is handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_input_is_dead_lettered_and_the_rest_handled() {
    use lapin::BasicProperties;
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
    use lapin::types::{AMQPValue, FieldTable};

    let Some(Fixture {
        _one,
        _cleanup,
        ns,
        config,
        transport,
        counts,
        bus,
    }) = Fixture::start_with("poison", |b| b.max_message_size(64 * 1024)).await
    else {
        return;
    };
    let running = bus.spawn().await.expect("running the bus");
    let publisher = Bus::publisher(format!("{ns}-shop"), transport.clone());
    let raw = pubsub::amqp::connect(&config, "raw poison")
        .await
        .expect("raw connection");
    let channel = raw.create_channel().await.expect("raw channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let exchange = format!("{ns}.events");
    let typed = |content_type: &str| {
        BasicProperties::default()
            .with_type("faults.tick".into())
            .with_content_type(content_type.into())
    };
    let mut version = FieldTable::default();
    version.insert(
        pubsub::headers::HEADER_VERSION.into(),
        AMQPValue::LongInt(99),
    );
    let deep = format!(
        "{{\"n\":1,\"note\":{}1{}}}",
        "[".repeat(200),
        "]".repeat(200)
    );
    let poison: Vec<(&str, &str, &str, BasicProperties, Vec<u8>)> = vec![
        (
            "invalid JSON",
            &exchange,
            "faults.tick",
            typed("application/json"),
            b"{\"n\": ".to_vec(),
        ),
        (
            "wrong content type",
            &exchange,
            "faults.tick",
            typed("text/csv"),
            b"n\n1\n".to_vec(),
        ),
        (
            "no type, no routing key",
            "",
            &ns,
            BasicProperties::default(),
            b"{\"n\":1}".to_vec(),
        ),
        (
            "unknown version",
            &exchange,
            "faults.tick",
            typed("application/json").with_headers(version),
            b"{\"n\":1}".to_vec(),
        ),
        (
            "over the size limit",
            &exchange,
            "faults.tick",
            typed("application/json"),
            vec![b' '; 100 * 1024],
        ),
        (
            "nested too deep",
            &exchange,
            "faults.tick",
            typed("application/json"),
            deep.into_bytes(),
        ),
    ];

    const N: u64 = 2_000;
    let mut confirmed = std::collections::BTreeSet::new();
    let chunk = N / poison.len() as u64;
    for (i, (what, exchange, key, properties, body)) in poison.iter().enumerate() {
        let from = i as u64 * chunk;
        let (good, failed) = publish(&publisher, from..from + chunk, 8).await;
        assert!(failed.is_empty(), "{failed:?}");
        confirmed.extend(good);
        let properties = properties
            .clone()
            .with_message_id(format!("poison-{i}").into());
        let confirm = channel
            .basic_publish(
                (*exchange).into(),
                (*key).into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .unwrap_or_else(|e| panic!("publishing {what}: {e}"))
            .await
            .unwrap_or_else(|e| panic!("confirming {what}: {e}"));
        assert!(confirm.is_ack(), "{what} was not taken: {confirm:?}");
    }
    let (good, failed) = publish(&publisher, poison.len() as u64 * chunk..N, 8).await;
    assert!(failed.is_empty(), "{failed:?}");
    confirmed.extend(good);

    let settled = wait_for(PATIENCE, || {
        let s = bus.stats();
        counts.missing(&confirmed).is_empty() && s.dead_lettered >= poison.len() as u64
    })
    .await;
    let dead = bus.dead_letters().await.expect("reading the dead letters");
    report(
        "poison input",
        N as usize + poison.len(),
        confirmed.len(),
        &counts,
        &format!(" / dead-lettered {}", dead.len()),
    );
    for d in &dead {
        println!(
            "  dead: id {} key {:?} reason {}",
            d.message.metadata.id, d.message.metadata.key, d.reason
        );
    }
    assert!(
        settled,
        "not all handled or dead-lettered in {PATIENCE:?}: {:?}, missing {:?}",
        bus.stats(),
        counts.missing(&confirmed).len()
    );
    assert_eq!(
        dead.len(),
        poison.len(),
        "one dead letter per poison: {dead:#?}"
    );
    assert_poison_reasons(dead.iter().map(|d| d.reason.as_str()));
    assert_eq!(
        counts.distinct() as u64,
        N,
        "the good events, each once at least"
    );
    bus.shutdown();
    running.await.expect("the bus task").expect("the bus run");
    let _ = raw.close(200, "done".into()).await;
    transport.close().await.expect("closing");
}

/// One handler panics and one hangs past its timeout on some events: the other handlers of
/// those events run once, and each such event is dead-lettered after its retries, naming
/// the handler that failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_and_a_hanging_handler_spare_the_others() {
    let panics = Handler::typed("panics", |tick: Tick, _ctx: Context| async move {
        assert!(
            !tick.n.is_multiple_of(100),
            "the handler panics on tick {}",
            tick.n
        );
        Ok::<_, HandlerError>(())
    })
    .retries(2);
    let hangs = Handler::typed("hangs", |tick: Tick, _ctx: Context| async move {
        if tick.n % 100 == 1 {
            std::future::pending::<()>().await;
        }
        Ok::<_, HandlerError>(())
    })
    .timeout(Duration::from_millis(200))
    .retries(2);
    let Some(Fixture {
        _one,
        _cleanup,
        ns,
        config: _,
        transport,
        counts,
        bus,
    }) = Fixture::start_with("crash", |b| b.handler(panics).handler(hangs)).await
    else {
        return;
    };
    let running = bus.spawn().await.expect("running the bus");
    let publisher = Bus::publisher(format!("{ns}-shop"), transport.clone());
    const N: u64 = 1_000;
    const BAD: u64 = N / 100 * 2;
    let (confirmed, failed) = publish(&publisher, 0..N, 16).await;
    wait_until("every event settled", PATIENCE, || {
        let s = bus.stats();
        s.acked + s.dead_lettered >= N && s.in_flight == 0
    })
    .await;
    let stats = bus.stats();
    let dead = bus.dead_letters().await.expect("reading the dead letters");
    report(
        "panicking and hanging handlers",
        N as usize,
        confirmed.len(),
        &counts,
        &format!(
            " / dead-lettered {} / failed attempts {}",
            stats.dead_lettered, stats.handler_failures
        ),
    );
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(counts.distinct() as u64, N, "`count` ran for every event");
    assert_eq!(counts.duplicates(), (0, 0), "and once for each");
    assert_eq!(
        (stats.acked, stats.dead_lettered),
        (N - BAD, BAD),
        "{stats:?}"
    );
    assert_eq!(
        stats.handler_failures,
        BAD * 3,
        "three attempts each: {stats:?}"
    );
    for d in &dead {
        let tick: Tick = serde_json::from_slice(&d.message.body).expect("a tick");
        let culprit = if tick.n.is_multiple_of(100) {
            "panics"
        } else {
            "hangs"
        };
        assert_eq!(d.failed_handlers, [culprit], "{d:#?}");
    }
    assert_eq!(dead.len() as u64, BAD);
    bus.shutdown();
    running.await.expect("the bus task").expect("the bus run");
    transport.close().await.expect("closing");
}

/// Retries waiting on the broker (longer than the in-process limit) survive a restart of
/// the service: the new instance handles them when their delay is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_retries_outlive_a_restart() {
    let later = Arc::new(Counts::default());
    let flaky = {
        let later = Arc::clone(&later);
        move || {
            let later = Arc::clone(&later);
            Handler::typed("flaky", move |tick: Tick, ctx: Context| {
                let later = Arc::clone(&later);
                async move {
                    if ctx.attempt() == 1 {
                        return Err(HandlerError::new("not yet"));
                    }
                    *lock(&later.handled).entry(tick.n).or_default() += 1;
                    Ok(())
                }
            })
        }
    };
    let slow_retries = |b: pubsub::BusBuilder| {
        b.retry(RetryPolicy::exponential(1, Duration::from_secs(5)))
            .in_process_retry_limit(Duration::from_millis(500))
    };
    let first_flaky = flaky();
    let Some(Fixture {
        _one,
        _cleanup,
        ns,
        config,
        transport,
        counts,
        bus,
    }) = Fixture::start_with("later", move |b| slow_retries(b).handler(first_flaky)).await
    else {
        return;
    };
    let running = bus.spawn().await.expect("running the bus");
    let publisher = Bus::publisher(format!("{ns}-shop"), transport.clone());
    const N: u64 = 1_000;
    let (confirmed, failed) = publish(&publisher, 0..N, 16).await;
    assert!(failed.is_empty(), "{failed:?}");
    wait_until("every event waits on the broker", PATIENCE, || {
        bus.stats().retried >= N
    })
    .await;
    bus.shutdown();
    running.await.expect("the bus task").expect("the bus run");
    transport.close().await.expect("closing");
    let before = later.distinct();

    // the service starts again: a new process would have a new transport
    let transport = AmqpTransport::new(config);
    let again = fixture::bus(&transport, &ns, vec![flaky()], slow_retries).await;
    let running = again.spawn().await.expect("running the bus again");
    wait_until("every retry handled after the restart", PATIENCE, || {
        later.missing(&confirmed).is_empty()
    })
    .await;
    report(
        "delayed retry across a restart",
        N as usize,
        confirmed.len(),
        &later,
        &format!(
            " / handled before the restart {before} / retried {}",
            bus.stats().retried
        ),
    );
    assert!(
        (before as u64) < N,
        "the delay outlasted the first instance: {before} handled before the restart"
    );
    assert_eq!(counts.distinct() as u64, N, "`count` ran once per event");
    again.shutdown();
    running.await.expect("the bus task").expect("the bus run");
    transport.close().await.expect("closing");
}

/// The consumer process of `a_killed_consumer_s_deliveries_go_to_another`: takes
/// deliveries of the service `PUBSUB_FAULT_CHILD` names, says so on stdout, and never
/// settles them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of a_killed_consumer_s_deliveries_go_to_another, run by it"]
async fn child_consumer_that_never_acks() {
    let ns = std::env::var("PUBSUB_FAULT_CHILD").expect("PUBSUB_FAULT_CHILD names the service");
    let config = config(&ns).expect("the broker");
    let transport = AmqpTransport::new(config);
    let hold = Handler::typed("count", |tick: Tick, _ctx: Context| async move {
        println!("holding {}", tick.n);
        std::future::pending::<()>().await;
        Ok::<_, HandlerError>(())
    });
    let bus = fixture::bus(&transport, &ns, vec![hold], |b| b).await;
    bus.run_until(std::future::pending::<()>())
        .await
        .expect("the child's bus");
}

/// A consumer process killed (SIGKILL) while it holds deliveries: the broker gives them to
/// the other consumer of the service, which handles them, flagged as redelivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_consumer_s_deliveries_go_to_another() {
    let Some(Fixture {
        _one,
        _cleanup,
        ns,
        config: _,
        transport,
        counts,
        bus,
    }) = Fixture::start("kill").await
    else {
        return;
    };
    let publisher = Bus::publisher(format!("{ns}-shop"), transport.clone());
    const N: u64 = 2_000;
    let (confirmed, failed) = publish(&publisher, 0..N, 16).await;
    assert!(failed.is_empty(), "{failed:?}");

    let child = Child::spawn(
        concat!(module_path!(), "::child_consumer_that_never_acks"),
        &ns,
        "holding ",
    );
    wait_until("the child holds deliveries", PATIENCE, || {
        child.held() >= 50
    })
    .await;
    let running = bus.spawn().await.expect("running the bus");
    wait_until("this consumer handles the rest", PATIENCE, || {
        counts.distinct() as u64 + child.held() >= N
    })
    .await;
    let held = child.held();
    child.kill();
    wait_until("every event handled, the held ones too", PATIENCE, || {
        counts.missing(&confirmed).is_empty()
    })
    .await;
    report(
        "consumer killed with SIGKILL",
        N as usize,
        confirmed.len(),
        &counts,
        &format!(" / held by the killed consumer {held}"),
    );
    assert!(
        *lock(&counts.redelivered) >= held,
        "the held deliveries came back flagged as redelivered"
    );
    bus.shutdown();
    running.await.expect("the bus task").expect("the bus run");
    transport.close().await.expect("closing");
}

/// The consumer process of `a_message_that_crashes_its_consumer_is_dead_lettered_by_the_limit`:
/// consumes the quorum queue of `PUBSUB_FAULT_CHILD` one message at a time, prints each tick
/// it handled, and aborts the whole process on tick 13.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of a_message_that_crashes_its_consumer_is_dead_lettered_by_the_limit, run by it"]
async fn child_consumer_that_crashes_on_13() {
    let ns = std::env::var("PUBSUB_FAULT_CHILD").expect("PUBSUB_FAULT_CHILD names the service");
    let transport = AmqpTransport::new(quorum(&ns).expect("the broker"));
    let crash = Handler::typed("count", |tick: Tick, _ctx: Context| async move {
        if tick.n == 13 {
            std::process::abort();
        }
        println!("handled {}", tick.n);
        Ok::<_, HandlerError>(())
    });
    let bus = fixture::bus(&transport, &ns, vec![crash], |b| b.prefetch(1)).await;
    println!("ready 0");
    bus.run_until(std::future::pending::<()>())
        .await
        .expect("the child's bus");
}

/// The path of `child_consumer_that_crashes_on_13`, for [`Child::spawn`].
const CRASHES_ON_13: &str = concat!(module_path!(), "::child_consumer_that_crashes_on_13");

/// The queue of the quorum test: quorum, delivery limit 2.
fn quorum(ns: &str) -> Option<pubsub::amqp::AmqpConfig> {
    config(ns).map(|c| {
        c.queue_type(pubsub::amqp::QueueType::Quorum {
            delivery_limit: Some(2),
        })
    })
}

/// A message whose handler crashes the consumer process, on a quorum queue with a delivery
/// limit: after the limit the broker dead-letters it, instead of crashing consumers forever,
/// and the events after it are handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_crashes_its_consumer_is_dead_lettered_by_the_limit() {
    let _one = one_at_a_time().await;
    let ns = namespace("quorum");
    let Some(config) = quorum(&ns) else { return };
    let _cleanup = DeleteQueues(ns.clone());
    let transport = AmqpTransport::new(config);
    let service = Bus::publisher(ns.clone(), transport.clone());

    // the first child declares the queue, then the events go in
    let mut child = Child::spawn(CRASHES_ON_13, &ns, "ready ");
    wait_until("the child is ready", PATIENCE, || !child.ticks().is_empty()).await;
    drop(child);
    const N: u64 = 100;
    let (confirmed, failed) = publish(&service, 0..N, 1).await;
    assert!(failed.is_empty(), "{failed:?}");

    let mut handled = std::collections::BTreeSet::new();
    let mut crashes = 0;
    loop {
        child = Child::spawn(CRASHES_ON_13, &ns, "handled ");
        let crashed = wait_for(PATIENCE, || {
            child.exited() || child.ticks().len() as u64 + handled.len() as u64 >= N - 1
        })
        .await;
        assert!(crashed, "the child neither crashed nor handled everything");
        handled.extend(child.ticks());
        if !child.exited() {
            break;
        }
        crashes += 1;
        assert!(
            crashes <= 5,
            "crashed {crashes} times: the limit did not stop it"
        );
    }
    child.kill();
    let dead = service
        .dead_letters()
        .await
        .expect("reading the dead letters");
    let missing: Vec<u64> = confirmed
        .iter()
        .filter(|n| **n != 13 && !handled.contains(n))
        .copied()
        .collect();
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!(
            "quorum delivery limit: published {N} / confirmed {} / handled {} / crashes {crashes} / dead-lettered {}: {:?}\n",
            confirmed.len(),
            handled.len(),
            dead.len(),
            dead.iter().map(|d| &d.reason).collect::<Vec<_>>()
        )
        .as_bytes(),
    );
    assert!(missing.is_empty(), "never handled: {missing:?}");
    let ticks: Vec<u64> = dead
        .iter()
        .filter_map(|d| serde_json::from_slice::<Tick>(&d.message.body).ok())
        .map(|t| t.n)
        .collect();
    assert_eq!(ticks, [13], "{dead:#?}");
    assert_eq!(
        dead[0].reason, "dead-lettered by the broker: delivery_limit",
        "{dead:#?}"
    );
    assert!(
        (2..=3).contains(&crashes),
        "crashes before the limit: {crashes}"
    );
    transport.close().await.expect("closing");
}

/// The service's queue deleted under its consumer (the broker cancels the consumer, which
/// lapin's recovery would not bring back): the transport declares the queue again and
/// resumes, and the events published afterwards are handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_whose_queue_is_deleted_comes_back() {
    let Some(Fixture {
        _one,
        _cleanup,
        ns,
        config: _,
        transport,
        counts,
        bus,
    }) = Fixture::start("deleted").await
    else {
        return;
    };
    let running = bus.spawn().await.expect("running the bus");
    let publisher = Bus::publisher(format!("{ns}-shop"), transport.clone());
    const N: u64 = 1_000;
    let (before, failed) = publish(&publisher, 0..N / 2, 8).await;
    assert!(failed.is_empty(), "{failed:?}");
    wait_until("the first half handled", PATIENCE, || {
        counts.missing(&before).is_empty()
    })
    .await;
    ctl(&["delete_queue", &ns]);
    wait_until("the consumer resumed", PATIENCE, || {
        let health = bus.health();
        health.is_healthy() && health.transport.consumers.iter().all(|c| c.resumed >= 1)
    })
    .await;
    let (after, failed) = publish(&publisher, N / 2..N, 8).await;
    wait_until("the second half handled", PATIENCE, || {
        counts.missing(&after).is_empty()
    })
    .await;
    report(
        "queue deleted under the consumer",
        N as usize,
        before.len() + after.len(),
        &counts,
        "",
    );
    assert!(failed.is_empty(), "{failed:?}");
    bus.shutdown();
    running.await.expect("the bus task").expect("the bus run");
    transport.close().await.expect("closing");
}
