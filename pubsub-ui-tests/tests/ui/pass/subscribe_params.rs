//! `.param` takes the parameter's own type or a reference to it, and a `&str` for a
//! `String` parameter.
use pubsub::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(key = "room.{room}.said.{user}")]
struct Said {
    room: String,
    user: u32,
    text: String,
}

async fn join(bus: &Bus, room: &String) -> pubsub::Result<()> {
    let _literal = bus.subscribe::<Said>().param(Said::ROOM, "lobby").param(Said::USER, 7).await?;
    let user = 7u32;
    let _by_ref = bus.subscribe::<Said>().param(Said::USER, &user).await?;
    let _owned = bus.subscribe::<Said>().param(Said::ROOM, room.clone()).await?;
    let _borrowed = bus.subscribe::<Said>().param(Said::ROOM, room).await?;
    let _all = bus.subscribe::<Said>().await?;
    Ok(())
}

fn main() {
    let bus = Bus::publisher("chat", MemoryTransport::new());
    let room = String::from("attic");
    let _ = join(&bus, &room);
}
