use pubsub::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "order", action = "created")]
struct OrderCreated {
    id: u64,
}

struct Service;

impl Service {
    #[handler]
    async fn reserve_stock(&self, _event: OrderCreated) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn main() {}
