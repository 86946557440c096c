//! Handler isolation: a handler that blocks its thread or spins is timed out from outside,
//! and the bus's other deliveries go on meanwhile; `Isolation::Inline` stays available.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use pubsub::prelude::*;
use pubsub::{Bus, Handler, HandlerErrorKind, HandlerSelection, Isolation, testing::TestHarness};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(domain = "iso", action = "stuck")]
struct Stuck {
    id: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(domain = "iso", action = "quick")]
struct Quick {
    id: u32,
}

/// A handler of `Quick` that records whether `stuck` was still stuck when it ran.
fn quick(stuck: Arc<AtomicBool>, ran_while_stuck: Arc<AtomicU32>) -> Handler {
    Handler::typed("quick", move |_q: Quick, _c: Context| {
        let (stuck, ran) = (Arc::clone(&stuck), Arc::clone(&ran_while_stuck));
        async move {
            if stuck.load(Ordering::SeqCst) {
                ran.fetch_add(1, Ordering::SeqCst);
            }
            Ok::<_, HandlerError>(())
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_blocks_its_thread_is_timed_out_and_stalls_nothing() {
    // The blocker holds its thread until the test releases it, so everything asserted
    // below happened while it was blocked, whatever the scheduling.
    let (release, released) = mpsc::channel::<()>();
    let released = Arc::new(Mutex::new(released));
    let stuck = Arc::new(AtomicBool::new(false));
    let (s, r) = (Arc::clone(&stuck), Arc::clone(&released));
    let blocker = Handler::typed("blocker", move |_e: Stuck, _c: Context| {
        let (stuck, released) = (Arc::clone(&s), Arc::clone(&r));
        async move {
            stuck.store(true, Ordering::SeqCst);
            let guard = released.lock().unwrap_or_else(|p| p.into_inner());
            let _ = guard.recv_timeout(Duration::from_secs(20)); // blocks the thread
            stuck.store(false, Ordering::SeqCst);
            Ok::<_, HandlerError>(())
        }
    })
    .timeout(Duration::from_millis(50))
    .retries(0);
    let ran_while_stuck = Arc::new(AtomicU32::new(0));
    let h = TestHarness::start(
        Bus::builder()
            .select_handlers(HandlerSelection::None)
            .handler(blocker)
            .handler(quick(Arc::clone(&stuck), Arc::clone(&ran_while_stuck))),
    )
    .await
    .unwrap();
    h.publish(&Stuck { id: 1 }).await.unwrap();
    h.wait_until("the blocker blocks its thread", |_| {
        stuck.load(Ordering::SeqCst)
    })
    .await
    .unwrap();
    h.publish(&Quick { id: 2 }).await.unwrap();
    h.wait_until(
        "the stuck delivery is dead-lettered and the quick one handled",
        |h| h.dead_letters().len() == 1 && h.calls("quick").len() == 1,
    )
    .await
    .unwrap();
    assert!(stuck.load(Ordering::SeqCst), "the blocker is still blocked");
    assert_eq!(
        ran_while_stuck.load(Ordering::SeqCst),
        1,
        "an unrelated delivery was handled while the blocker held its thread"
    );
    let failure = &h.failures("blocker")[0];
    assert_eq!(
        failure.kind,
        Some(HandlerErrorKind::TimedOut),
        "{failure:?}"
    );
    assert!(h.single_dead_letter().reason.contains("timed out"));
    release.send(()).unwrap();
    h.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_handler_is_timed_out() {
    let spinning = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let (s, st) = (Arc::clone(&spinning), Arc::clone(&stop));
    let spinner = Handler::typed("spinner", move |_e: Stuck, _c: Context| {
        let (spinning, stop) = (Arc::clone(&s), Arc::clone(&st));
        async move {
            spinning.store(true, Ordering::SeqCst);
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while !stop.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
                std::hint::spin_loop(); // never yields to the runtime
            }
            spinning.store(false, Ordering::SeqCst);
            Ok::<_, HandlerError>(())
        }
    })
    .timeout(Duration::from_millis(50))
    .retries(0);
    let h = TestHarness::start(
        Bus::builder()
            .select_handlers(HandlerSelection::None)
            .handler(spinner),
    )
    .await
    .unwrap();
    h.publish(&Stuck { id: 1 }).await.unwrap();
    h.wait_until("the spinner is dead-lettered", |h| {
        h.dead_letters().len() == 1
    })
    .await
    .unwrap();
    assert!(
        spinning.load(Ordering::SeqCst),
        "timed out while it still spun"
    );
    assert_eq!(
        h.failures("spinner")[0].kind,
        Some(HandlerErrorKind::TimedOut)
    );
    stop.store(true, Ordering::SeqCst);
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn inline_isolation_still_catches_panics_and_times_out_handlers_that_yield() {
    let boom = Handler::typed("boom", |e: Stuck, _c: Context| async move {
        if e.id == 1 {
            panic!("boom");
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok::<_, HandlerError>(())
    })
    .timeout(Duration::from_millis(50))
    .retries(0);
    let h = TestHarness::start(
        Bus::builder()
            .select_handlers(HandlerSelection::None)
            .isolation(Isolation::Inline)
            .handler(boom),
    )
    .await
    .unwrap();
    h.publish(&Stuck { id: 1 }).await.unwrap();
    h.publish(&Stuck { id: 2 }).await.unwrap();
    h.settled().await.unwrap();
    let kinds: Vec<_> = h.failures("boom").iter().map(|c| c.kind).collect();
    assert!(
        kinds.contains(&Some(HandlerErrorKind::Panicked)),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&Some(HandlerErrorKind::TimedOut)),
        "{kinds:?}"
    );
    assert_eq!(h.bus().stats().dead_lettered, 2);
    h.shutdown().await.unwrap();
}
