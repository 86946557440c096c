use pubsub::prelude::*;

#[handler("")]
async fn empty(_event: RawEvent) -> Result<(), HandlerError> {
    Ok(())
}

#[handler("order..created")]
async fn empty_word(_event: RawEvent) -> Result<(), HandlerError> {
    Ok(())
}

#[handler("order.cre*")]
async fn partial_star(_event: RawEvent) -> Result<(), HandlerError> {
    Ok(())
}

#[handler("#b.created")]
async fn partial_hash(_event: RawEvent) -> Result<(), HandlerError> {
    Ok(())
}

#[handler("order.\tcreated")]
async fn control_character(_event: RawEvent) -> Result<(), HandlerError> {
    Ok(())
}

#[handler(order.*)]
async fn unquoted(_event: RawEvent) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
