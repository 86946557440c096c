use pubsub::prelude::*;

#[derive(Serialize, Deserialize, Event)]
#[event(key = "session.{sesion_id}.code_updated")]
struct CodeUpdated {
    session_id: u64,
}

#[derive(Serialize, Deserialize, Event)]
#[event(key = "chat.{room}.{room}.said")]
struct Said {
    room: String,
}

#[derive(Serialize, Deserialize, Event)]
#[event(key = "cursor.{0}.moved")]
struct Moved(u64);

#[derive(Serialize, Deserialize, Event)]
#[event(key = "doc.{version}.saved")]
struct Saved {
    version: u32,
}

fn main() {}
