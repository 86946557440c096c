mod shop {
    use pubsub::prelude::*;

    #[handler("order.*")]
    pub(crate) async fn audit(_event: RawEvent) -> Result<(), HandlerError> {
        Ok(())
    }

    #[handler("order.*")]
    async fn private(_event: RawEvent) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn main() {
    let _ = pubsub::handlers![shop::audti];
    let _ = pubsub::handlers![shop::private];
}
