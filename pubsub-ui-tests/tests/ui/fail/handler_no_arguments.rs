use pubsub::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "order", action = "created")]
struct OrderCreated {
    id: u64,
}

#[handler("order.*")]
async fn audit() -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
