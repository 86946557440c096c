use pubsub::prelude::*;

#[handler("order.*", retries = 3, retry = "slow")]
async fn audit(_event: RawEvent) -> Result<(), HandlerError> {
    Ok(())
}

#[handler("order.*", retry = "slow", retries = 3)]
async fn audit_reversed(_event: RawEvent) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
