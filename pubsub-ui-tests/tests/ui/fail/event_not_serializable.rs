use pubsub::prelude::*;

#[derive(Debug, Clone, Event)]
#[event(domain = "order", action = "created")]
struct OrderCreated {
    id: u64,
}

#[derive(Debug, Clone, Event)]
#[event(domain = "order", action = "shipped", codec = "json")]
struct OrderShipped {
    id: u64,
}

fn main() {}
