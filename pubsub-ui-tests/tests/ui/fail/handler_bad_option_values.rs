use pubsub::prelude::*;

#[handler("order.*", timeout = "5")]
async fn no_unit(_event: RawEvent) -> Result<(), HandlerError> {
    Ok(())
}

#[handler("order.*", timeout = "0s")]
async fn zero(_event: RawEvent) -> Result<(), HandlerError> {
    Ok(())
}

#[handler("order.*", timeout = "5 sec")]
async fn spelled_out(_event: RawEvent) -> Result<(), HandlerError> {
    Ok(())
}

#[handler("order.*", timeout = 5, retries = "3", name = "", service = billing)]
async fn wrong_types(_event: RawEvent) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
