//! Per-entity subscriptions as a server of WebSockets opens them: an event keyed by desk,
//! `desk.{desk}.edited`, a hundred subscriptions of one desk each on one bus, and what
//! each must get. Shared by the memory, AMQP and Streams binaries (`#[path]`); it has no
//! handler, so it adds nothing to what their buses read.

use std::time::Duration;

use futures::StreamExt;
use futures::future::join_all;
use pubsub::prelude::*;
use pubsub::stream::EventStream;

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
                let next = tokio::time::timeout(PATIENCE, stream.next()).await;
                let edit = next
                    .unwrap_or_else(|_| panic!("desk {desk}: edit {n} did not come"))
                    .expect("the stream goes on")
                    .expect("an edit that decodes");
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
            let next = tokio::time::timeout(PATIENCE, stream.next()).await;
            let edit = next
                .unwrap_or_else(|_| panic!("desk {desk}: the marker did not come"))
                .expect("the stream goes on")
                .expect("an edit that decodes");
            assert_eq!(
                edit.event,
                Edited { desk, n: u64::MAX },
                "desk {desk} got more than its own"
            );
        });
    join_all(checking).await;
    streams
}
