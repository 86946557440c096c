//! Request/reply over RabbitMQ (direct reply-to), typed end to end: each error the caller
//! can get, two thousand requests in flight on one bus, a request whose caller gave up not
//! started, and the connection lost under waiting requests (through `support::proxy`:
//! the shared broker is never touched). Each test routes through an exchange of its own,
//! so the events' constant keys do not meet another test's.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::future::join_all;
use pubsub::amqp::{AmqpConfig, AmqpTransport};
use pubsub::prelude::*;
use pubsub::{Handler, HandlerErrorKind, HandlerSelection, RetryPolicy, transport::Transport};

use crate::support::proxy::Proxy;
use crate::support::{self, broker};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct UserProfile {
    user_id: String,
    name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "user", action = "profile_requested", reply = UserProfile)]
struct GetUserProfile {
    user_id: String,
}

/// The same key answered with another type: a caller on an older schema.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "user", action = "profile_requested", reply = u32)]
struct GetUserNumber {
    user_id: String,
}

/// A key nothing answers.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "billing", action = "invoice_requested", reply = String)]
struct GetInvoice {
    order_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "echo", action = "asked", reply = u64)]
struct Echo {
    n: u64,
    /// How long the responder takes, in milliseconds.
    pause_ms: u64,
}

/// `user-…` profiles; `unknown` is a permanent failure the caller gets back.
fn profiles() -> Handler {
    Handler::typed("profile", |req: GetUserProfile, _ctx: Context| async move {
        if req.user_id == "unknown" {
            return Err(HandlerError::permanent(format!("no user {}", req.user_id)));
        }
        Ok(UserProfile {
            name: format!("Ada {}", req.user_id),
            user_id: req.user_id,
        })
    })
}

/// Echoes `n` after `pause_ms`; counts the requests it started.
fn echo(started: &Arc<AtomicUsize>) -> Handler {
    let started = Arc::clone(started);
    Handler::typed("echo", move |req: Echo, _ctx: Context| {
        started.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_millis(req.pause_ms)).await;
            Ok::<_, HandlerError>(req.n)
        }
    })
}

/// A namespace (`interop-…`, removed by `scripts/test.sh`) and the broker's config with an
/// exchange of its own; `None`: skipped.
fn config(test: &str) -> Option<(String, AmqpConfig)> {
    let ns = support::namespace(&format!("interop-{test}"));
    let config = support::amqp_config()?
        .exchange(format!("{ns}.events"))
        .connection_attempts(3);
    Some((ns, config))
}

