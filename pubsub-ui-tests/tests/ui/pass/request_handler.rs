//! A request names its reply type once; its handlers return it and callers get it.
use std::time::Duration;

use pubsub::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserProfile {
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "user", action = "profile_requested", reply = UserProfile)]
pub struct GetUserProfile {
    pub user_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "user", action = "count_requested", reply = Vec<u64>, version = 2)]
pub struct CountUsers {}

#[handler]
async fn profile(req: GetUserProfile, ctx: Context) -> Result<UserProfile, HandlerError> {
    let _ = ctx;
    Ok(UserProfile { name: req.user_id })
}

#[handler(timeout = "1s", retries = 0)]
async fn count(_req: CountUsers) -> Result<Vec<u64>, std::io::Error> {
    Ok(vec![1, 2])
}

// a wildcard handler sees requests too, and answers nothing
#[handler("user.#")]
async fn audit(_event: RawEvent) -> Result<(), HandlerError> {
    Ok(())
}

async fn ask(bus: &Bus) -> Result<(), RequestError> {
    let profile: UserProfile = bus
        .request(&GetUserProfile { user_id: "u-1".into() })
        .timeout(Duration::from_secs(2))
        .await?;
    let counts: Vec<u64> = bus.request(&CountUsers {}).await?;
    let _ = (profile.name, counts);
    Ok(())
}

fn main() {
    let _ = (ask, profile, count, audit);
}
