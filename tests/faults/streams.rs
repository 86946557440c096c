//! The RabbitMQ Streams transport under faults, against the real broker
//! (`RABBITMQ_STREAM_HOST`/`RABBITMQ_STREAM_PORT`, `PUBSUB_RABBITMQCTL`, as
//! `scripts/broker.sh` prints them): connections closed by the broker, a stream deleted
//! under its producer and consumer, poison appended by another client. Every test counts
//! the events it published, confirmed and handled, shows that none confirmed was lost, and
//! prints the counts. Tests run one at a time.

use std::sync::Arc;
use std::time::Duration;

use crate::fixture::*;
use crate::support::{self, broker};
use pubsub::streams::{StreamConfig, StreamTransport};
use pubsub::{
    Bus, BusBuilder, HandlerSelection, RetryPolicy,
    health::ConsumerState,
    stream::{StartAt, StreamConsumption, StreamNaming},
    transport::Transport,
};
use rabbitmq_stream_client::types::Message as WireMessage;

const PATIENCE: Duration = Duration::from_secs(90);

/// A counted run on streams: a consumer bus (not yet running), a publisher bus, each on a
/// transport of its own, all streams under a prefix of the test's own.
struct Run {
    _one: tokio::sync::MutexGuard<'static, ()>,
    ns: String,
    config: StreamConfig,
    consuming: StreamTransport,
    publishing: StreamTransport,
    counts: Arc<Counts>,
    bus: Bus,
    publisher: Bus,
}

impl Run {
    /// `None` (skip) without a broker.
    async fn start(test: &str, configure: impl FnOnce(BusBuilder) -> BusBuilder) -> Option<Self> {
        let one = one_at_a_time().await;
        let config = support::stream_config()?;
        if !broker::has_rabbitmqctl() {
            return None;
        }
        let ns = namespace(test);
        let config = config
            .naming(StreamNaming::new(ns.clone()))
            .backoff(Duration::from_millis(100), Duration::from_secs(1))
            .check_interval(Duration::from_millis(200));
        let consuming = StreamTransport::new(config.clone());
        let publishing = StreamTransport::new(config.clone());
        let counts = Arc::new(Counts::default());
        let builder = Bus::builder()
            .service(format!("{ns}-svc"))
            .transport(consuming.clone())
            .select_handlers(HandlerSelection::None)
            .prefetch(50)
            .retry(RetryPolicy::exponential(3, Duration::from_millis(20)))
            .shutdown_timeout(Duration::from_secs(5))
            .stream_consumption(
                StreamConsumption::new()
                    .start_at(StartAt::First)
                    .store_every(200, Duration::from_millis(300)),
            )
            .handler(counting(&counts));
        let bus = configure(builder).build().await.expect("building the bus");
        let publisher = Bus::publisher(format!("{ns}-shop"), publishing.clone());
        Some(Self {
            _one: one,
            ns,
            config,
            consuming,
            publishing,
            counts,
            bus,
            publisher,
        })
    }

    /// The stream the ticks go to.
    fn stream(&self) -> String {
        self.config.naming.stream_of_key("faults.tick")
    }

    /// Deletes the streams of the run and closes the transports.
    async fn clean_up(self) {
        let mut streams = self.consuming.streams_created().await;
        streams.extend(self.publishing.streams_created().await);
        streams.push(self.stream());
        streams.push(self.config.naming.error_stream(&format!("{}-svc", self.ns)));
        streams.sort();
        streams.dedup();
        for stream in streams {
            if let Err(error) = self.publishing.delete_stream(&stream).await {
                eprintln!("deleting {stream}: {error}");
            }
        }
        let _ = self.publishing.close().await;
        let _ = self.consuming.close().await;
    }
}

