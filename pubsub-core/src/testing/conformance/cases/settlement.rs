//! Settlement: a delivery is acked only when every handler succeeded, a failure
//! dead-letters it once with its envelope, the reason and the failed handlers, and what
//! was settled never comes back.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use crate::codec::Json;
use crate::event::Event;
use crate::handler::Handler;
use crate::handler_error::HandlerError;
use crate::handler_input::RawEvent;
use crate::headers::{HEADER_DEATH_REASON, HEADER_FAILED_HANDLERS};
use crate::metadata::Message;
use crate::testing::conformance::Broker;
use crate::testing::conformance::support::{
    Seen, bus, bus_on, eventually, linger, message, namespace, publish_all, start, stop, stopped,
    straight_to,
};
use crate::transport::Outgoing;

/// The typed event of [`dead_letter_keeps_the_envelope`]. Its key is not namespaced (an
/// event type's key is a constant), so the case sends it straight to its service's queue,
/// never through the topic, where other runs' queues bound to it would get it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Probe {
    n: u64,
}

impl Event for Probe {
    const DOMAIN: &'static str = "conformance";
    const ACTION: &'static str = "probe";
    const KEY: &'static str = "conformance.probe";
    const VERSION: u32 = 2;
    type Codec = Json;
    type Reply = ();
}

/// Acked only if every handler succeeded: one failing handler dead-letters the message
/// once — with the reason and the failed handler's name — the others run once, and
/// nothing is redelivered in a loop.
pub(crate) async fn ack_all_or_nack(broker: &dyn Broker) {
    let ns = namespace();
    let key = format!("{ns}.payment.failed");
    let ok = Seen::default();
    let failing_calls = Arc::new(AtomicU64::new(0));
    let calls = Arc::clone(&failing_calls);
    let failing = Handler::raw("always_fails", key.clone(), move |_e: RawEvent, _ctx| {
        calls.fetch_add(1, Ordering::SeqCst);
        async { Err::<(), _>(HandlerError::new("card declined")) }
    })
    .retries(0);
    let bus = bus(broker, &ns, vec![ok.handler("succeeds", &key), failing], 10).await;
    let task = start(&bus).await;
    let ids = publish_all(&bus, &key, 3).await;
    eventually("three messages dead-lettered", &[&bus], || {
        bus.stats().dead_lettered == 3
    })
    .await;
    // a redelivery loop would show here
    linger(Duration::from_millis(300)).await;
    let stats = bus.stats();
    stop(bus, task).await;
    assert_eq!(
        ok.len(),
        3,
        "the healthy handler must run exactly once per message"
    );
    assert_eq!(
        failing_calls.load(Ordering::SeqCst),
        3,
        "retries(0) means one attempt per message"
    );
    assert_eq!(
        (stats.deliveries, stats.acked, stats.dead_lettered),
        (3, 0, 3),
        "{stats:?}"
    );
    let dead = broker.dead_letters(&ns).await;
    assert_eq!(
        dead.len(),
        3,
        "every failed message is in the dead-letter queue"
    );
    let dead_ids: BTreeSet<String> = dead.iter().map(|m| m.metadata.id.to_string()).collect();
    assert_eq!(dead_ids, ids, "dead letters keep their event ids");
    for message in &dead {
        let headers = &message.metadata.headers;
        assert_eq!(
            headers.get(HEADER_FAILED_HANDLERS).map(String::as_str),
            Some("always_fails")
        );
        let reason = headers
            .get(HEADER_DEATH_REASON)
            .map(String::as_str)
            .unwrap_or_default();
        assert!(
            reason.contains("card declined"),
            "dead-letter reason {reason:?}"
        );
    }
}

