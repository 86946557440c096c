use pubsub::prelude::*;

#[derive(Serialize, Deserialize, Event)]
#[event(domain = "order", action = "created", version = "1")]
struct Quoted {
    id: u64,
}

#[derive(Serialize, Deserialize, Event)]
#[event(domain = "order", action = "shipped", version = 4294967296)]
struct TooBig {
    id: u64,
}

#[derive(Serialize, Deserialize, Event)]
#[event(domain = "order", action = "paid", version = -1)]
struct Negative {
    id: u64,
}

#[derive(Serialize, Deserialize, Event)]
#[event(domain = "order", action = "lost", version = 1.5)]
struct Fractional {
    id: u64,
}

fn main() {}
