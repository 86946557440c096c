use pubsub::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(key = "session.{session_id}.code_updated")]
struct CodeUpdated {
    session_id: u64,
}

// a placeholder is exactly one word
#[handler("session.code_updated")]
async fn no_session(_event: CodeUpdated) -> Result<(), HandlerError> {
    Ok(())
}

#[handler("session.42.7.code_updated")]
async fn two_words(_event: CodeUpdated) -> Result<(), HandlerError> {
    Ok(())
}

#[handler("session.*.deleted")]
async fn other_action(_event: CodeUpdated) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
