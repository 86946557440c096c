use pubsub::prelude::*;

#[handler("order.*", timeuot = "5s", queue = "orders")]
async fn audit(_event: RawEvent) -> Result<(), HandlerError> {
    Ok(())
}

#[handler(pattern = "order.*")]
async fn keyed_pattern(_event: RawEvent) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
