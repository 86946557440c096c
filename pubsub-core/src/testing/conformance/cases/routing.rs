//! Routing: every published message reaches the handlers whose patterns match it, once,
//! with its envelope intact; every service gets every event bound to it; many services on
//! one connection each get their own messages and no other's.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;

use tokio::sync::Barrier;

use crate::bus::Bus;
use crate::handler::Handler;
use crate::handler_error::HandlerError;
use crate::handler_input::RawEvent;
use crate::metadata::Message;
use crate::stats::BusStats;
use crate::testing::conformance::support::{
    Changes, Seen, bus, bus_on, competing, eventually, linger, message, namespace, probe,
    publish_all, publisher, skip_part, start, stop, stopped,
};
use crate::testing::conformance::{Broker, Need};
use crate::transport::Transport;

/// Every published message reaches the handler once, with its envelope intact.
pub(crate) async fn publish_subscribe(broker: &dyn Broker) {
    let ns = namespace();
    let key = format!("{ns}.order.created");
    let got: Arc<Mutex<Vec<Message>>> = Arc::default();
    let sink = Arc::clone(&got);
    let handler = Handler::raw("record", key.clone(), move |event: RawEvent, _ctx| {
        let sink = Arc::clone(&sink);
        async move {
            sink.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(event.message().clone());
            Ok::<_, HandlerError>(())
        }
    });
    let bus = bus(broker, &ns, vec![handler], 10).await;
    let task = start(&bus).await;
    let mut sent = message(&key, 7);
    sent.metadata.correlation_id = Some("conversation-1".into());
    sent.metadata.causation_id = Some("cause-1".into());
    sent.metadata.reply_to = Some(format!("{ns}.replies"));
    sent.metadata.version = 3;
    sent.metadata.headers.insert("tenant".into(), "acme".into());
    if let Err(error) = bus.publish_message(sent.clone()).await {
        panic!("publish failed: {error}");
    }
    eventually("the message is handled", &[&bus], || {
        got.lock().map(|g| !g.is_empty()).unwrap_or(false)
    })
    .await;
    let received = got.lock().unwrap_or_else(|p| p.into_inner())[0].clone();
    let (s, r) = (&sent.metadata, &received.metadata);
    assert_eq!(received.body, sent.body, "body changed in transit");
    assert_eq!(r.id, s.id, "event id changed in transit");
    assert_eq!(r.key, s.key, "key changed in transit");
    assert_eq!(r.version, s.version, "version changed in transit");
    assert_eq!(
        r.content_type, s.content_type,
        "content type changed in transit"
    );
    assert_eq!(
        r.correlation_id, s.correlation_id,
        "correlation id changed in transit"
    );
    assert_eq!(
        r.causation_id, s.causation_id,
        "causation id changed in transit"
    );
    assert_eq!(r.reply_to, s.reply_to, "reply-to changed in transit");
    assert_eq!(
        r.app_id.as_deref(),
        Some(ns.as_str()),
        "app_id is the publishing service"
    );
    assert_eq!(
        r.headers.get("tenant"),
        Some(&"acme".to_owned()),
        "header lost in transit"
    );
    assert_eq!(
        r.timestamp_millis() / 1000,
        s.timestamp_millis() / 1000,
        "timestamp changed in transit"
    );
    stop(bus, task).await;
    assert_eq!(
        got.lock().map(|g| g.len()).unwrap_or(0),
        1,
        "handled more than once"
    );
}

