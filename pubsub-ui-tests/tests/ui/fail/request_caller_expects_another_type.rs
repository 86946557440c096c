use pubsub::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct UserProfile {
    name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "user", action = "profile_requested", reply = UserProfile)]
struct GetUserProfile {
    user_id: String,
}

async fn ask(bus: &Bus) -> pubsub::Result<String> {
    // the reply of `GetUserProfile` is a `UserProfile`
    let name: String = bus.request(&GetUserProfile { user_id: "u-1".into() }).await?;
    Ok(name)
}

fn main() {
    let _ = ask;
}
