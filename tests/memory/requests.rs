//! Request/reply on the in-memory broker: a typed reply, each error the caller can get,
//! thousands in flight on one bus, deadlines, and the first of two replies winning.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pubsub::headers::HEADER_DEADLINE;
use pubsub::prelude::*;
use pubsub::transport::{Bytes, Transport};
use pubsub::{HandlerErrorKind, RetryPolicy, testing::TestHarness};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct UserProfile {
    user_id: String,
    name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "rpc_user", action = "profile_requested", reply = UserProfile)]
struct GetUserProfile {
    user_id: String,
}

/// The same key answered with another type: what a responder on an older schema sends.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "rpc_user", action = "profile_requested", reply = u32)]
struct GetUserNumber {
    user_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "rpc_echo", action = "asked", reply = u64)]
struct Echo {
    n: u64,
}

/// A request handler with `#[handler]`: it returns the reply type.
#[handler(service = "rpc-users")]
async fn profile(req: GetUserProfile, ctx: Context) -> Result<UserProfile, HandlerError> {
    if req.user_id == "unknown" {
        return Err(HandlerError::permanent(format!("no user {}", req.user_id)));
    }
    Ok(UserProfile {
        name: format!("Ada ({})", ctx.service()),
        user_id: req.user_id,
    })
}

/// A bus of `service` on `broker` running `handlers`, consuming.
async fn responder(broker: &MemoryTransport, service: &str, handlers: Vec<Handler>) -> Bus {
    let mut builder = Bus::builder()
        .service(service)
        .transport(broker.clone())
        .select_handlers(HandlerSelection::None)
        .retry(RetryPolicy::exponential(2, Duration::from_millis(5)));
    for handler in handlers {
        builder = builder.handler(handler);
    }
    let bus = builder.build().await.expect("the responder builds");
    bus.spawn().await.expect("the responder runs");
    bus
}

fn echo(name: &str) -> Handler {
    Handler::typed(name, |req: Echo, _ctx: Context| async move {
        Ok::<_, HandlerError>(req.n)
    })
}

/// An `Echo` handler that always fails (retryably) with `message`, and its attempt count.
fn always_failing(name: &str, message: &'static str) -> (Handler, Arc<AtomicUsize>) {
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&attempts);
    let handler = Handler::typed(name, move |_req: Echo, _ctx: Context| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move { Err::<u64, _>(HandlerError::new(message)) }
    });
    (handler, attempts)
}

#[tokio::test]
async fn a_request_gets_its_typed_reply_from_a_handler_fn() {
    let broker = MemoryTransport::new();
    let users = Bus::builder()
        .service("rpc-users")
        .transport(broker.clone())
        .select_handlers(pubsub::handlers![profile])
        .build()
        .await
        .expect("builds");
    users.spawn().await.expect("runs");
    let matching = Bus::publisher("matching", broker.clone());
    let reply: UserProfile = matching
        .request(&GetUserProfile {
            user_id: "u-1".into(),
        })
        .timeout(Duration::from_secs(2))
        .await
        .expect("a reply");
    assert_eq!(
        reply,
        UserProfile {
            user_id: "u-1".into(),
            name: "Ada (rpc-users)".into()
        }
    );
    users.close().await.expect("closes");
}

#[tokio::test]
async fn nothing_bound_is_no_responder_at_once() {
    let broker = MemoryTransport::new();
    let caller = Bus::publisher("caller", broker);
    let started = Instant::now();
    let error = caller
        .request(&Echo { n: 1 })
        .timeout(Duration::from_secs(30))
        .await
        .expect_err("nobody answers");
    assert!(
        matches!(&error, RequestError::NoResponder { key } if key == "rpc_echo.asked"),
        "{error:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "not at the timeout"
    );
    assert_eq!(
        error.to_string(),
        "no responder for rpc_echo.asked: nothing is bound to that key (is the service that \
         answers it running?)"
    );
}

#[tokio::test]
async fn a_slow_responder_times_out_with_the_wait() {
    let broker = MemoryTransport::new();
    let slow = Handler::typed("slow", |req: Echo, _ctx: Context| async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok::<_, HandlerError>(req.n)
    });
    let service = responder(&broker, "rpc-slow", vec![slow]).await;
    let caller = Bus::publisher("caller", broker.clone());
    let error = caller
        .request(&Echo { n: 1 })
        .timeout(Duration::from_millis(100))
        .await
        .expect_err("too slow");
    assert!(
        matches!(error, RequestError::TimedOut { waited, .. } if waited == Duration::from_millis(100)),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "no reply to rpc_echo.asked within 100ms: the request was taken, but no handler answered in time"
    );
    service.shutdown();
}

