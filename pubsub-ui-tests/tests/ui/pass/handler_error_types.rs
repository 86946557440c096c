// A handler may return any error type that converts into a boxed error, and `?` converts
// one into a `HandlerError` inside a handler that returns `HandlerError`.
use pubsub::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "order", action = "created")]
struct OrderCreated {
    id: u64,
}

fn lookup(id: u64) -> anyhow::Result<u64> {
    anyhow::ensure!(id > 0, "no order {id}");
    Ok(id)
}

#[handler]
async fn returns_anyhow(event: OrderCreated) -> anyhow::Result<()> {
    lookup(event.id)?;
    Ok(())
}

#[handler("order.*")]
async fn returns_string(_event: RawEvent) -> Result<(), String> {
    Err("not yet".to_owned())
}

#[handler("order.#")]
async fn question_mark_on_anyhow(event: RawEvent) -> Result<(), HandlerError> {
    let order: OrderCreated = event.decode()?;
    lookup(order.id)?; // retryable
    lookup(order.id).permanent()?; // dead-lettered at once
    Ok(())
}

fn main() {}
