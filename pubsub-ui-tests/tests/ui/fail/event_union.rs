use pubsub::prelude::*;

#[derive(Event)]
#[event(domain = "order", action = "created")]
union OrderCreated {
    id: u64,
    code: u32,
}

fn main() {}
