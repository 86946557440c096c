use pubsub::prelude::*;

// On error the fn is still emitted as written, so code calling it adds no errors.
#[handler("order.*", timeuot = "5s")]
async fn audit(_event: RawEvent) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {
    let _future = audit;
}
