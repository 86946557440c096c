use pubsub::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "order", action = "created")]
struct OrderCreated {
    id: u64,
}

#[handler]
async fn reserve_stock(_event: OrderCreated) {}

fn main() {}
