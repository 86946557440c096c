use pubsub::prelude::*;

async fn plain(_event: RawEvent) -> Result<(), HandlerError> {
    Ok(())
}

mod shop {
    pub(crate) async fn also_plain() {}
}

fn main() {
    let _ = pubsub::handlers![plain];
    let _ = pubsub::handlers![shop::also_plain];
}
