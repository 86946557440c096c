use pubsub::prelude::*;

#[handler]
async fn audit(_event: RawEvent) -> Result<(), HandlerError> {
    Ok(())
}

#[handler(name = "audit-all", retries = 1)]
async fn audit_all(_event: pubsub::RawEvent, _ctx: Context) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
