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

// Any word RabbitMQ takes, so as to bind to keys that other publishers chose.
#[handler("Order.*")]
async fn uppercase(_event: RawEvent) -> Result<(), HandlerError> {
    Ok(())
}

#[handler("заказ.#")]
async fn non_ascii(_event: RawEvent) -> Result<(), HandlerError> {
    Ok(())
}

#[handler("a+b.v1:2.*")]
async fn punctuation(_event: RawEvent) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
