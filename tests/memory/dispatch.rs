//! Dispatcher behaviour through the public API: isolation, retries, dead letters, bad
//! input, runtime handlers, state and shutdown — on the in-memory transport.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use pubsub::prelude::*;
use pubsub::transport::Bytes;
use pubsub::{
    Bus, Error, Handler, HandlerSelection, MemoryTransport, RetryPolicy, registry::HandlerOrigin,
    testing::TestHarness,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(domain = "shop", action = "ordered")]
struct Ordered {
    id: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(domain = "shop", action = "packed")]
struct Packed {
    id: u32,
}

/// The line of `async fn pack`, which errors about the handler name.
const PACK_LINE: u32 = line!() + 2;
#[handler]
async fn pack(order: Ordered, ctx: Context) -> Result<(), HandlerError> {
    ctx.publish(&Packed { id: order.id }).await?;
    Ok(())
}

#[handler("shop.*")]
async fn audit(_event: RawEvent) -> Result<(), HandlerError> {
    Ok(())
}

#[handler(retries = 1)]
async fn panics(order: Ordered) -> Result<(), HandlerError> {
    if order.id > 0 {
        panic!("boom on order {}", order.id);
    }
    Ok(())
}

#[handler(timeout = "50ms", retries = 0)]
async fn too_slow(_order: Ordered) -> Result<(), HandlerError> {
    tokio::time::sleep(Duration::from_secs(30)).await;
    Ok(())
}

#[handler(retry = "quick")]
async fn flaky(_order: Ordered, ctx: Context) -> Result<(), HandlerError> {
    if ctx.attempt() < 3 {
        return Err(HandlerError::new(format!(
            "attempt {} failed",
            ctx.attempt()
        )));
    }
    Ok(())
}

#[handler(retries = 5)]
async fn rejects(_order: Ordered) -> Result<(), HandlerError> {
    Err(HandlerError::permanent("invalid order"))
}

fn only(names: &[&str]) -> pubsub::BusBuilder {
    Bus::builder().select_handlers(HandlerSelection::named(names.iter().copied()))
}

async fn harness(names: &[&str]) -> TestHarness {
    TestHarness::start(only(names).retry(RetryPolicy::exponential(3, Duration::from_millis(5))))
        .await
        .expect("harness starts")
}

