use pubsub::prelude::*;

#[derive(Serialize, Deserialize, Event)]
#[event(domain = "order", action = "created", crate = "not a path")]
struct OrderCreated {
    id: u64,
}

fn main() {}