/// A running bus of `service` on `transport` with `handlers`.
async fn responder(transport: &AmqpTransport, service: &str, handlers: Vec<Handler>) -> Bus {
    let builder = Bus::builder()
        .service(service)
        .transport(transport.clone())
        .select_handlers(HandlerSelection::None)
        .prefetch(200)
        .retry(RetryPolicy::exponential(3, Duration::from_millis(10)))
        .shutdown_timeout(Duration::from_secs(5));
    let bus = handlers
        .into_iter()
        .fold(builder, |b, h| b.handler(h))
        .build()
        .await
        .expect("the responder builds");
    bus.spawn().await.expect("the responder runs");
    bus
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_gets_its_typed_reply_or_a_distinct_error() {
    let Some((ns, config)) = config("rpc") else {
        return;
    };
    let transport = AmqpTransport::new(config);
    let users = responder(&transport, &format!("{ns}-users"), vec![profiles()]).await;
    let caller = Bus::publisher("matching", transport.clone());

    let profile = caller
        .request(&GetUserProfile {
            user_id: "u-1".into(),
        })
        .timeout(Duration::from_secs(5))
        .await
        .expect("a profile");
    assert_eq!(profile.name, "Ada u-1");

    // the responder's own failure, with its kind and message
    let error = caller
        .request(&GetUserProfile {
            user_id: "unknown".into(),
        })
        .timeout(Duration::from_secs(5))
        .await
        .expect_err("no such user");
    match &error {
        RequestError::HandlerFailed {
            kind,
            message,
            responder,
            ..
        } => {
            assert_eq!(*kind, HandlerErrorKind::Permanent);
            assert!(message.contains("no user unknown"), "{message}");
            assert_eq!(responder.as_deref(), Some(format!("{ns}-users").as_str()));
        }
        other => panic!("expected HandlerFailed, got {other:?}"),
    }

    // nothing bound: said at once, not at the timeout
    let started = Instant::now();
    let error = caller
        .request(&GetInvoice {
            order_id: "A-1".into(),
        })
        .timeout(Duration::from_secs(20))
        .await
        .expect_err("nobody answers invoices");
    assert!(
        matches!(error, RequestError::NoResponder { .. }),
        "{error:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "no responder took {:?}",
        started.elapsed()
    );

    // a reply of another type than the caller expects
    let error = caller
        .request(&GetUserNumber {
            user_id: "u-2".into(),
        })
        .timeout(Duration::from_secs(5))
        .await
        .expect_err("a profile is not a number");
    assert!(
        matches!(error, RequestError::UndecodableReply { .. }),
        "{error:?}"
    );

    caller.close().await.expect("the caller closes");
    users.close().await.expect("the responder closes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_requests_in_flight_each_get_their_own_reply() {
    const REQUESTS: u64 = 2000;
    let Some((ns, config)) = config("many") else {
        return;
    };
    let transport = AmqpTransport::new(config);
    let started = Arc::new(AtomicUsize::new(0));
    let echoes = responder(&transport, &format!("{ns}-echo"), vec![echo(&started)]).await;
    let caller = Bus::publisher("caller", transport.clone());
    let began = Instant::now();
    let asks = (0..REQUESTS).map(|n| {
        let caller = caller.clone();
        async move {
            let reply = caller
                .request(&Echo { n, pause_ms: 0 })
                .timeout(Duration::from_secs(30))
                .await;
            (n, reply)
        }
    });
    for (n, reply) in join_all(asks).await {
        match reply {
            Ok(got) => assert_eq!(got, n, "request {n} got another request's reply"),
            Err(error) => panic!("request {n} failed: {error}"),
        }
    }
    eprintln!(
        "{REQUESTS} concurrent requests answered in {:?}",
        began.elapsed()
    );
    assert_eq!(started.load(Ordering::SeqCst), REQUESTS as usize);
    assert_eq!(transport.dropped_replies(), Some(0));
    caller.close().await.expect("the caller closes");
    echoes.close().await.expect("the responder closes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_responder_times_out_and_a_request_given_up_on_is_not_started() {
    let Some((ns, config)) = config("slow") else {
        return;
    };
    let transport = AmqpTransport::new(config);
    let started = Arc::new(AtomicUsize::new(0));
    // one at a time: the second request waits behind the first
    let echoes = Bus::builder()
        .service(format!("{ns}-echo"))
        .transport(transport.clone())
        .select_handlers(HandlerSelection::None)
        .prefetch(1)
        .shutdown_timeout(Duration::from_secs(5))
        .handler(echo(&started))
        .build()
        .await
        .expect("builds");
    echoes.spawn().await.expect("runs");
    let caller = Bus::publisher("caller", transport.clone());
    let slow = caller
        .request(&Echo {
            n: 1,
            pause_ms: 800,
        })
        .timeout(Duration::from_secs(10));
    let behind = async {
        let began = Instant::now();
        let answer = caller
            .request(&Echo { n: 2, pause_ms: 0 })
            .timeout(Duration::from_millis(300))
            .await;
        (answer, began.elapsed())
    };
    let (slow, (behind, waited)) = tokio::join!(slow, behind);
    assert_eq!(slow.expect("the slow request is answered"), 1);
    assert!(
        matches!(behind, Err(RequestError::TimedOut { .. })),
        "{behind:?}"
    );
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(2),
        "timed out after {waited:?}"
    );
    // a third request proves the one behind was passed over, not handled late
    assert_eq!(
        caller
            .request(&Echo { n: 3, pause_ms: 0 })
            .timeout(Duration::from_secs(5))
            .await
            .expect("the third is answered"),
        3
    );
    assert_eq!(
        started.load(Ordering::SeqCst),
        2,
        "the request whose caller gave up was started"
    );
    caller.close().await.expect("closes");
    echoes.close().await.expect("closes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_fails_waiting_requests_at_once_and_requests_work_again_after() {
    let Some((ns, direct)) = config("lost") else {
        return;
    };
    let (Some(address), Some(url)) = (broker::amqp_address(), broker::amqp_url()) else {
        return;
    };
    let proxy = Proxy::start(&address).await;
    let through = url.replacen(&address, &format!("127.0.0.1:{}", proxy.port()), 1);
    let proxied = AmqpConfig::from_url(&through)
        .expect("the proxied URL")
        .exchange(direct.exchange.clone());
    // the responder on a direct connection: only the caller's goes through the proxy
    let responding = AmqpTransport::new(direct);
    let started = Arc::new(AtomicUsize::new(0));
    let echoes = responder(&responding, &format!("{ns}-echo"), vec![echo(&started)]).await;
    let calling = AmqpTransport::new(proxied);
    let caller = Bus::publisher("caller", calling.clone());
    assert_eq!(
        caller
            .request(&Echo { n: 0, pause_ms: 0 })
            .timeout(Duration::from_secs(5))
            .await
            .expect("a first request"),
        0
    );
    // ten requests the responder holds for 5 s; the connection is cut under them
    let waiting = (1..=10).map(|n| {
        let caller = caller.clone();
        tokio::spawn(async move {
            caller
                .request(&Echo { n, pause_ms: 5_000 })
                .timeout(Duration::from_secs(60))
                .await
        })
    });
    let waiting: Vec<_> = waiting.collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while started.load(Ordering::SeqCst) < 11 {
        assert!(
            Instant::now() < deadline,
            "the responder did not take the ten requests"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cut = Instant::now();
    proxy.cut();
    for (n, request) in waiting.into_iter().enumerate() {
        // before the responder would answer: at once, not at the reply or the timeout
        let answer = tokio::time::timeout(Duration::from_secs(2), request)
            .await
            .unwrap_or_else(|_| panic!("request {n} still waits 2 s after the cut"))
            .expect("the request task");
        match answer {
            Err(RequestError::ConnectionLost { .. }) => {}
            other => panic!("request {n} after the cut: {other:?}"),
        }
    }
    eprintln!(
        "ten waiting requests failed {:?} after the cut",
        cut.elapsed()
    );
    // the reply consumer is set up again before the next request goes out
    let again = caller
        .request(&Echo { n: 42, pause_ms: 0 })
        .timeout(Duration::from_secs(20))
        .await;
    assert_eq!(again.expect("a request after the reconnect"), 42);
    caller.close().await.expect("closes");
    echoes.close().await.expect("closes");
}
