use std::borrow::Cow;

use pubsub::prelude::*;
use pubsub::{KeyParam, KeyWord, Uuid};

// A key with parameters, of each kind of `KeyWord`.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(key = "session.{session_id}.code_updated", version = 2)]
pub struct CodeUpdated {
    pub session_id: u64,
    pub user_id: String,
    pub delta: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoomId(u32);

impl KeyWord for RoomId {
    fn key_word(&self) -> Cow<'_, str> {
        Cow::Owned(format!("room-{}", self.0))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(key = "chat.{room}.{author}.said.{at}")]
struct Said {
    room: RoomId,
    author: Uuid,
    at: i64,
}

// A constant key, written whole.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(key = "order.created.v2")]
struct OrderCreated {
    id: u64,
}

#[handler]
async fn index(_event: CodeUpdated, ctx: Context) -> Result<(), HandlerError> {
    let _session: Option<&str> = ctx.key_param("session_id");
    Ok(())
}

#[handler("session.42.code_updated")]
async fn watch_42(_event: CodeUpdated) -> Result<(), HandlerError> {
    Ok(())
}

#[handler("session.#")]
async fn all_sessions(_event: CodeUpdated) -> Result<(), HandlerError> {
    Ok(())
}

#[handler("*.*.code_updated")]
async fn any_domain(_event: CodeUpdated) -> Result<(), HandlerError> {
    Ok(())
}

#[handler]
async fn orders(_event: OrderCreated) -> Result<(), HandlerError> {
    Ok(())
}

#[handler("chat.room-1.*.said.*")]
async fn lobby(_event: Said) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {
    const SESSION: KeyParam<CodeUpdated, u64> = CodeUpdated::SESSION_ID;
    assert_eq!(SESSION.name(), "session_id");
    assert_eq!(Said::KEY_PARAMS, ["room", "author", "at"]);
    let _: KeyParam<Said, Uuid> = Said::AUTHOR;
    assert_eq!(OrderCreated::KEY, "order.created.v2");
    assert_eq!((OrderCreated::DOMAIN, OrderCreated::ACTION), ("order", "created.v2"));
    assert_eq!(OrderCreated::PATTERN, OrderCreated::KEY);
    let said = Said { room: RoomId(1), author: Uuid::nil(), at: -1 };
    assert_eq!(
        said.routing_key().unwrap(),
        "chat.room-1.00000000-0000-0000-0000-000000000000.said.-1"
    );
}
