use pubsub::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "order", action = "created")]
struct OrderCreated {
    id: u64,
}

#[handler]
fn reserve_stock(_event: OrderCreated) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