/// `rabbitmqctl close_all_connections` while events are published and handled: the
/// producer re-sends what was not confirmed under its ids, the consumer resumes after the
/// last offset it handed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_closed_by_the_broker_lose_nothing() {
    let Some(run) = Run::start("streams-close", |b| b).await else {
        return;
    };
    let running = run.bus.spawn().await.expect("running the bus");
    const N: u64 = 20_000;
    let publisher = run.publisher.clone();
    let publishing = tokio::spawn(async move { publish(&publisher, 0..N, 20).await });
    let counts = Arc::clone(&run.counts);
    wait_until("a fifth handled", PATIENCE, || {
        counts.distinct() as u64 >= N / 5
    })
    .await;
    ctl(&["close_all_connections", "'fault test'"]);
    let (confirmed, failed) = publishing.await.expect("the publishing task");
    let settled = wait_for(PATIENCE, || run.counts.missing(&confirmed).is_empty()).await;
    // an idle producer or consumer notices the close on its own: wait for both
    let came_back = |h: &pubsub::health::TransportHealth| {
        h.connections.iter().any(|c| c.reconnects >= 1)
            || h.consumers.iter().any(|c| c.resumed >= 1)
    };
    let back = wait_for(PATIENCE, || {
        came_back(&run.publishing.health()) && came_back(&run.consuming.health())
    })
    .await;
    let producers = run.publishing.health().connections;
    let consumers = run.consuming.health().consumers;
    let reconnects: u64 = producers.iter().map(|c| c.reconnects).sum();
    let resumed: u64 = consumers.iter().map(|c| c.resumed).sum();
    report(
        "streams close_all_connections",
        N as usize,
        confirmed.len(),
        &run.counts,
        &format!(
            " / re-sent {} / producer reconnects {reconnects} / consumer resumes {resumed}",
            run.publishing.resent_publishes()
        ),
    );
    assert!(failed.is_empty(), "publishes failed: {failed:?}");
    assert!(
        settled,
        "confirmed but never handled: {:?}",
        run.counts.missing(&confirmed)
    );
    assert_eq!(confirmed.len() as u64, N);
    assert!(back, "producer and consumer came back");
    assert!(reconnects >= 1, "the producer came back: {producers:?}");
    assert!(resumed >= 1, "the consumer came back: {consumers:?}");
    assert!(
        consumers.iter().all(|c| c.state == ConsumerState::Running),
        "{consumers:?}"
    );
    assert!(run.bus.health().is_healthy(), "{:?}", run.bus.health());
    // resumed after the last offset handed out, and the broker de-duplicated the re-sent
    assert_eq!(run.counts.duplicates(), (0, 0), "no event handled twice");
    run.bus.shutdown();
    running.await.expect("bus task").expect("bus ended cleanly");
    run.clean_up().await;
}

/// The stream deleted under its running producer and consumer: the next publish
/// re-creates it, and the consumer notices (the client does not tell it) and reads the
/// new stream from its start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_stream_is_re_created_and_read_again() {
    let Some(run) = Run::start("streams-delete", |b| b).await else {
        return;
    };
    let running = run.bus.spawn().await.expect("running the bus");
    const N: u64 = 2_000;
    let (before, failed) = publish(&run.publisher, 0..N / 2, 10).await;
    assert!(failed.is_empty(), "{failed:?}");
    wait_until("the first half handled", PATIENCE, || {
        run.counts.missing(&before).is_empty()
    })
    .await;
    // the consumer stored its offset (every 300 ms): after the deletion, the offset
    // missing from the re-created stream tells it the stream is new
    let admin = StreamTransport::new(run.config.clone());
    let service = format!("{}-svc", run.ns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while admin
        .stored_offset(&service, &run.stream())
        .await
        .expect("reading the stored offset")
        .is_none_or(|offset| offset + 1 < N / 2)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the consumer never stored its offset"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    admin
        .delete_stream(&run.stream())
        .await
        .expect("deleting the stream");
    let _ = admin.close().await;

    let (after, failed) = publish(&run.publisher, N / 2..N, 10).await;
    let settled = wait_for(PATIENCE, || run.counts.missing(&after).is_empty()).await;
    let producers = run.publishing.health().connections;
    let consumers = run.consuming.health().consumers;
    let reconnects: u64 = producers.iter().map(|c| c.reconnects).sum();
    let resumed: u64 = consumers.iter().map(|c| c.resumed).sum();
    report(
        "streams stream deleted",
        N as usize,
        before.len() + after.len(),
        &run.counts,
        &format!(
            " / re-sent {} / producer rebuilt {reconnects} / consumer resumes {resumed}",
            run.publishing.resent_publishes()
        ),
    );
    assert!(
        failed.is_empty(),
        "publishing after the deletion: {failed:?}"
    );
    assert_eq!(
        after.len() as u64,
        N / 2,
        "every publish after it confirmed"
    );
    assert!(
        settled,
        "confirmed after the deletion but never handled: {} of {}",
        run.counts.missing(&after).len(),
        after.len()
    );
    assert!(reconnects >= 1, "the producer was rebuilt: {producers:?}");
    assert!(resumed >= 1, "the consumer resubscribed: {consumers:?}");
    assert_eq!(run.counts.duplicates(), (0, 0), "no event handled twice");
    run.bus.shutdown();
    running.await.expect("bus task").expect("bus ended cleanly");
    run.clean_up().await;
}

/// A raw stream message as another client would append it.
fn raw(properties: &[(&str, &str)], subject: Option<&str>, body: Vec<u8>) -> WireMessage {
    let builder = WireMessage::builder().body(body);
    let builder = match subject {
        Some(subject) => builder.properties().subject(subject).message_builder(),
        None => builder,
    };
    let mut application = builder.application_properties();
    for (name, value) in properties {
        application = application.insert(*name, *value);
    }
    application.message_builder().build()
}

