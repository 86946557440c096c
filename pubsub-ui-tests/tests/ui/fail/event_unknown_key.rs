use pubsub::prelude::*;

#[derive(Serialize, Deserialize, Event)]
#[event(domian = "order", action = "created")]
struct OrderCreated {
    id: u64,
}

#[derive(Serialize, Deserialize, Event)]
#[event(domain = "order", action = "shipped", topic = "orders")]
struct OrderShipped {
    id: u64,
}

fn main() {}
