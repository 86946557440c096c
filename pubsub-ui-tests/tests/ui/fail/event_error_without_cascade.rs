use pubsub::prelude::*;

// One mistake in `#[event]`, one error: the derive still emits a stand-in `Event` impl, so
// the handler and the use of `KEY` below add no "not an event" errors.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "order", action = "created", codec = "xml")]
struct OrderCreated {
    id: u64,
}

#[handler("order.*")]
async fn reserve_stock(_event: OrderCreated) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {
    assert_eq!(OrderCreated::KEY, "order.created");
}