/// Poison appended by a plain stream client between good events: each goes to the
/// service's error stream with its reason, and the consumer goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_from_another_client_goes_to_the_error_stream() {
    let Some(run) = Run::start("streams-poison", |b| b.max_message_size(64 * 1024)).await else {
        return;
    };
    let running = run.bus.spawn().await.expect("running the bus");
    let stream = run.stream();
    let c = &run.config;
    let environment = support::raw_stream_environment(c).await;
    let producer = environment
        .producer()
        .build(&stream)
        .await
        .expect("a raw producer");
    let json = [
        ("x-event-key", "faults.tick"),
        ("content-type", "application/json"),
    ];
    let deep = format!(
        "{{\"n\":1,\"note\":{}1{}}}",
        "[".repeat(200),
        "]".repeat(200)
    );
    let poison: Vec<(&str, WireMessage)> = vec![
        ("invalid JSON", raw(&json, None, b"{\"n\": ".to_vec())),
        (
            "wrong content type",
            raw(
                &[("x-event-key", "faults.tick"), ("content-type", "text/csv")],
                None,
                b"n\n1\n".to_vec(),
            ),
        ),
        ("no key", raw(&[], None, b"{\"n\":1}".to_vec())),
        (
            "unknown version",
            raw(
                &[
                    ("x-event-key", "faults.tick"),
                    ("content-type", "application/json"),
                    ("x-event-version", "99"),
                ],
                None,
                b"{\"n\":1}".to_vec(),
            ),
        ),
        (
            "over the size limit",
            raw(&json, Some("faults.tick"), vec![b' '; 100 * 1024]),
        ),
        ("nested too deep", raw(&json, None, deep.into_bytes())),
    ];

    const N: u64 = 1_200;
    let chunk = N / poison.len() as u64;
    let mut confirmed = std::collections::BTreeSet::new();
    for (i, (what, message)) in poison.into_iter().enumerate() {
        let from = i as u64 * chunk;
        let (good, failed) = publish(&run.publisher, from..from + chunk, 8).await;
        assert!(failed.is_empty(), "{failed:?}");
        confirmed.extend(good);
        let status = producer
            .send_with_confirm(message)
            .await
            .unwrap_or_else(|e| panic!("appending {what}: {e}"));
        assert!(status.confirmed(), "{what} was not taken: {status:?}");
    }
    let _ = producer.close().await;
    let kinds = 6;

    let settled = wait_for(PATIENCE, || {
        run.counts.missing(&confirmed).is_empty() && run.bus.stats().dead_lettered >= kinds
    })
    .await;
    let dead = run
        .bus
        .dead_letters()
        .await
        .expect("reading the error stream");
    report(
        "streams poison input",
        N as usize + kinds as usize,
        confirmed.len(),
        &run.counts,
        &format!(" / in the error stream {}", dead.len()),
    );
    for d in &dead {
        println!(
            "  error stream: key {:?} reason {}",
            d.message.metadata.key, d.reason
        );
    }
    assert!(
        settled,
        "not all handled or dead-lettered in {PATIENCE:?}: {:?}, missing {}",
        run.bus.stats(),
        run.counts.missing(&confirmed).len()
    );
    assert_eq!(dead.len() as u64, kinds, "one entry per poison: {dead:#?}");
    assert_poison_reasons(dead.iter().map(|d| d.reason.as_str()));
    assert_eq!(
        run.counts.distinct() as u64,
        N,
        "the good events, each once"
    );
    assert_eq!(run.counts.duplicates(), (0, 0));
    run.bus.shutdown();
    running.await.expect("bus task").expect("bus ended cleanly");
    run.clean_up().await;
}

/// The broker's node SIGKILLed under load and started again (see `kill`): the producer
/// re-sends what was not confirmed under its ids, the consumer resumes; nothing confirmed
/// is lost, and the bus shuts down within its bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_broker_loses_nothing_on_streams() {
    use crate::kill::{PATIENCE as KILL_PATIENCE, kill_and_restart, shut_down_within_bound};
    let Some(script) = broker::broker_script() else {
        return;
    };
    let Some(run) = Run::start("kill-streams", |b| b).await else {
        return;
    };
    let running = run.bus.spawn().await.expect("running the bus");
    const N: u64 = 20_000;
    let publisher = run.publisher.clone();
    let publishing = tokio::spawn(async move { publish(&publisher, 0..N, 20).await });
    let Some(port) = broker::stream_address() else {
        return;
    };
    let killed = kill_and_restart(
        &script,
        &port,
        &run.bus,
        &run.publisher,
        &run.counts,
        &publishing,
    )
    .await;
    let (confirmed, failed) = publishing.await.expect("the publishing task");
    wait_for(KILL_PATIENCE, || run.counts.missing(&confirmed).is_empty()).await;
    let lost = run.counts.missing(&confirmed).len();
    report(
        "SIGKILL, Streams",
        N as usize + 1,
        confirmed.len() + 1,
        &run.counts,
        &format!(
            " / failed {} / lost {lost} / re-sent {} / port → confirm {:.1?} / port → healthy {:.1?}",
            failed.len(),
            run.publishing.resent_publishes(),
            killed.to_confirm,
            killed.to_healthy
        ),
    );
    assert_eq!(
        lost,
        0,
        "confirmed, never handled: {:?}",
        run.counts.missing(&confirmed)
    );
    let settled = wait_for(crate::kill::SETTLED_WITHIN, || {
        run.bus.stats().in_flight == 0
    })
    .await;
    assert!(settled, "still in flight: {:?}", run.bus.stats());
    shut_down_within_bound("SIGKILL, Streams", &run.bus, running).await;
    run.clean_up().await;
}
