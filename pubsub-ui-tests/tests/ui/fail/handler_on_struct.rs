use pubsub::prelude::*;

#[handler("order.*")]
struct Audit {
    count: u64,
}

fn main() {}
