//! `RawEvent` handlers take any key matching their pattern.
use pubsub::prelude::*;

#[handler("order.*")]
async fn audit(event: RawEvent) -> Result<(), HandlerError> {
    let _ = (event.key(), event.body().len());
    Ok(())
}

#[handler("#")]
async fn everything(_: pubsub::RawEvent, ctx: Context) -> Result<(), HandlerError> {
    drop(ctx);
    Ok(())
}

#[handler("*.failed.#")]
async fn failures(_event: RawEvent) -> Result<(), HandlerError> {
    Err(HandlerError::permanent("never retried"))
}

fn main() {}
