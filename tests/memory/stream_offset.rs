//! [`Context::stream_offset`]: a handler knows where in its stream the event it handles
//! was read (the offset its error-stream entry records), and that a queue has none.

use std::sync::{Arc, Mutex};

use pubsub::prelude::*;
use pubsub::{Bus, Handler, HandlerSelection, MemoryTransport, RetryPolicy, testing::TestHarness};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(domain = "tally", action = "counted")]
struct Counted {
    n: u32,
}

/// What the handler saw: each event's `n` with its `ctx.stream_offset()`.
type Seen = Arc<Mutex<Vec<(u32, Option<u64>)>>>;

/// A bus whose one handler records `(n, ctx.stream_offset())` and fails on `n == 2`.
fn recording(seen: &Seen) -> pubsub::BusBuilder {
    let seen = Arc::clone(seen);
    let handler = Handler::typed("tally", move |event: Counted, ctx: Context| {
        let seen = Arc::clone(&seen);
        async move {
            seen.lock()
                .expect("the record")
                .push((event.n, ctx.stream_offset()));
            if event.n == 2 {
                return Err(HandlerError::permanent("two is not counted"));
            }
            Ok::<_, HandlerError>(())
        }
    });
    Bus::builder()
        .service("tallies")
        .select_handlers(HandlerSelection::None)
        .handler(handler)
        .retry(RetryPolicy::none())
}

#[tokio::test]
async fn a_handler_sees_the_offset_its_event_was_read_at_and_the_error_stream_records_it() {
    let broker = MemoryTransport::stream_backed();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let h = TestHarness::start_on(recording(&seen), broker.clone())
        .await
        .expect("started");
    for n in 0..4 {
        h.publish(&Counted { n }).await.expect("published");
    }
    h.settled().await.expect("settled");
    let mut seen = seen.lock().expect("the record").clone();
    seen.sort_unstable();
    assert_eq!(
        seen,
        [(0, Some(0)), (1, Some(1)), (2, Some(2)), (3, Some(3))]
    );
    let entries = broker.error_stream("tallies").expect("its error stream");
    let offsets: Vec<Option<u64>> = entries.iter().map(|e| e.offset).collect();
    assert_eq!(offsets, [Some(2)], "the offset the handler saw");
    h.shutdown().await.expect("shut down");
}

#[tokio::test]
async fn a_queue_has_no_stream_offset() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let h = TestHarness::start_on(recording(&seen), MemoryTransport::new())
        .await
        .expect("started");
    h.publish(&Counted { n: 7 }).await.expect("published");
    h.settled().await.expect("settled");
    assert_eq!(*seen.lock().expect("the record"), [(7, None)]);
    h.shutdown().await.expect("shut down");
}
