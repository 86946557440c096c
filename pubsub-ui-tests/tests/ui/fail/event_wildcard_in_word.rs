use pubsub::prelude::*;

#[derive(Serialize, Deserialize, Event)]
#[event(domain = "order", action = "*")]
struct AnyOrder {
    id: u64,
}

#[derive(Serialize, Deserialize, Event)]
#[event(domain = "#", action = "created")]
struct AnythingCreated {
    id: u64,
}

fn main() {}
