//! The connection: after `close` every operation fails at once and nothing confirmed
//! is lost; request/reply gets each request its own answer, or times out at its bound.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;

use tokio::time::Instant;

use crate::handler::Handler;
use crate::handler_error::HandlerError;
use crate::handler_input::RawEvent;
use crate::metadata::Message;
use crate::testing::conformance::Broker;
use crate::testing::conformance::support::{
    PATIENCE, at_once, bus_on, message, namespace, raw_subscription, start, stopped, within,
};
use crate::transport::TransportError;
use crate::transport::{Destination, Outgoing, Settlement, Subscription};

/// After [`Transport::close`](crate::transport::Transport::close): publish, declare and consume fail
/// with [`TransportError::Closed`] at once, a consumer of that connection ends, and a
/// second close is fine. What was confirmed before the close reaches a consumer on another
/// connection. After [`Consumer::cancel`](crate::transport::Consumer::cancel), `next()` returns
/// `None`, even with a message waiting.
pub(crate) async fn closed_transport_refuses(broker: &dyn Broker) {
    const COUNT: usize = 50;
    let ns = namespace();
    let key = format!("{ns}.audit.logged");
    let closing = broker.connect().await;
    let other = broker.connect().await;
    let subscription = raw_subscription(&*other, &ns, &key).prefetch(COUNT as u16);
    if let Err(error) = other.declare(&subscription).await {
        panic!("declaring {ns} failed: {error}");
    }
    let side = raw_subscription(&*closing, &format!("{ns}-side"), &format!("{ns}-side.#"));
    let mut side_consumer = match closing.consume(&side).await {
        Ok(consumer) => consumer,
        Err(error) => panic!("consuming {ns}-side failed: {error}"),
    };
    let mut sent = BTreeSet::new();
    for n in 0..COUNT {
        let message = message(&key, n);
        sent.insert(message.metadata.id.to_string());
        if let Err(error) = closing.publish(message.into()).await {
            panic!("publish {n} before the close failed: {error}");
        }
    }
    // a delivery taken on the closing connection and not settled before the close
    let held_message = message(&format!("{ns}-side.held"), 0);
    if let Err(error) = closing.publish(held_message.clone().into()).await {
        panic!("publishing to {ns}-side failed: {error}");
    }
    let held = match within(PATIENCE, "the side delivery", side_consumer.next()).await {
        Some(Ok(delivery)) => delivery,
        other => panic!("the side consumer got {other:?}, not the held message"),
    };

    // closing flushes outstanding work: bounded, not instant
    if let Err(error) = within(PATIENCE, "close", closing.close()).await {
        panic!("close failed: {error}");
    }
    if let Err(error) = at_once("a second close", closing.close()).await {
        panic!("close is idempotent, but a second close failed: {error}");
    }
    let refused = |what: &str, result: Result<(), TransportError>| match result {
        Err(TransportError::Closed) => {}
        Err(error) => panic!("{what} after close failed with {error:?}, not Closed"),
        Ok(()) => panic!("{what} after close succeeded"),
    };
    let late = message(&key, COUNT);
    refused(
        "publish",
        at_once("publish after close", closing.publish(late.clone().into())).await,
    );
    // send may refuse, or hand back a confirmation that does, at once
    let sent_late = match at_once("send after close", closing.send(late.into())).await {
        Ok(confirmation) => at_once("the confirmation of a send after close", confirmation).await,
        Err(error) => Err(error),
    };
    refused("send", sent_late);
    refused(
        "declare",
        at_once("declare after close", closing.declare(&subscription)).await,
    );
    refused(
        "consume",
        at_once("consume after close", closing.consume(&subscription))
            .await
            .map(drop),
    );
    match at_once(
        "next() of a consumer of the closed connection",
        side_consumer.next(),
    )
    .await
    {
        None | Some(Err(TransportError::Closed)) => {}
        Some(Ok(delivery)) => panic!("a consumer of a closed connection delivered {delivery:?}"),
        Some(Err(error)) => {
            panic!("a consumer of a closed connection failed with {error:?}, not Closed or None")
        }
    }
    // settling on a closed connection is an error, never reported as done (even while its
    // consumer is still around); the broker delivers the message again, as redelivered
    if let Ok(()) = held.acker.settle(Settlement::Ack).await {
        panic!("an ack on a closed connection was reported as done");
    }
    drop(side_consumer);
    let mut side_again = match other.consume(&side).await {
        Ok(consumer) => consumer,
        Err(error) => panic!("consuming {ns}-side on another connection failed: {error}"),
    };
    match within(PATIENCE, "the held message again", side_again.next()).await {
        Some(Ok(again)) => {
            assert_eq!(
                again.message.metadata.id, held_message.metadata.id,
                "the held message comes back"
            );
            // a stream reads it again from the stored offset, without a flag
            let requeues = other.capabilities().requeue;
            assert!(again.redelivered || !requeues, "flagged as redelivered");
            if let Err(error) = again.acker.settle(Settlement::Ack).await {
                panic!("acking the redelivered message failed: {error}");
            }
        }
        other => panic!("the held message did not come back: {other:?}"),
    }
    drop(side_again);

    let mut consumer = match other.consume(&subscription).await {
        Ok(consumer) => consumer,
        Err(error) => panic!("consuming {ns} on another connection failed: {error}"),
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let (mut got, mut deliveries) = (BTreeSet::new(), 0);
    while got.len() < COUNT {
        let delivery = match tokio::time::timeout_at(deadline, consumer.next()).await {
            Ok(Some(Ok(delivery))) => delivery,
            Ok(Some(Err(error))) => panic!("consuming on another connection failed: {error}"),
            Ok(None) => panic!("the consumer ended after {} of {COUNT} messages", got.len()),
            Err(_) => panic!(
                "only {} of the {COUNT} messages confirmed before the close arrived within {PATIENCE:?}",
                got.len()
            ),
        };
        deliveries += 1;
        got.insert(delivery.message.metadata.id.to_string());
        if let Err(error) = delivery.acker.settle(Settlement::Ack).await {
            panic!("acking failed: {error}");
        }
    }
    assert_eq!(got, sent, "messages confirmed before the close were lost");
    assert_eq!(
        deliveries, COUNT,
        "a message confirmed once was delivered twice"
    );

    if let Err(error) = consumer.cancel().await {
        panic!("cancelling the consumer failed: {error}");
    }
    if let Err(error) = other.publish(message(&key, COUNT + 1).into()).await {
        panic!("publishing on the open connection failed: {error}");
    }
    match at_once("next() after cancel", consumer.next()).await {
        None => {}
        Some(Ok(delivery)) => panic!("a cancelled consumer delivered {delivery:?}"),
        Some(Err(error)) => panic!("a cancelled consumer failed with {error:?} instead of ending"),
    }
    let _ = consumer.close().await;
    let _ = other.close().await;
}

/// [`Transport::request`](crate::transport::Transport::request) gets the reply a responder sends to
/// the request's `reply_to` (`Destination::Reply`), matched by correlation id: ten
/// concurrent requests on one connection, each its own answer.
pub(crate) async fn request_reply(broker: &dyn Broker) {
    const REQUESTS: usize = 10;
    let ns = namespace();
    let key = format!("{ns}.price.quote");
    let answer_key = format!("{ns}.price.quoted");
    let replies = broker.connect().await;
    let answering = Arc::clone(&replies);
    let quote = Handler::raw("quote", key.clone(), move |event: RawEvent, _ctx| {
        let (replies, answer_key) = (Arc::clone(&answering), answer_key.clone());
        async move {
            let request: serde_json::Value = event.json()?;
            let n = request["n"]
                .as_u64()
                .ok_or_else(|| HandlerError::permanent("no n"))?;
            let reply_to = event
                .metadata()
                .reply_to
                .clone()
                .ok_or_else(|| HandlerError::permanent("the request has no reply_to"))?;
            let mut reply = Message::new(
                answer_key,
                Bytes::from(format!("{{\"n\":{n},\"cents\":{}}}", n * 100)),
            );
            reply.metadata.correlation_id = event.metadata().correlation_id.clone();
            replies
                .publish(Outgoing::new(reply, Destination::Reply(reply_to)))
                .await?;
            Ok::<_, HandlerError>(())
        }
    });
    let responder = bus_on(replies, &ns, vec![quote], 10).await;
    let task = start(&responder).await;
    let requester = broker.connect().await;
    let asks = (0..REQUESTS).map(|n| {
        let mut request = message(&key, n);
        request.metadata.correlation_id = Some(format!("quote-{n}"));
        let requester = Arc::clone(&requester);
        async move { (n, requester.request(request.into(), PATIENCE).await) }
    });
    for (n, answer) in join_all(asks).await {
        let reply = match answer {
            Ok(reply) => reply,
            Err(error) => panic!("request {n} failed: {error}"),
        };
        let body: serde_json::Value = serde_json::from_slice(&reply.body)
            .unwrap_or_else(|e| panic!("reply {n} is not JSON: {e}"));
        assert_eq!(
            (body["n"].as_u64(), body["cents"].as_u64()),
            (Some(n as u64), Some(n as u64 * 100)),
            "request {n} got another request's reply: {body}"
        );
        assert_eq!(
            reply.metadata.correlation_id.as_deref(),
            Some(format!("quote-{n}").as_str()),
            "the reply keeps the request's correlation id"
        );
    }
    let stats = stopped(responder, task).await;
    let _ = requester.close().await;
    assert_eq!(stats.acked, REQUESTS as u64, "{stats:?}");
}

/// A request nobody answers (routed to a queue without consumers) fails with
/// [`TransportError::TimedOut`] at its bound: not before, and not much after.
pub(crate) async fn request_times_out(broker: &dyn Broker) {
    let ns = namespace();
    let key = format!("{ns}.price.quote");
    let connection = broker.connect().await;
    if let Err(error) = connection
        .declare(&Subscription::queue(ns.clone(), [key.clone()]))
        .await
    {
        panic!("declaring {ns} failed: {error}");
    }
    let bound = Duration::from_millis(300);
    let started = Instant::now();
    let answer = connection.request(message(&key, 0).into(), bound).await;
    let took = started.elapsed();
    match answer {
        Err(TransportError::TimedOut { .. }) => {}
        Err(error) => panic!("an unanswered request failed with {error:?}, not TimedOut"),
        Ok(reply) => panic!("a request nobody answers got a reply: {reply:?}"),
    }
    assert!(
        took >= bound,
        "gave up after {took:?}, before its bound {bound:?}"
    );
    assert!(
        took <= bound + Duration::from_secs(2),
        "timed out only after {took:?}, with a bound of {bound:?}"
    );
    let _ = connection.close().await;
}
