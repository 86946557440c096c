//! The connection: after `close` every operation fails at once and nothing confirmed
//! is lost.

use std::collections::BTreeSet;

use crate::testing::conformance::Broker;
use crate::testing::conformance::support::{
    PATIENCE, at_once, message, namespace, raw_subscription, within,
};
use crate::transport::Settlement;
use crate::transport::TransportError;

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
