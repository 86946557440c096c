use pubsub::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "order", action = "created")]
struct OrderCreated {
    order_id: String,
}

// Names travel in a comma-separated dead-letter header.
#[handler(name = "audit,log")]
async fn audit(_event: OrderCreated) -> Result<(), HandlerError> {
    Ok(())
}

#[handler]
async fn résumé(_event: OrderCreated) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
