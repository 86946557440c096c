use pubsub::prelude::*;

#[derive(Serialize, Deserialize, Event)]
#[event(domain = "order", action = "shipped", crate = "missing_crate")]
struct OrderShipped {
    id: u64,
}

fn main() {}
