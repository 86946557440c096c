use pubsub::prelude::*;

// `foreign` is a flag: it takes no value.
#[handler("partner.#", foreign = true)]
async fn partner_events(_event: RawEvent) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