/// What was acked or dead-lettered never comes back: a new bus of the same service, on a
/// new connection, gets none of it (checked with a marker published after them, which it
/// gets, and a window after).
pub(crate) async fn settled_stays_settled(broker: &dyn Broker) {
    const GOOD: usize = 20;
    const BAD: usize = 5;
    let ns = namespace();
    let (good_key, bad_key) = (format!("{ns}.invoice.sent"), format!("{ns}.invoice.broken"));
    let pattern = format!("{ns}.invoice.*");
    let first_seen = Seen::default();
    let judge = {
        let seen = first_seen.clone();
        Handler::raw("send", pattern.clone(), move |event: RawEvent, _ctx| {
            seen.push(event.metadata().id.to_string());
            let broken = event.key().ends_with(".broken");
            async move {
                if broken {
                    Err(HandlerError::permanent("broken invoice"))
                } else {
                    Ok(())
                }
            }
        })
    };
    let first_connection = broker.connect().await;
    let first = bus_on(Arc::clone(&first_connection), &ns, vec![judge], 10).await;
    let task = start(&first).await;
    let mut settled = publish_all(&first, &good_key, GOOD).await;
    settled.extend(publish_all(&first, &bad_key, BAD).await);
    eventually("every message acked or dead-lettered", &[&first], || {
        let stats = first.stats();
        stats.acked + stats.dead_lettered >= (GOOD + BAD) as u64
    })
    .await;
    let stats = first.stats();
    stop(first, task).await;
    assert_eq!(
        (stats.acked, stats.dead_lettered, stats.in_flight),
        (GOOD as u64, BAD as u64, 0),
        "{stats:?}"
    );
    if let Err(error) = first_connection.close().await {
        panic!("closing the first connection failed: {error}");
    }
    drop(first_connection);

    let second_seen = Seen::default();
    let second = bus(broker, &ns, vec![second_seen.handler("send", &pattern)], 1).await;
    let task = start(&second).await;
    let marker = message(&good_key, GOOD + BAD);
    let marker_id = marker.metadata.id.to_string();
    if let Err(error) = second.publish_message(marker).await {
        panic!("publishing the marker failed: {error}");
    }
    eventually("the marker is handled", &[&second], || {
        second_seen.distinct().contains(&marker_id)
    })
    .await;
    // a settled message coming back late would show here
    linger(Duration::from_millis(200)).await;
    let stats = stopped(second, task).await;
    let came_back: Vec<String> = second_seen
        .ids()
        .into_iter()
        .filter(|id| settled.contains(id))
        .collect();
    assert!(
        came_back.is_empty(),
        "{} settled message(s) delivered again to a new bus of the service: {came_back:?}",
        came_back.len()
    );
    assert_eq!(
        (second_seen.ids(), stats.deliveries),
        (vec![marker_id], 1),
        "the new bus gets the marker and nothing else, {stats:?}"
    );
    let dead = broker.dead_letters(&ns).await;
    assert_eq!(dead.len(), BAD, "each broken invoice dead-lettered once");
}

