//! Per-entity subscriptions as a server of WebSockets opens them: an event keyed by desk,
//! `desk.{desk}.edited`, a hundred subscriptions of one desk each on one bus, and what
//! each must get. Shared by the memory, AMQP and Streams binaries (`#[path]`); it has no
//! handler, so it adds nothing to what their buses read.

use std::time::Duration;

use futures::StreamExt;
use futures::future::join_all;
use pubsub::prelude::*;
use pubsub::stream::{EventStream, StreamedEvent};

/// An edit of one desk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(key = "desk.{desk}.edited")]
pub(crate) struct Edited {
    pub(crate) desk: u64,
    pub(crate) n: u64,
}

/// How many subscriptions are open at once, one desk each.
pub(crate) const DESKS: u64 = 100;

/// How long one stream may take to yield its next edit.
const PATIENCE: Duration = Duration::from_secs(30);

/// The next edit `stream` yields, at most [`PATIENCE`] away; panics naming `what` if none
/// comes, if the stream ends, or if it does not decode.
pub(crate) async fn next_edit(
    stream: &mut EventStream<Edited>,
    what: &str,
) -> StreamedEvent<Edited> {
    tokio::time::timeout(PATIENCE, stream.next())
        .await
        .unwrap_or_else(|_| panic!("{what} did not come"))
        .expect("the stream goes on")
        .expect("an edit that decodes")
}

/// Opens a subscription to each of the desks `base..base + DESKS` at once, then publishes
/// `per` edits to each of them, interleaved, and as many to the desks after them that
/// nobody watches. Asserts that each stream yields exactly its desk's edits, in order, and
/// nothing more. Returns the streams, still open, so that the caller can check what
/// dropping them removes.
pub(crate) async fn each_desk_gets_its_own(
    bus: &Bus,
    base: u64,
    per: u64,
) -> Vec<EventStream<Edited>> {
    let opening = (base..base + DESKS).map(|desk| async move {
        bus.subscribe::<Edited>()
            .param(Edited::DESK, desk)
            .await
            .unwrap_or_else(|e| panic!("subscribing to desk {desk}: {e}"))
    });
    let mut streams = join_all(opening).await;
    for n in 0..per {
        // the watched desks, and as many unwatched ones, interleaved
        let edits = (base..base + 2 * DESKS)
            .map(|desk| async move { bus.publish(&Edited { desk, n }).await });
        for published in join_all(edits).await {
            published.expect("publishing an edit");
        }
    }
    let reading = streams
        .iter_mut()
        .zip(base..)
        .map(|(stream, desk)| async move {
            for n in 0..per {
                let edit = next_edit(stream, &format!("desk {desk}: edit {n}")).await;
                assert_eq!(edit.event, Edited { desk, n }, "desk {desk}'s stream");
                assert_eq!(edit.metadata.key, format!("desk.{desk}.edited"));
            }
        });
    join_all(reading).await;
    // nothing more came: a marker edit of each desk is the next thing each stream yields
    let markers = (base..base + DESKS)
        .map(|desk| async move { bus.publish(&Edited { desk, n: u64::MAX }).await });
    for published in join_all(markers).await {
        published.expect("publishing a marker");
    }
    let checking = streams
        .iter_mut()
        .zip(base..)
        .map(|(stream, desk)| async move {
            let edit = next_edit(stream, &format!("desk {desk}: the marker")).await;
            assert_eq!(
                edit.event,
                Edited { desk, n: u64::MAX },
                "desk {desk} got more than its own"
            );
        });
    join_all(checking).await;
    streams
}

/// Asks which desk a request was routed to: a request with a key parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(key = "desk.{desk}.asked", reply = String)]
pub(crate) struct Asked {
    pub(crate) desk: u64,
}

