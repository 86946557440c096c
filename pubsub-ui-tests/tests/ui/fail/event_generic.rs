use pubsub::prelude::*;

#[derive(Serialize, Deserialize, Event)]
#[event(domain = "order", action = "created")]
struct OrderCreated<T> {
    id: T,
}

#[derive(Serialize, Event)]
#[event(domain = "order", action = "shipped")]
struct OrderShipped<'a> {
    id: &'a str,
}

fn main() {}