#[tokio::test]
async fn handler_publishes_in_the_same_conversation() {
    let h = harness(&["pack", "audit"]).await;
    let id = h.publish(&Ordered { id: 1 }).await.unwrap();
    h.settled().await.unwrap();
    assert_eq!(h.consumed::<Ordered>("pack"), [Ordered { id: 1 }]);
    assert_eq!(h.published::<Packed>(), [Packed { id: 1 }]);
    // audit sees both the order and the follow-up
    assert_eq!(h.calls("audit").len(), 2);
    let packed = h
        .published_messages()
        .into_iter()
        .find(|m| m.metadata.key == "shop.packed")
        .unwrap();
    assert_eq!(packed.metadata.correlation_id, Some(id.to_string()));
    assert_eq!(packed.metadata.causation_id, Some(id.to_string()));
    assert_eq!(packed.metadata.app_id.as_deref(), Some("test"));
    assert!(h.dead_letters().is_empty());
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_panicking_handler_is_retried_then_dead_lettered_without_disturbing_others() {
    let h = harness(&["panics", "pack"]).await;
    h.publish(&Ordered { id: 7 }).await.unwrap();
    h.settled().await.unwrap();
    let failures = h.failures("panics");
    assert_eq!(failures.len(), 2, "1 attempt + 1 retry");
    assert!(
        failures[0]
            .error
            .as_deref()
            .unwrap()
            .contains("boom on order 7")
    );
    assert_eq!(
        h.calls("pack").len(),
        1,
        "the healthy handler is not retried"
    );
    let dead = h.single_dead_letter();
    assert_eq!(dead.failed_handlers, ["panics"]);
    assert!(dead.reason.contains("panicked"), "{}", dead.reason);
    assert_eq!(dead.message.metadata.headers["x-failed-handlers"], "panics");
    // the consumer loop lives on
    h.publish(&Ordered { id: 0 }).await.unwrap();
    h.settled().await.unwrap();
    assert_eq!(h.bus().stats().acked, 1);
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_slow_handler_times_out_and_the_others_finish() {
    let h = harness(&["too_slow", "audit"]).await;
    h.publish(&Ordered { id: 1 }).await.unwrap();
    h.settled().await.unwrap();
    assert_eq!(h.calls("audit").len(), 1);
    let dead = h.single_dead_letter();
    assert!(dead.reason.contains("timed out"), "{}", dead.reason);
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn retries_follow_the_named_policy_and_permanent_errors_skip_them() {
    let h = TestHarness::start(only(&["flaky", "rejects"]).define_retry_policy(
        "quick",
        RetryPolicy::exponential(4, Duration::from_millis(1)),
    ))
    .await
    .unwrap();
    h.publish(&Ordered { id: 3 }).await.unwrap();
    h.settled().await.unwrap();
    assert_eq!(h.calls("flaky").len(), 3, "two failures, then success");
    assert_eq!(h.calls("rejects").len(), 1, "permanent: no retries");
    let dead = h.single_dead_letter();
    assert_eq!(dead.failed_handlers, ["rejects"]);
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_unknown_retry_policy_is_a_build_error() {
    let err = only(&["flaky"]).service("x").build().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnknownRetryPolicy { ref handler, ref policy }
                if handler == "flaky" && policy == "quick"
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains(".define_retry_policy(\"quick\", RetryPolicy::exponential(..))"),
        "states the fix: {err}"
    );
}

async fn publish_raw(h: &TestHarness, message: Message) {
    h.bus().publish_message(message).await.unwrap();
    h.settled().await.unwrap();
}

#[tokio::test]
async fn bad_input_is_dead_lettered_with_a_reason_and_the_loop_goes_on() {
    let h = TestHarness::start(only(&["pack"]).max_message_size(1024))
        .await
        .unwrap();

    publish_raw(
        &h,
        Message::new("shop.ordered", Bytes::from_static(b"{not json")),
    )
    .await;
    let mut wrong_version = Message::new("shop.ordered", Bytes::from_static(b"{\"id\":1}"));
    wrong_version.metadata.version = 2;
    publish_raw(&h, wrong_version).await;
    let mut wrong_type = Message::new("shop.ordered", Bytes::from_static(b"{\"id\":1}"));
    wrong_type.metadata.content_type = "text/plain".into();
    publish_raw(&h, wrong_type).await;
    publish_raw(
        &h,
        Message::new("shop.ordered", Bytes::from(vec![b' '; 2048])),
    )
    .await;

    let reasons: Vec<String> = h.dead_letters().into_iter().map(|d| d.reason).collect();
    assert_eq!(reasons.len(), 4, "{reasons:#?}");
    assert!(
        reasons[0].contains("malformed application/json body for shop.ordered"),
        "{}",
        reasons[0]
    );
    assert!(
        reasons[1].contains("unknown version 2 of shop.ordered"),
        "{}",
        reasons[1]
    );
    assert!(
        reasons[2].contains("content type \"text/plain\""),
        "{}",
        reasons[2]
    );
    assert!(
        reasons[3].contains("exceeds the limit of 1024 bytes"),
        "{}",
        reasons[3]
    );
    // decode failures count as the handler's failed attempt; the oversize body is
    // rejected before any handler is looked up
    let calls = h.calls("pack");
    assert_eq!(calls.len(), 3, "{calls:#?}");
    assert!(calls.iter().all(|c| {
        c.error
            .as_deref()
            .is_some_and(|e| e.starts_with("cannot decode"))
    }));

    h.publish(&Ordered { id: 9 }).await.unwrap();
    h.settled().await.unwrap();
    assert_eq!(h.consumed::<Ordered>("pack"), [Ordered { id: 9 }]);
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_message_without_key_is_dead_lettered() {
    let broker = MemoryTransport::new();
    let h = TestHarness::start_on(only(&["audit"]), broker.clone())
        .await
        .unwrap();
    // A foreign publisher bound `#` to our queue; its keyless message reaches us.
    let _binder = Bus::builder()
        .service("test")
        .transport(broker.clone())
        .select_handlers(HandlerSelection::None)
        .handler(Handler::raw("binder", "#", |_e: RawEvent, _c| async {
            Ok::<_, HandlerError>(())
        }))
        .build()
        .await
        .unwrap();
    drop(_binder);
    publish_raw(&h, Message::new("", Bytes::from_static(b"{}"))).await;
    let dead = h.single_dead_letter();
    assert!(dead.reason.contains("no routing key"), "{}", dead.reason);
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn runtime_handlers_use_shared_state() {
    struct Greeting(&'static str);
    let seen = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&seen);
    let handler = Handler::typed("greeter", move |order: Ordered, ctx: Context| {
        let counter = Arc::clone(&counter);
        async move {
            let greeting = ctx.state::<Greeting>()?;
            assert_eq!(greeting.0, "hello");
            counter.fetch_add(order.id, Ordering::SeqCst);
            Ok::<_, HandlerError>(())
        }
    });
    let h = TestHarness::start(
        Bus::builder()
            .select_handlers(HandlerSelection::None)
            .state(Greeting("hello"))
            .handler(handler),
    )
    .await
    .unwrap();
    h.publish(&Ordered { id: 5 }).await.unwrap();
    h.publish(&Ordered { id: 6 }).await.unwrap();
    h.settled().await.unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), 11);
    assert_eq!(h.bus().handler_names(), ["greeter"]);
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn missing_state_fails_the_handler_permanently() {
    let handler = Handler::typed("needs_state", |_o: Ordered, ctx: Context| async move {
        ctx.state::<String>()?;
        Ok::<_, HandlerError>(())
    });
    let h = TestHarness::start(
        Bus::builder()
            .select_handlers(HandlerSelection::None)
            .handler(handler),
    )
    .await
    .unwrap();
    h.publish(&Ordered { id: 1 }).await.unwrap();
    h.settled().await.unwrap();
    assert_eq!(h.calls("needs_state").len(), 1);
    assert!(
        h.dead_letters()[0]
            .reason
            .contains("no state of type alloc::string::String")
    );
    h.shutdown().await.unwrap();
}

async fn noop(_event: RawEvent, _ctx: Context) -> Result<(), HandlerError> {
    Ok(())
}

#[tokio::test]
async fn duplicate_handler_names_and_bad_patterns_are_build_errors() {
    let first_line = line!() + 1;
    let first = Handler::raw("a", "x.*", noop);
    let second = Handler::raw("a", "y.*", noop);
    assert_eq!(
        first.origin(),
        HandlerOrigin::Runtime {
            file: file!(),
            line: first_line
        }
    );
    let dup = Bus::builder()
        .service("s")
        .select_handlers(HandlerSelection::None)
        .handler(first)
        .handler(second)
        .build()
        .await
        .unwrap_err();
    let Error::DuplicateHandler {
        ref name,
        first,
        second,
    } = dup
    else {
        panic!("expected DuplicateHandler, got {dup:?}");
    };
    assert_eq!(name, "a");
    assert_eq!((first.file(), first.line()), (file!(), first_line));
    assert_eq!((second.file(), second.line()), (file!(), first_line + 1));
    let text = dup.to_string();
    assert!(
        text.contains("two handlers are named `a`: the Handler built at"),
        "{text}"
    );
    assert!(
        text.contains(&format!("{}:{first_line} and ", file!())),
        "{text}"
    );
    assert!(text.contains("Handler::raw(\"other-name\", ..)"), "{text}");

    let bad = Bus::builder()
        .service("s")
        .select_handlers(HandlerSelection::None)
        .handler(Handler::raw("a", "x.y*", noop))
        .build()
        .await
        .unwrap_err();
    assert!(matches!(bad, Error::Pattern(_)), "{bad}");
    let nameless = Bus::builder().build().await.unwrap_err();
    assert!(matches!(nameless, Error::MissingService), "{nameless:?}");
    assert!(
        nameless.to_string().contains(".service(\"orders\")"),
        "states the fix: {nameless}"
    );
    let blank = Bus::builder().service("  ").build().await.unwrap_err();
    assert!(matches!(blank, Error::MissingService), "{blank:?}");
}

#[tokio::test]
async fn a_runtime_handler_named_like_a_handler_fn_names_both_places() {
    let fn_origin = pubsub::registry::registered_handlers()
        .into_iter()
        .find(|h| h.name == "pack")
        .map(|h| (h.module_path, h.file, h.line))
        .unwrap();
    assert_eq!(
        fn_origin,
        (module_path!().to_owned(), file!().to_owned(), PACK_LINE),
        "the line of `async fn pack`"
    );
    let runtime_line = line!() + 1;
    let again = Handler::typed("pack", |_o: Ordered, _c: Context| async {
        Ok::<_, HandlerError>(())
    });
    let err = only(&["pack"])
        .service("s")
        .handler(again)
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::DuplicateHandler {
                first: HandlerOrigin::Attribute { line: first, .. },
                second: HandlerOrigin::Runtime { line: second, .. },
                ..
            } if (first, second) == (PACK_LINE, runtime_line)
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "the #[handler] fn in {} ({}:{PACK_LINE}) and the Handler built at {}:{runtime_line}",
            module_path!(),
            file!(),
            file!()
        )),
        "{text}"
    );
    assert!(text.contains("#[handler(name = \"...\")]"), "{text}");
}

#[tokio::test]
async fn shutdown_lets_in_flight_deliveries_finish_and_settles_them() {
    let done = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&done);
    let slow = Handler::typed("slow", move |_o: Ordered, _c: Context| {
        let counter = Arc::clone(&counter);
        async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            counter.fetch_add(1, Ordering::SeqCst);
            Ok::<_, HandlerError>(())
        }
    });
    let broker = MemoryTransport::new();
    let h = TestHarness::start_on(
        Bus::builder()
            .select_handlers(HandlerSelection::None)
            .handler(slow),
        broker.clone(),
    )
    .await
    .unwrap();
    for id in 0..3 {
        h.publish(&Ordered { id }).await.unwrap();
    }
    h.wait_until("three deliveries started", |h| {
        h.calls("slow").len() == 3 || h.bus().stats().deliveries == 3
    })
    .await
    .unwrap();
    h.shutdown().await.unwrap();
    assert_eq!(
        done.load(Ordering::SeqCst),
        3,
        "in-flight handlers finished"
    );
    let depth = broker.queue_depth("test").unwrap();
    assert_eq!(
        (depth.ready, depth.unacked, depth.dead_lettered),
        (0, 0, 0),
        "{depth:?}"
    );
}

