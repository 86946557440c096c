use pubsub::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "order", action = "created")]
struct OrderCreated {
    id: u64,
}

#[handler]
async fn reserve_stock(_event: OrderCreated, _db: String) -> Result<(), HandlerError> {
    Ok(())
}

#[handler]
async fn optional_context(_event: OrderCreated, _ctx: Option<Context>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