#[tokio::test]
async fn the_responders_failure_comes_back_and_is_not_dead_lettered() {
    let broker = MemoryTransport::new();
    let (failing, attempts) = always_failing("flaky_echo", "database unreachable");
    let users = Handler::typed("profile", |req: GetUserProfile, _ctx: Context| async move {
        Err::<UserProfile, _>(HandlerError::permanent(format!("no user {}", req.user_id)))
    });
    let service = responder(&broker, "rpc-failing", vec![failing, users]).await;
    let caller = Bus::publisher("caller", broker.clone());

    let error = caller
        .request(&GetUserProfile {
            user_id: "u-9".into(),
        })
        .await
        .expect_err("the handler fails");
    match &error {
        RequestError::HandlerFailed {
            kind,
            message,
            responder,
            ..
        } => {
            assert_eq!(*kind, HandlerErrorKind::Permanent);
            assert_eq!(message, "no user u-9");
            assert_eq!(responder.as_deref(), Some("rpc-failing"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        error.to_string(),
        "rpc-failing could not answer rpc_user.profile_requested (Permanent): no user u-9"
    );

    // a retryable failure is retried (2 retries, within the deadline), then answered
    let error = caller.request(&Echo { n: 1 }).await.expect_err("fails");
    assert!(
        matches!(&error, RequestError::HandlerFailed { kind: HandlerErrorKind::Failed, message, .. } if message == "database unreachable"),
        "{error:?}"
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    assert!(service.dead_letters().await.expect("reads").is_empty());
    assert_eq!(service.stats().dead_lettered, 0);
    service.shutdown();
}

#[tokio::test]
async fn a_retry_is_not_started_past_the_callers_deadline() {
    let broker = MemoryTransport::new();
    let (failing, attempts) = always_failing("fails", "busy");
    let service = Bus::builder()
        .service("rpc-patient")
        .transport(broker.clone())
        .select_handlers(HandlerSelection::None)
        .handler(failing)
        .retry(RetryPolicy::exponential(5, Duration::from_secs(1)))
        .build()
        .await
        .expect("builds");
    service.spawn().await.expect("runs");
    let caller = Bus::publisher("caller", broker.clone());
    let error = caller
        .request(&Echo { n: 1 })
        .timeout(Duration::from_millis(500))
        .await
        .expect_err("fails");
    // the first backoff (1 s) would end past the deadline: answered at once
    assert!(
        matches!(&error, RequestError::HandlerFailed { .. }),
        "{error:?}"
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
    service.shutdown();
}

#[tokio::test]
async fn a_reply_of_another_type_does_not_decode() {
    let broker = MemoryTransport::new();
    let numbers = Handler::typed("number", |_req: GetUserNumber, _ctx: Context| async move {
        Ok::<_, HandlerError>(7u32)
    });
    let service = responder(&broker, "rpc-numbers", vec![numbers]).await;
    let caller = Bus::publisher("caller", broker.clone());
    let error = caller
        .request(&GetUserProfile {
            user_id: "u-1".into(),
        })
        .await
        .expect_err("a number is no profile");
    assert!(
        matches!(&error, RequestError::UndecodableReply { reply_type, .. } if reply_type.ends_with("UserProfile")),
        "{error:?}"
    );
    assert!(
        pubsub::Report::new(&error)
            .to_string()
            .contains("invalid type: integer `7`"),
        "{}",
        pubsub::Report::new(&error)
    );
    service.shutdown();
}

#[tokio::test]
async fn every_pending_request_fails_at_once_when_the_connection_is_lost() {
    let broker = MemoryTransport::new();
    let never = Handler::typed("never", |_req: Echo, _ctx: Context| async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok::<_, HandlerError>(0)
    });
    let service = Bus::builder()
        .service("rpc-stuck")
        .transport(broker.clone())
        .select_handlers(HandlerSelection::None)
        .handler(never)
        .prefetch(200)
        .build()
        .await
        .expect("builds");
    service.spawn().await.expect("runs");
    let connection = broker.connection();
    let caller = Bus::publisher("caller", connection.clone());
    let pending = (0..100).map(|n| {
        let caller = caller.clone();
        tokio::spawn(async move {
            caller
                .request(&Echo { n })
                .timeout(Duration::from_secs(30))
                .await
        })
    });
    let pending: Vec<_> = pending.collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    connection.close().await.expect("closes");
    for request in pending {
        let error = request.await.expect("the task").expect_err("lost");
        assert!(
            matches!(error, RequestError::ConnectionLost { .. }),
            "{error:?}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "not at the timeout"
    );
    service.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_requests_in_flight_on_one_bus_are_each_answered() {
    let broker = MemoryTransport::new();
    let service = Bus::builder()
        .service("rpc-echo")
        .transport(broker.clone())
        .select_handlers(HandlerSelection::None)
        .handler(echo("echo"))
        .prefetch(500)
        .build()
        .await
        .expect("builds");
    service.spawn().await.expect("runs");
    let caller = Bus::publisher("caller", broker.clone());
    let requests: Vec<Echo> = (0..5_000).map(|n| Echo { n }).collect();
    let replies = futures::future::join_all(requests.iter().map(|req| {
        caller
            .request(req)
            .timeout(Duration::from_secs(60))
            .into_future()
    }))
    .await;
    for (n, reply) in replies.into_iter().enumerate() {
        assert_eq!(reply.expect("answered"), n as u64);
    }
    assert_eq!(broker.dropped_replies(), Some(0));
    service.shutdown();
}

#[tokio::test]
async fn a_request_whose_caller_gave_up_is_not_started() {
    let broker = MemoryTransport::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let handler = Handler::typed("echo", move |req: Echo, _ctx: Context| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, HandlerError>(req.n) }
    });
    let service = responder(&broker, "rpc-late", vec![handler]).await;
    let mut late = Message::new(Echo::KEY, Bytes::from_static(br#"{"n":1}"#));
    late.metadata.reply_to = Some("memory.reply-to.gone".into());
    late.metadata
        .headers
        .insert(HEADER_DEADLINE.into(), "1000".into()); // 1970
    broker.publish(late.into()).await.expect("published");
    let deadline = Instant::now() + Duration::from_secs(5);
    while service.stats().expired_requests == 0 {
        assert!(Instant::now() < deadline, "not seen: {:?}", service.stats());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0, "not started");
    assert_eq!(service.stats().acked, 1, "acked, not dead-lettered");
    service.shutdown();
}

#[tokio::test]
async fn of_two_responders_the_first_reply_wins_and_the_other_is_counted() {
    let broker = MemoryTransport::new();
    let first = responder(&broker, "rpc-first", vec![echo("echo")]).await;
    let second = responder(&broker, "rpc-second", vec![echo("echo")]).await;
    let caller = Bus::publisher("caller", broker.clone());
    assert_eq!(caller.request(&Echo { n: 7 }).await.expect("a reply"), 7);
    let deadline = Instant::now() + Duration::from_secs(5);
    while broker.dropped_replies() != Some(1) {
        assert!(Instant::now() < deadline, "{:?}", broker.dropped_replies());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(first.stats().acked + second.stats().acked, 2);
    first.shutdown();
    second.shutdown();
}

#[tokio::test]
async fn a_stream_backed_broker_says_it_has_no_reply_to() {
    let caller = Bus::publisher("caller", MemoryTransport::stream_backed());
    let error = caller
        .request(&Echo { n: 1 })
        .await
        .expect_err("unsupported");
    assert!(matches!(error, RequestError::NotSent { .. }), "{error:?}");
    assert!(
        pubsub::Report::new(&error)
            .to_string()
            .contains("streams have no reply-to"),
        "{}",
        pubsub::Report::new(&error)
    );
}

#[tokio::test]
async fn a_request_handler_unit_tests_with_the_harness() {
    let harness = TestHarness::start(
        Bus::builder()
            .service("rpc-users")
            .select_handlers(pubsub::handlers![profile]),
    )
    .await
    .expect("starts");
    let reply = harness
        .request(&GetUserProfile {
            user_id: "u-2".into(),
        })
        .await
        .expect("a reply");
    assert_eq!(reply.user_id, "u-2");
    let error = harness
        .request(&GetUserProfile {
            user_id: "unknown".into(),
        })
        .await
        .expect_err("no such user");
    assert!(
        matches!(error, RequestError::HandlerFailed { .. }),
        "{error:?}"
    );
    assert_eq!(harness.calls("profile").len(), 2);
    assert_eq!(harness.replies().len(), 2, "both answers are recorded");
    harness.shutdown().await.expect("stops");
}
