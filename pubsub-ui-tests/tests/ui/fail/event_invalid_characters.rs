use pubsub::prelude::*;

#[derive(Serialize, Deserialize, Event)]
#[event(domain = "Order", action = "created")]
struct OrderCreated {
    id: u64,
}

#[derive(Serialize, Deserialize, Event)]
#[event(domain = "order", action = "was shipped")]
struct OrderShipped {
    id: u64,
}

#[derive(Serialize, Deserialize, Event)]
#[event(domain = "commande", action = "créée")]
struct CommandeCreee {
    id: u64,
}

fn main() {}
