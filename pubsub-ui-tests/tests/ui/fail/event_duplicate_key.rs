use pubsub::prelude::*;

#[derive(Serialize, Deserialize, Event)]
#[event(domain = "order", action = "created", domain = "orders")]
struct OrderCreated {
    id: u64,
}

#[derive(Serialize, Deserialize, Event)]
#[event(domain = "order", action = "shipped", version = 1)]
#[event(version = 2)]
struct OrderShipped {
    id: u64,
}

fn main() {}
