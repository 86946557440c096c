use pubsub::prelude::*;

#[derive(Serialize, Deserialize, Event)]
#[event(version = 2)]
struct OrderCreated {
    id: u64,
}

#[derive(Serialize, Deserialize, Event)]
#[event(domain = "order")]
struct OrderShipped {
    id: u64,
}

fn main() {}
