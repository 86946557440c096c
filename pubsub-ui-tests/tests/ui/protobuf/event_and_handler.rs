//! A protobuf event (facade feature `protobuf`) and a handler of it.
use pubsub::prelude::*;

#[derive(Clone, PartialEq, prost::Message, Event)]
#[event(
    domain = "payment",
    action = "captured",
    version = 2,
    codec = "protobuf"
)]
pub struct PaymentCaptured {
    #[prost(string, tag = "1")]
    pub payment_id: String,
    #[prost(uint64, tag = "2")]
    pub amount_cents: u64,
}

#[handler]
async fn on_captured(event: PaymentCaptured, _ctx: Context) -> Result<(), HandlerError> {
    let _ = (event.payment_id, event.amount_cents);
    Ok(())
}

fn main() {
    assert_eq!(
        <<PaymentCaptured as pubsub::Event>::Codec as pubsub::codec::Codec<PaymentCaptured>>::CONTENT_TYPE,
        pubsub::codec::PROTOBUF
    );
}
