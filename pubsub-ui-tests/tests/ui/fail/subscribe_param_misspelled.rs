use pubsub::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(key = "session.{session_id}.code_updated")]
struct CodeUpdated {
    session_id: u64,
    delta: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(key = "room.{room}.said")]
struct Said {
    room: String,
}

async fn join(bus: &Bus) -> pubsub::Result<()> {
    // a misspelled parameter does not exist
    let _typo = bus.subscribe::<CodeUpdated>().param(CodeUpdated::SESION_ID, 42).await?;
    // a parameter by its name as text is no parameter
    let _text = bus.subscribe::<CodeUpdated>().param("session_id", 42).await?;
    // another event's parameter
    let _other = bus.subscribe::<CodeUpdated>().param(Said::ROOM, "lobby").await?;
    Ok(())
}

fn main() {}
