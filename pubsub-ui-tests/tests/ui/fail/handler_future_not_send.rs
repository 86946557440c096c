use pubsub::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "order", action = "created")]
struct OrderCreated {
    id: u64,
}

#[handler]
async fn reserve_stock(event: OrderCreated) -> Result<(), HandlerError> {
    let counter = std::rc::Rc::new(event.id);
    tokio::task::yield_now().await;
    drop(counter);
    Ok(())
}

fn main() {}
