//! AMQP carries routing keys as a shortstr: `domain.action` is 255 bytes at most.
use pubsub::prelude::*;

// 127 + 1 + 127 = 255 bytes: accepted
#[derive(Serialize, Deserialize, Event)]
#[event(
    domain = "ddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd",
    action = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
)]
struct AtTheLimit {
    id: u64,
}

// 127 + 1 + 128 = 256 bytes
#[derive(Serialize, Deserialize, Event)]
#[event(
    domain = "ddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd",
    action = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
)]
struct OverTheLimit {
    id: u64,
}

fn main() {}
