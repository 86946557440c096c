use pubsub::prelude::*;

#[derive(Serialize, Deserialize, Event)]
#[event(key = "{tenant}.order.created")]
struct FirstWordParam {
    tenant: String,
}

#[derive(Serialize, Deserialize, Event)]
#[event(key = "order..{id}")]
struct EmptyWord {
    id: u64,
}

#[derive(Serialize, Deserialize, Event)]
#[event(key = "order.v{id}.created")]
struct PartWord {
    id: u64,
}

#[derive(Serialize, Deserialize, Event)]
#[event(key = "order.*.Created")]
struct WildcardAndUppercase;

#[derive(Serialize, Deserialize, Event)]
#[event(key = "order")]
struct OneWord;

fn main() {}