/// A message reaches every handler whose pattern matches it, and no other.
pub(crate) async fn fan_out(broker: &dyn Broker) {
    let ns = namespace();
    let (exact, star, hash, other) = (
        Seen::default(),
        Seen::default(),
        Seen::default(),
        Seen::default(),
    );
    let handlers = vec![
        exact.handler("exact", &format!("{ns}.order.created")),
        star.handler("star", &format!("{ns}.order.*")),
        hash.handler("hash", &format!("{ns}.#")),
        other.handler("other", &format!("{ns}.user.*")),
    ];
    let bus = bus(broker, &ns, handlers, 50).await;
    let task = start(&bus).await;
    let ids = publish_all(&bus, &format!("{ns}.order.created"), 20).await;
    let user = publish_all(&bus, &format!("{ns}.user.created"), 5).await;
    eventually("every handler saw its messages", &[&bus], || {
        exact.len() == 20 && star.len() == 20 && hash.len() == 25 && other.len() == 5
    })
    .await;
    stop(bus, task).await;
    assert_eq!(exact.distinct(), ids);
    assert_eq!(star.distinct(), ids);
    assert_eq!(other.distinct(), user);
    assert_eq!(hash.distinct(), ids.union(&user).cloned().collect());
}

/// Two services bound to one key each handle every event (consumer groups), while the two
/// buses within each service compete for it: each event once per service.
pub(crate) async fn every_service_gets_every_event(broker: &dyn Broker) {
    const COUNT: usize = 100;
    let ns = namespace();
    let key = format!("{ns}.order.placed");
    let (transport, capabilities) = probe(broker).await;
    let competing_half = capabilities.competing_consumers;
    if !competing_half {
        skip_part(
            "every_service_gets_every_event",
            "two competing buses per service",
            Need::CompetingConsumers,
            transport,
        );
    }
    let buses_per_service = if competing_half { 2 } else { 1 };
    let mut services = Vec::new();
    for name in ["billing", "shipping"] {
        let service = format!("{ns}-{name}");
        let rendezvous = Arc::new(Barrier::new(buses_per_service));
        let mut buses = Vec::new();
        for _ in 0..buses_per_service {
            let seen = Seen::default();
            let handler = competing(&seen, "record", &key, &rendezvous);
            buses.push((bus(broker, &service, vec![handler], 1).await, seen));
        }
        services.push((service, buses));
    }
    let mut tasks = Vec::new();
    for (_, buses) in &services {
        for (bus, _) in buses {
            tasks.push((bus.clone(), start(bus).await));
        }
    }
    let publisher = publisher(broker.connect().await, &format!("{ns}-publisher")).await;
    let ids = publish_all(&publisher, &key, COUNT).await;
    let all_buses: Vec<&dyn Changes> = tasks.iter().map(|(bus, _)| bus as &dyn Changes).collect();
    eventually("every service handled every event", &all_buses, || {
        services
            .iter()
            .all(|(_, buses)| buses.iter().map(|(_, seen)| seen.len()).sum::<usize>() >= COUNT)
    })
    .await;
    // an event handled twice within a service would show here
    linger(Duration::from_millis(100)).await;
    for (bus, task) in tasks {
        stop(bus, task).await;
    }
    for (service, buses) in &services {
        let handled: Vec<String> = buses.iter().flat_map(|(_, seen)| seen.ids()).collect();
        assert_eq!(
            handled.len(),
            COUNT,
            "service {service}: each of the {COUNT} events must be handled exactly once by one of its buses"
        );
        assert_eq!(
            handled.into_iter().collect::<BTreeSet<_>>(),
            ids,
            "service {service} did not get every event"
        );
        if competing_half {
            let per_bus: Vec<usize> = buses.iter().map(|(_, seen)| seen.len()).collect();
            assert!(
                per_bus.iter().all(|&n| n > 0),
                "service {service}: both of its buses must get work, got {per_bus:?}"
            );
        }
    }
}

