use pubsub::prelude::*;

// Every mistake is reported in one build, each at its own token.
#[derive(Serialize, Deserialize, Event)]
#[event(domain = "Order", action = "", version = 0, codec = "yaml", kind = "x")]
struct OrderCreated<T> {
    id: T,
}

fn main() {}
