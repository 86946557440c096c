use pubsub::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "order", action = "created")]
struct OrderCreated {
    id: u64,
}

async fn ask(bus: &Bus) -> pubsub::Result<()> {
    // an event names no reply: nothing answers it
    bus.request(&OrderCreated { id: 1 }).await?;
    Ok(())
}

fn main() {
    let _ = ask;
}
