//! `handlers![..]` takes paths to `#[handler]` fns however they are reachable, and the
//! hidden item `#[handler]` declares for it raises no lint, even under strict lints.
#![deny(warnings, missing_docs, missing_debug_implementations, unreachable_pub)]
extern crate pubsub as my_pubsub;

use pubsub::prelude::*;

/// An order was placed.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "order", action = "created")]
pub struct OrderCreated {
    /// Which order.
    pub order_id: String,
}

#[handler]
async fn confirm(_event: OrderCreated) -> Result<(), HandlerError> {
    Ok(())
}

/// Handlers of a public module.
pub mod shop {
    use pubsub::prelude::*;

    /// Renamed, with a raw identifier.
    #[handler("order.*", name = "type-audit")]
    pub async fn r#type(_event: RawEvent) -> Result<(), HandlerError> {
        Ok(())
    }

    pub(crate) mod email {
        use pubsub::prelude::*;

        #[handler]
        pub(crate) async fn send_receipt(_event: super::super::OrderCreated) -> Result<(), HandlerError> {
            Ok(())
        }
    }

    pub(crate) use email::send_receipt as receipt;
}

#[cfg(any())]
#[handler]
async fn compiled_out(_event: OrderCreated) -> Result<(), HandlerError> {
    Ok(())
}

#[handler(crate = "my_pubsub")]
async fn through_renamed_facade(_event: OrderCreated) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {
    use shop::email::send_receipt;

    let selections = [
        pubsub::handlers![confirm],
        pubsub::handlers![crate::confirm, shop::r#type, send_receipt,],
        pubsub::handlers![shop::receipt, self::shop::email::send_receipt],
        my_pubsub::handlers![through_renamed_facade],
        handlers![confirm], // in the prelude
        pubsub::handlers![],
    ];
    let HandlerSelection::Fns(fns) = &selections[1] else {
        panic!("handlers! makes HandlerSelection::Fns");
    };
    let names: Vec<_> = fns
        .iter()
        .map(|f| (f.module_path().to_owned(), f.name()))
        .collect();
    let root = module_path!();
    assert_eq!(
        names,
        [
            (root.to_owned(), "confirm"),
            (format!("{root}::shop"), "type-audit"),
            (format!("{root}::shop::email"), "send_receipt"),
        ]
    );
}
