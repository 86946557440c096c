use pubsub::prelude::*;

// Derives `Event` but not `Clone`.
#[derive(Debug, Serialize, Deserialize, Event)]
#[event(domain = "order", action = "created")]
struct OrderCreated {
    id: u64,
}

#[handler]
async fn reserve_stock(_event: OrderCreated) -> Result<(), HandlerError> {
    Ok(())
}

#[handler("order.*")]
async fn audit(_event: String) -> Result<(), HandlerError> {
    Ok(())
}

#[handler("order.#")]
async fn batch(_events: Vec<RawEvent>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
