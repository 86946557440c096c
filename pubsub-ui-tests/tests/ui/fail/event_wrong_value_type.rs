use pubsub::prelude::*;

#[derive(Serialize, Deserialize, Event)]
#[event(domain = order, action = 1, codec = json)]
struct OrderCreated {
    id: u64,
}

fn main() {}
