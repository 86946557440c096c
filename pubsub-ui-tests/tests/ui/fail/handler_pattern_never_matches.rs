use pubsub::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "order", action = "created")]
struct OrderCreated {
    id: u64,
}

#[handler("payment.*")]
async fn reserve_stock(_event: OrderCreated) -> Result<(), HandlerError> {
    Ok(())
}

#[handler("order.created.#.v2")]
async fn versioned(_event: OrderCreated) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
