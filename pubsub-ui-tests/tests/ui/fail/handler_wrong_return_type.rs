use pubsub::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "order", action = "created")]
struct OrderCreated {
    id: u64,
}

#[handler]
async fn returns_number(_event: OrderCreated) -> u32 {
    0
}

#[handler("order.#")]
async fn returns_value(_event: RawEvent) -> Result<u32, HandlerError> {
    Ok(1)
}

fn main() {}
