use pubsub::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "order", action = "created")]
struct OrderCreated {
    id: u64,
}

#[handler]
async fn reserve_stock<E: Event + Clone>(_event: E) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
