//! Events and handlers declared through `pubsub::prelude::*` only.

use pubsub::prelude::*;

/// An order was placed.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "order", action = "created", version = 2)]
pub struct OrderCreated {
    /// Which order.
    pub order_id: String,
}

/// Stock was reserved for an order.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "stock", action = "reserved")]
pub struct StockReserved {
    /// Which order.
    pub order_id: String,
}

/// Code changed in one session: a key with a parameter.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(key = "session.{session_id}.code_updated")]
pub struct CodeUpdated {
    /// Which session: a word of the routing key.
    pub session_id: u64,
}

/// One session's updates.
#[handler("session.42.code_updated")]
pub async fn watch_42(event: CodeUpdated, ctx: Context) -> Result<(), HandlerError> {
    let _ = (event.session_id, ctx.key_param(CodeUpdated::SESSION_ID.name()));
    Ok(())
}

/// Typed handler with a context.
#[handler]
pub async fn reserve_stock(event: OrderCreated, ctx: Context) -> Result<(), HandlerError> {
    ctx.publish(&StockReserved {
        order_id: event.order_id,
    })
    .await?;
    Ok(())
}

/// Wildcard handler with every option.
#[handler(
    "order.#",
    name = "audit",
    timeout = "5s",
    retries = 3,
    service = "audit"
)]
pub async fn audit(event: RawEvent) -> Result<(), HandlerError> {
    let _ = event.key();
    Ok(())
}

/// A handler called from an ordinary tokio test, as a service's unit test would.
#[handler("stock.*", retry = "slow")]
pub async fn on_reserved(_event: StockReserved) -> Result<(), HandlerError> {
    Ok(())
}

/// Two handlers selected by path.
pub fn selection() -> HandlerSelection {
    pubsub::handlers![reserve_stock, audit]
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn handlers_are_plain_fns() {
        let event = super::StockReserved {
            order_id: "A1".into(),
        };
        assert!(super::on_reserved(event).await.is_ok());
    }
}
