//! Structs of every kind and enums derive `Event`; several `#[event]` attributes merge.
use pubsub::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "cache", action = "flushed")]
pub struct CacheFlushed;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "user-account", action = "renamed_2", version = 4294967295)]
pub struct Renamed(pub String, pub String);

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "shipment")]
#[event(action = "changed")]
pub enum ShipmentChanged {
    Dispatched { carrier: String },
    Delivered,
}

/// Doc comments and other attributes stay on the handler.
#[handler]
#[allow(clippy::unused_async)]
#[cfg(not(any()))]
async fn on_shipment(event: ShipmentChanged) -> Result<(), HandlerError> {
    match event {
        ShipmentChanged::Dispatched { carrier } => drop(carrier),
        ShipmentChanged::Delivered => {}
    }
    Ok(())
}

fn main() {
    assert_eq!(CacheFlushed::KEY, "cache.flushed");
    assert_eq!(Renamed::KEY, "user-account.renamed_2");
    assert_eq!(Renamed::VERSION, u32::MAX);
    assert_eq!(ShipmentChanged::KEY, "shipment.changed");

    // A handler declared in a function body.
    #[handler("cache.#")]
    async fn local(_event: CacheFlushed) -> Result<(), HandlerError> {
        Ok(())
    }
    let _ = local;
}