/// A dead letter keeps the envelope — id, body, key, version, content type, correlation
/// and causation ids, free headers — and adds the reason and the failed handlers. Raw bad
/// input published through [`Transport::publish`](crate::transport::Transport::publish) straight to
/// the service's queue (`Destination::Queue(service)`; on streams, to the stream of the
/// typed event's domain) — a malformed body for a typed handler, an unknown version, no
/// key — is dead-lettered too, and the consumer goes on.
pub(crate) async fn dead_letter_keeps_the_envelope(broker: &dyn Broker) {
    let ns = namespace();
    let refused_key = format!("{ns}.order.refused");
    let refuse = Handler::raw("refuse", refused_key.clone(), |_e: RawEvent, _ctx| async {
        Err::<(), _>(HandlerError::permanent("refused: out of stock"))
    });
    let probes: Arc<Mutex<Vec<u64>>> = Arc::default();
    let sink = Arc::clone(&probes);
    let probe_handler = Handler::typed("probe", move |probe: Probe, _ctx| {
        sink.lock().unwrap_or_else(|p| p.into_inner()).push(probe.n);
        async { Ok::<_, HandlerError>(()) }
    });
    let bus = bus(broker, &ns, vec![refuse, probe_handler], 10).await;
    let task = start(&bus).await;

    // a full envelope, refused by its handler
    let mut refused = Message::new(
        refused_key.clone(),
        Bytes::from_static(br#"{"sku":"KB-01","qty":2}"#),
    );
    let m = &mut refused.metadata;
    m.version = 3;
    m.content_type = "application/vnd.conformance+json".into();
    m.correlation_id = Some("conversation-7".into());
    m.causation_id = Some("cause-7".into());
    m.headers.insert("tenant".into(), "acme".into());
    m.headers.insert("trace".into(), "00-4bf92f35-01".into());
    if let Err(error) = bus.publish_message(refused.clone()).await {
        panic!("publish failed: {error}");
    }

    // raw bad input, then a good probe, straight to the service's queue (or the stream)
    let raw = broker.connect().await;
    let destination = straight_to(&*raw, &ns, Probe::KEY);
    let probe_message = |body: &'static [u8], version: u32| {
        let mut message = Message::new(Probe::KEY, Bytes::from_static(body));
        message.metadata.version = version;
        message
    };
    let malformed = probe_message(br#"{"n": "#, Probe::VERSION);
    let unknown_version = probe_message(br#"{"n": 1}"#, Probe::VERSION + 97);
    let mut no_key = probe_message(br#"{"n": 2}"#, Probe::VERSION);
    no_key.metadata.key = String::new();
    let good = probe_message(br#"{"n": 7}"#, Probe::VERSION);
    for message in [&malformed, &unknown_version, &no_key, &good] {
        let outgoing = Outgoing::new(message.clone(), destination.clone());
        if let Err(error) = raw.publish(outgoing).await {
            panic!(
                "publishing raw input {:?} to {destination:?} failed: {error}",
                message.metadata.key
            );
        }
    }
    eventually("four dead letters and the good probe", &[&bus], || {
        let stats = bus.stats();
        stats.dead_lettered + stats.acked >= 5
    })
    .await;
    let stats = bus.stats();
    stop(bus, task).await;
    let _ = raw.close().await;
    assert_eq!(
        (stats.deliveries, stats.dead_lettered, stats.acked),
        (5, 4, 1),
        "{stats:?}"
    );
    assert_eq!(
        *probes.lock().unwrap_or_else(|p| p.into_inner()),
        vec![7],
        "after the bad input, the consumer goes on and the typed handler gets the good probe only"
    );

    let dead = broker.dead_letters(&ns).await;
    assert_eq!(dead.len(), 4, "dead letters: {dead:#?}");
    let find = |sent: &Message| -> Message {
        match dead.iter().find(|d| d.metadata.id == sent.metadata.id) {
            Some(found) => found.clone(),
            None => panic!(
                "message {} ({:?}) is not in the dead-letter queue",
                sent.metadata.id, sent.metadata.key
            ),
        }
    };
    let reason = |m: &Message| m.metadata.headers.get(HEADER_DEATH_REASON).cloned();
    let failed = |m: &Message| m.metadata.headers.get(HEADER_FAILED_HANDLERS).cloned();

    let d = find(&refused);
    let (s, r) = (&refused.metadata, &d.metadata);
    assert_eq!(d.body, refused.body, "dead letter lost its body");
    assert_eq!(r.key, s.key, "dead letter lost its key");
    assert_eq!(r.version, s.version, "dead letter lost its version");
    assert_eq!(
        r.content_type, s.content_type,
        "dead letter lost its content type"
    );
    assert_eq!(
        r.correlation_id, s.correlation_id,
        "dead letter lost its correlation id"
    );
    assert_eq!(
        r.causation_id, s.causation_id,
        "dead letter lost its causation id"
    );
    for (name, value) in &s.headers {
        assert_eq!(
            r.headers.get(name),
            Some(value),
            "dead letter lost its header {name}"
        );
    }
    assert_eq!(failed(&d).as_deref(), Some("refuse"), "failed handlers");
    let why = reason(&d).unwrap_or_default();
    assert!(why.contains("out of stock"), "dead-letter reason {why:?}");

    for (sent, what, mentions, handlers) in [
        (&malformed, "a malformed body", "malformed", "probe"),
        (&unknown_version, "an unknown version", "99", "probe"),
        (&no_key, "no key", "key", ""),
    ] {
        let d = find(sent);
        assert_eq!(d.body, sent.body, "{what}: dead letter lost its body");
        // no handler failed on input that reached none: the header may be empty or absent
        assert_eq!(
            failed(&d).unwrap_or_default(),
            handlers,
            "{what}: failed handlers"
        );
        let why = reason(&d).unwrap_or_default();
        assert!(
            why.contains(mentions),
            "{what}: dead-letter reason {why:?} should mention {mentions:?}"
        );
    }
}
