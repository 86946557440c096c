use pubsub::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(key = "session.{session_id}.code_updated")]
struct CodeUpdated {
    session_id: u64,
    delta: String,
}

async fn join(bus: &Bus) -> pubsub::Result<()> {
    // the session id is a u64, not text
    let _wrong = bus.subscribe::<CodeUpdated>().param(CodeUpdated::SESSION_ID, "42").await?;
    Ok(())
}

fn main() {}
