use pubsub::prelude::*;

#[derive(Serialize, Deserialize, Event)]
#[event(domain = "order", action = "created", codec = "xml")]
struct OrderCreated {
    id: u64,
}

fn main() {}
