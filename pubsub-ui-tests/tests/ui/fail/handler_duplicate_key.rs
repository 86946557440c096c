use pubsub::prelude::*;

#[handler(
    "order.*",
    name = "audit",
    timeout = "1s",
    name = "audit2",
    timeout = "2s"
)]
async fn audit(_event: RawEvent) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
