use pubsub::prelude::*;

#[derive(Serialize, Deserialize, Event)]
#[event(key = "session.{session_id}.code_updated", domain = "session", action = "code_updated")]
struct CodeUpdated {
    session_id: u64,
}

fn main() {}
