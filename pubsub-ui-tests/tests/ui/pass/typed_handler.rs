//! A typed handler subscribes to its event's own key; a pattern, when given, must match it.
use pubsub::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "order", action = "created")]
pub struct OrderCreated {
    pub order_id: String,
}

#[handler]
async fn reserve_stock(event: OrderCreated, ctx: Context) -> Result<(), HandlerError> {
    let _ = (event.order_id, ctx);
    Ok(())
}

#[handler]
async fn without_context(_event: OrderCreated) -> Result<(), HandlerError> {
    Ok(())
}

#[handler("order.*")]
pub(crate) async fn with_matching_pattern(
    _: OrderCreated,
    _: Context,
) -> Result<(), std::io::Error> {
    Ok(())
}

#[handler("#.created")]
async fn destructured(OrderCreated { order_id }: OrderCreated) -> Result<(), HandlerError> {
    drop(order_id);
    Ok(())
}

mod nested {
    use super::OrderCreated;
    use pubsub::{HandlerError, handler};

    #[handler]
    pub async fn in_a_module(_event: OrderCreated) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn main() {
    // The fns stay ordinary async fns that tests can call directly.
    let _future = without_context(OrderCreated {
        order_id: "A1".into(),
    });
    let _ = nested::in_a_module;
}