/// An event whose decoding panics (a buggy hand-written `Deserialize`).
#[derive(Debug, Clone, Serialize, Event)]
#[event(domain = "shop", action = "cursed")]
struct Cursed {
    id: u32,
}

impl<'de> Deserialize<'de> for Cursed {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        panic!("deserializer exploded")
    }
}

#[handler]
async fn cursed(_event: Cursed) -> Result<(), HandlerError> {
    Ok(())
}

#[tokio::test]
async fn a_panicking_decoder_dead_letters_the_message_and_the_loop_goes_on() {
    let h = harness(&["cursed", "pack"]).await;
    h.publish(&Cursed { id: 1 }).await.unwrap();
    h.settled().await.unwrap();
    let dead = h.single_dead_letter();
    assert!(
        dead.reason
            .contains("the decoder panicked: deserializer exploded"),
        "{}",
        dead.reason
    );
    assert_eq!(dead.failed_handlers, ["cursed"]);
    h.publish(&Ordered { id: 2 }).await.unwrap();
    h.settled().await.unwrap();
    assert_eq!(h.consumed::<Ordered>("pack"), [Ordered { id: 2 }]);
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn selecting_an_unknown_handler_name_is_a_build_error() {
    let err = only(&["pack", "pakc"])
        .service("s")
        .build()
        .await
        .unwrap_err();
    let Error::UnknownHandler {
        ref names,
        ref registered,
    } = err
    else {
        panic!("expected UnknownHandler, got {err:?}");
    };
    assert_eq!(names, &["pakc"]);
    assert!(
        registered.iter().any(|n| n == "pack"),
        "lists the registered names: {registered:?}"
    );
    let text = err.to_string();
    assert!(text.contains("no #[handler] is named [\"pakc\"]"), "{text}");
}

/// Handlers that only the tests selecting them by path run.
mod by_path {
    use super::Ordered;
    use pubsub::prelude::*;

    #[handler(name = "count-order")]
    pub(crate) async fn count(_order: Ordered) -> Result<(), HandlerError> {
        Ok(())
    }

    pub(crate) mod twins {
        use super::super::Ordered;
        use pubsub::prelude::*;

        // Same registered name as `by_path::twin`; reserved for another service, so that
        // no other test's selection sees two handlers named `twin`.
        #[handler(name = "twin", service = "twins")]
        pub(crate) async fn twin(_order: Ordered) -> Result<(), HandlerError> {
            Ok(())
        }
    }

    #[handler(service = "twins")]
    pub(crate) async fn twin(_order: Ordered) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[tokio::test]
async fn handlers_selected_by_path_run_and_no_others() {
    use by_path::count;
    let selection = pubsub::handlers![pack, count];
    let by_path = format!("{}::by_path", module_path!());
    assert!(
        matches!(&selection, HandlerSelection::Fns(fns)
        if fns.iter().map(|f| (f.module_path(), f.name())).eq([
            (module_path!(), "pack"),
            (by_path.as_str(), "count-order"),
        ])),
        "{selection:?}"
    );
    let h = TestHarness::start(Bus::builder().select_handlers(selection))
        .await
        .unwrap();
    h.publish(&Ordered { id: 1 }).await.unwrap();
    h.settled().await.unwrap();
    assert_eq!(h.consumed::<Ordered>("pack"), [Ordered { id: 1 }]);
    assert_eq!(h.consumed::<Ordered>("count-order"), [Ordered { id: 1 }]);
    assert_eq!(h.bus().handler_names(), ["pack", "count-order"]);
    let ran: std::collections::BTreeSet<String> =
        h.all_calls().into_iter().map(|c| c.handler).collect();
    assert_eq!(ran, ["count-order".to_owned(), "pack".to_owned()].into());
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_path_selects_one_fn_where_a_name_would_select_two() {
    let by_name = only(&["twin"]).service("twins").build().await.unwrap_err();
    assert!(
        matches!(by_name, Error::DuplicateHandler { ref name, .. } if name == "twin"),
        "{by_name:?}"
    );
    let h = TestHarness::start(
        Bus::builder()
            .service("twins")
            .select_handlers(pubsub::handlers![by_path::twins::twin]),
    )
    .await
    .unwrap();
    h.publish(&Ordered { id: 2 }).await.unwrap();
    h.settled().await.unwrap();
    let calls = h.calls("twin");
    assert_eq!(calls.len(), 1, "only one of the two `twin`s ran");
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn handler_names_must_be_plain() {
    let line = line!() + 1;
    let odd = Handler::raw("a,b", "x.*", noop);
    let err = Bus::builder()
        .service("s")
        .select_handlers(HandlerSelection::None)
        .handler(odd)
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidHandlerName { ref name, origin } if name == "a,b" && origin.line() == line
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&format!(
            "handler name \"a,b\" (the Handler built at {}:{line}) is not plain",
            file!()
        )),
        "{err}"
    );
}

#[tokio::test]
async fn a_bus_runs_once_at_a_time() {
    let bus = only(&["pack"]).service("once").build().await.unwrap();
    let task = bus.spawn().await.unwrap();
    let again = bus.run_until(std::future::ready(())).await.unwrap_err();
    assert!(again.to_string().contains("already running"), "{again}");
    bus.shutdown();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_bound_handlers_of_different_deliveries_run_in_parallel_by_default() {
    // Each handler blocks its thread until both are running: only possible when the two
    // deliveries run on two threads at once.
    let arrived = Arc::new(AtomicU32::new(0));
    let met = Arc::new(AtomicU32::new(0));
    let (a, m) = (Arc::clone(&arrived), Arc::clone(&met));
    let blocking = Handler::typed("blocking", move |_o: Ordered, _c: Context| {
        let (a, m) = (Arc::clone(&a), Arc::clone(&m));
        async move {
            a.fetch_add(1, Ordering::SeqCst);
            let deadline = std::time::Instant::now() + Duration::from_secs(3);
            while a.load(Ordering::SeqCst) < 2 && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            if a.load(Ordering::SeqCst) >= 2 {
                m.fetch_add(1, Ordering::SeqCst);
            }
            Ok::<_, HandlerError>(())
        }
    });
    let h = TestHarness::start(
        Bus::builder()
            .select_handlers(HandlerSelection::None)
            .handler(blocking)
            .prefetch(2),
    )
    .await
    .unwrap();
    h.publish(&Ordered { id: 1 }).await.unwrap();
    h.publish(&Ordered { id: 2 }).await.unwrap();
    h.settled().await.unwrap();
    assert_eq!(
        met.load(Ordering::SeqCst),
        2,
        "both handlers ran at the same time"
    );
    h.shutdown().await.unwrap();
}

/// Version 2 of `shop.ordered`, handled beside version 1 during a migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(domain = "shop", action = "ordered", version = 2)]
struct OrderedV2 {
    id: u32,
    channel: String,
}

#[handler]
async fn pack_v2(_order: OrderedV2) -> Result<(), HandlerError> {
    Ok(())
}

#[tokio::test]
async fn two_versions_of_an_event_are_each_handled_by_their_own_handler() {
    let h = harness(&["pack", "pack_v2"]).await;
    h.publish(&Ordered { id: 1 }).await.unwrap();
    let v2 = OrderedV2 {
        id: 2,
        channel: "web".into(),
    };
    h.publish(&v2).await.unwrap();
    h.settled().await.unwrap();
    assert_eq!(h.consumed::<Ordered>("pack"), [Ordered { id: 1 }]);
    assert_eq!(h.consumed::<OrderedV2>("pack_v2"), [v2]);
    assert_eq!(h.calls("pack").len(), 1, "v1 handler never sees v2");
    assert_eq!(h.calls("pack_v2").len(), 1, "v2 handler never sees v1");
    assert!(h.dead_letters().is_empty(), "{:#?}", h.dead_letters());
    // a version nobody knows is still a failure
    let mut v3 = Message::new("shop.ordered", Bytes::from_static(b"{\"id\":3}"));
    v3.metadata.version = 3;
    publish_raw(&h, v3).await;
    let dead = h.single_dead_letter();
    assert!(dead.reason.contains("unknown version 3"), "{}", dead.reason);
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_message_no_handler_matches_is_acked_and_counted() {
    let broker = MemoryTransport::new();
    // An older deployment of the service bound a wider pattern to the shared queue.
    let _older = Bus::builder()
        .service("svc")
        .transport(broker.clone())
        .select_handlers(HandlerSelection::None)
        .handler(Handler::raw("wide", "misc.#", |_e: RawEvent, _c| async {
            Ok::<_, HandlerError>(())
        }))
        .build()
        .await
        .unwrap();
    let narrow = Handler::raw("narrow", "misc.b", |_e: RawEvent, _c| async {
        Ok::<_, HandlerError>(())
    });
    let h = TestHarness::start_on(
        Bus::builder()
            .service("svc")
            .select_handlers(HandlerSelection::None)
            .handler(narrow),
        broker.clone(),
    )
    .await
    .unwrap();
    publish_raw(&h, Message::new("misc.a", Bytes::from_static(b"{}"))).await;
    let stats = h.bus().stats();
    assert_eq!(
        (stats.deliveries, stats.acked, stats.unhandled),
        (1, 1, 1),
        "{stats:?}"
    );
    assert!(h.calls("narrow").is_empty());
    assert_eq!(broker.queue_depth("svc").unwrap().ready, 0);
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_shut_down_bus_cannot_run_again_but_still_publishes() {
    let bus = only(&["pack"]).service("closing").build().await.unwrap();
    let task = bus.spawn().await.unwrap();
    bus.shutdown();
    task.await.unwrap().unwrap();
    assert!(matches!(bus.spawn().await, Err(Error::ShutDown)));
    assert!(matches!(
        bus.run_until(std::future::pending::<()>()).await,
        Err(Error::ShutDown)
    ));
    bus.publish(&Ordered { id: 1 }).await.unwrap();
}

#[tokio::test]
async fn reserved_envelope_headers_cannot_be_set_as_free_headers() {
    let bus = Bus::builder()
        .service("headers")
        .select_handlers(HandlerSelection::None)
        .build()
        .await
        .unwrap();
    let options = pubsub::PublishOptions::new().header("x-causation-id", "forged");
    let err = bus
        .publish_with(&Ordered { id: 1 }, options)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::ReservedHeader { ref header } if header == "x-causation-id"),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("set it with PublishOptions::causation_id(..)"),
        "states the fix: {err}"
    );
    let mut message = Message::new("shop.ordered", Bytes::from_static(b"{}"));
    message
        .metadata
        .headers
        .insert("X-Death-Reason".into(), "forged".into());
    let err = bus.publish_message(message).await.unwrap_err();
    assert!(
        matches!(err, Error::ReservedHeader { ref header } if header == "X-Death-Reason"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("the bus sets it"),
        "states the fix: {err}"
    );
}
