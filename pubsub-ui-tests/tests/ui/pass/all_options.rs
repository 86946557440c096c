//! Every option of both macros, including a renamed facade.
extern crate pubsub as my_pubsub;

use my_pubsub::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(
    domain = "payment",
    action = "settled",
    version = 3,
    codec = "json",
    crate = "my_pubsub"
)]
pub struct PaymentSettled {
    pub amount_cents: u64,
}

#[handler(
    "payment.*",
    name = "settlement-audit",
    timeout = "5s",
    retries = 3,
    service = "billing",
    crate = "my_pubsub"
)]
async fn audit(_event: PaymentSettled, _ctx: Context) -> Result<(), HandlerError> {
    Ok(())
}

#[handler("payment.#", retry = "slow", timeout = "250ms")]
async fn slow_audit(_event: RawEvent) -> Result<(), HandlerError> {
    Ok(())
}

#[handler(name = "ledger", timeout = "2m", retries = 0)]
async fn ledger(_event: PaymentSettled) -> Result<(), HandlerError> {
    Ok(())
}

#[handler(crate = "::my_pubsub", timeout = "1h")]
async fn r#type(_event: PaymentSettled) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {
    assert_eq!(<PaymentSettled as my_pubsub::Event>::VERSION, 3);
}