/// A bus of `service` on `transport` whose handler of [`Edited`] always fails (transiently,
/// so it is retried twice), recording the key and parameter each attempt saw, and whose
/// responder answers [`Asked`] with the key it was routed by. Publishes an edit of desk
/// 5 and asserts that every attempt saw `desk.5.edited`, and that the dead letter (the
/// dead-letter queue, or on a stream transport the error stream) keeps that key with the
/// template as its type. Where the transport has request/reply, asks desk 9 and asserts
/// the responder saw `desk.9.asked`.
pub(crate) async fn the_instance_key_survives_retries_dead_letters_and_requests(
    transport: impl pubsub::transport::Transport + Clone,
    service: &str,
) {
    use std::sync::{Arc, Mutex};

    // (key, key_param("desk")) of each attempt
    type Seen = Mutex<Vec<(String, Option<String>)>>;
    let seen: Arc<Seen> = Arc::default();
    let recorded = Arc::clone(&seen);
    let flaky = pubsub::Handler::typed("flaky", move |_edit: Edited, ctx: Context| {
        let key = (
            ctx.key().to_owned(),
            ctx.key_param("desk").map(str::to_owned),
        );
        recorded.lock().unwrap().push(key);
        async { Err::<(), _>(HandlerError::new("the desk is busy")) }
    });
    let answering = pubsub::Handler::typed("answering", |_ask: Asked, ctx: Context| {
        let key = ctx.key().to_owned();
        async move { Ok::<_, HandlerError>(key) }
    });
    let bus = Bus::builder()
        .service(service)
        .transport(transport.clone())
        .select_handlers(pubsub::HandlerSelection::None)
        .handler(flaky)
        .handler(answering)
        .retry(pubsub::RetryPolicy::exponential(
            2,
            Duration::from_millis(10),
        ))
        .build()
        .await
        .expect("the bus builds");
    let task = bus.spawn().await.expect("the bus runs");
    bus.publish(&Edited { desk: 5, n: 1 }).await.unwrap();

    let deadline = tokio::time::Instant::now() + PATIENCE;
    let dead = loop {
        let dead = transport
            .dead_letters(service)
            .await
            .expect("reading the dead letters");
        if !dead.is_empty() {
            break dead;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no dead letter after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(dead.len(), 1, "{dead:?}");
    let metadata = &dead[0].message.metadata;
    assert_eq!(metadata.key, "desk.5.edited", "the dead letter's key");
    assert_eq!(
        metadata.event_type.as_deref(),
        Some(Edited::KEY),
        "its type"
    );
    let attempts = seen.lock().unwrap().clone();
    assert_eq!(
        attempts.len(),
        3,
        "one attempt and two retries: {attempts:?}"
    );
    for (key, param) in attempts {
        assert_eq!(
            (key.as_str(), param.as_deref()),
            ("desk.5.edited", Some("5"))
        );
    }

    if transport.capabilities().request_reply {
        let answer = bus
            .request(&Asked { desk: 9 })
            .timeout(PATIENCE)
            .await
            .expect("desk 9 answers");
        assert_eq!(answer, "desk.9.asked");
    }
    bus.close().await.unwrap();
    task.await.unwrap().unwrap();
}

/// A subscription nobody reads holds the first `prefetch` (100) edits delivered to it and
/// at most `LIVE_QUEUE_MAX_LENGTH` more, dropping the oldest: after 10 110 edits, its
/// reader gets edits 0 to 99, then 110 on (a queue transport).
#[allow(
    dead_code,
    reason = "queue transports only: the Streams binary has no use for it"
)]
pub(crate) async fn an_unread_subscription_keeps_the_newest(bus: &Bus) {
    use pubsub::transport::LIVE_QUEUE_MAX_LENGTH;
    let total = LIVE_QUEUE_MAX_LENGTH as u64 + 110;
    let mut desk_1 = bus
        .subscribe::<Edited>()
        .param(Edited::DESK, 1)
        .await
        .unwrap();
    // handed over in order, confirmed together
    let mut confirmations = Vec::new();
    for n in 0..total {
        let pending = bus.begin_publish(&Edited { desk: 1, n }).await;
        confirmations.push(pending.expect("handing an edit over"));
    }
    for confirmed in join_all(confirmations).await {
        confirmed.expect("publishing an edit");
    }
    let expected = (0..100).chain(110..total);
    for (i, n) in expected.enumerate() {
        let edit = next_edit(&mut desk_1, &format!("edit {n}")).await;
        assert_eq!(
            edit.event.n, n,
            "item {i}: the 10 oldest ready edits were dropped"
        );
    }
}
