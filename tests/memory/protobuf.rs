//! Protocol Buffers events end to end (facade feature `protobuf`).

use pubsub::prelude::*;
use pubsub::{Bus, HandlerSelection, codec::PROTOBUF, testing::TestHarness, transport::Bytes};

#[derive(Clone, PartialEq, prost::Message, pubsub::Event)]
#[event(domain = "payment", action = "settled", codec = "protobuf")]
struct PaymentSettled {
    #[prost(string, tag = "1")]
    payment_id: String,
    #[prost(uint64, tag = "2")]
    amount_cents: u64,
}

#[handler]
async fn book_payment(payment: PaymentSettled) -> Result<(), HandlerError> {
    if payment.amount_cents == 0 {
        return Err(HandlerError::permanent("zero payment"));
    }
    Ok(())
}

#[tokio::test]
async fn protobuf_events_round_trip_with_their_content_type() {
    let h = TestHarness::start(
        Bus::builder().select_handlers(HandlerSelection::named(["book_payment"])),
    )
    .await
    .unwrap();
    let sent = PaymentSettled {
        payment_id: "p-1".into(),
        amount_cents: 1250,
    };
    h.publish(&sent).await.unwrap();
    h.settled().await.unwrap();
    assert_eq!(
        h.consumed::<PaymentSettled>("book_payment"),
        std::slice::from_ref(&sent)
    );
    let wire = &h.published_messages()[0];
    assert_eq!(wire.metadata.content_type, PROTOBUF);
    assert_eq!(
        &wire.body[..],
        &prost::Message::encode_to_vec(&sent)[..],
        "body is the bare payload"
    );

    // JSON sent to a protobuf consumer is refused, not mis-decoded
    let mut json = Message::new(
        "payment.settled",
        Bytes::from_static(b"{\"payment_id\":\"p-2\"}"),
    );
    json.metadata.content_type = "application/json".into();
    h.bus().publish_message(json).await.unwrap();
    h.settled().await.unwrap();
    let dead = h.single_dead_letter();
    assert!(
        dead.reason.contains("cannot be decoded as payment.settled"),
        "{}",
        dead.reason
    );
    h.shutdown().await.unwrap();
}
