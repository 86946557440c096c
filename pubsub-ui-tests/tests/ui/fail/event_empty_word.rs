use pubsub::prelude::*;

#[derive(Serialize, Deserialize, Event)]
#[event(domain = "", action = "created")]
struct OrderCreated {
    id: u64,
}

fn main() {}