/// About 20 services are built, run and shut down concurrently on one connection: each
/// gets its own messages and no other's. Then, on the same connection, a service started
/// after the churn and the churned services started again lose nothing: each gets
/// exactly what was published to it meanwhile.
pub(crate) async fn many_services_at_once(broker: &dyn Broker) {
    const EACH: usize = 10;
    let ns = namespace();
    let connection = broker.connect().await;
    let publisher = publisher(Arc::clone(&connection), &format!("{ns}-publisher")).await;
    let publish_each = || {
        join_all((0..SERVICES).map(|i| {
            let (publisher, key) = (&publisher, format!("{ns}-s{i:02}.ping"));
            async move { publish_all(publisher, &key, EACH).await }
        }))
    };

    // round 1: the messages published while the services run
    let round = Services::start(&connection, &ns).await;
    let sent = publish_each().await;
    round.finish(1, EACH, &sent).await;

    // while every service is down, more for each; and a service that comes late, fed
    // before and after it starts
    let backlog = publish_each().await;
    let late_key = format!("{ns}-late.ping");
    let late_seen = Seen::default();
    let late = bus_on(
        Arc::clone(&connection),
        &format!("{ns}-late"),
        vec![late_seen.handler("ping", &late_key)],
        10,
    )
    .await;
    let mut late_sent = publish_all(&publisher, &late_key, EACH).await;
    let late_task = start(&late).await;
    late_sent.extend(publish_all(&publisher, &late_key, EACH).await);

    // round 2: the same services again, on the same connection, get their backlog
    let round = Services::start(&connection, &ns).await;
    round.finish(2, EACH, &backlog).await;
    eventually("the late service handled its messages", &[&late], || {
        late_seen.len() >= 2 * EACH
    })
    .await;
    linger(Duration::from_millis(100)).await;
    let late_stats = stopped(late, late_task).await;
    assert_eq!(
        (late_seen.len(), late_stats.deliveries),
        (2 * EACH, 2 * EACH as u64),
        "the service started after the churn: each of its messages once, {late_stats:?}"
    );
    assert_eq!(
        late_seen.distinct(),
        late_sent,
        "the late service lost messages"
    );
}

/// How many services [`many_services_at_once`] runs at once.
const SERVICES: usize = 20;

/// The services of [`many_services_at_once`], `{ns}-s00` … bound to `{ns}-s00.*` … (a
/// domain each, so that on streams each reads a stream of its own).
struct Services {
    names: Vec<String>,
    seen: Vec<Seen>,
    buses: Vec<Bus>,
    tasks: Vec<tokio::task::JoinHandle<crate::Result<()>>>,
}

impl Services {
    /// Builds every service at once on `connection`, then starts every one at once.
    async fn start(connection: &Arc<dyn Transport>, ns: &str) -> Self {
        let names: Vec<String> = (0..SERVICES).map(|i| format!("{ns}-s{i:02}")).collect();
        let seen: Vec<Seen> = (0..SERVICES).map(|_| Seen::default()).collect();
        let buses = join_all((0..SERVICES).map(|i| {
            let handler = seen[i].handler("ping", &format!("{ns}-s{i:02}.*"));
            bus_on(Arc::clone(connection), &names[i], vec![handler], 10)
        }))
        .await;
        let tasks = join_all(buses.iter().map(start)).await;
        Self {
            names,
            seen,
            buses,
            tasks,
        }
    }

    /// Waits until each service handled `each` messages, stops every one at once, and
    /// checks that each got exactly `sent[i]`, once each, and nothing else.
    async fn finish(self, round: usize, each: usize, sent: &[BTreeSet<String>]) {
        let sources: Vec<&dyn Changes> = self.buses.iter().map(|b| b as &dyn Changes).collect();
        eventually(
            &format!("round {round}: every service handled its messages"),
            &sources,
            || self.seen.iter().all(|s| s.len() >= each),
        )
        .await;
        // a misrouted or duplicated message would show here
        linger(Duration::from_millis(100)).await;
        let stats: Vec<BusStats> = join_all(
            self.buses
                .into_iter()
                .zip(self.tasks)
                .map(|(bus, task)| stopped(bus, task)),
        )
        .await;
        for (i, name) in self.names.iter().enumerate() {
            let stats = stats[i];
            assert_eq!(
                (self.seen[i].len(), stats.deliveries, stats.unhandled),
                (each, each as u64, 0),
                "round {round}, service {name}: its {each} messages once each and nothing else (handled, deliveries, deliveries no handler matched): {stats:?}"
            );
            assert_eq!(
                self.seen[i].distinct(),
                sent[i],
                "round {round}, service {name}: not its own messages"
            );
        }
    }
}
