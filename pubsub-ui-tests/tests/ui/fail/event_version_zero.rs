use pubsub::prelude::*;

#[derive(Serialize, Deserialize, Event)]
#[event(domain = "order", action = "created", version = 0)]
struct OrderCreated {
    id: u64,
}

fn main() {}
