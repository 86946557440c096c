use pubsub::prelude::*;

#[derive(Serialize, Deserialize, Event)]
#[event(domain = "order.v2", action = "created")]
struct OrderCreated {
    id: u64,
}

fn main() {}
