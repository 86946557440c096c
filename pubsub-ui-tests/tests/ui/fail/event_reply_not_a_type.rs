use pubsub::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct UserProfile {
    name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "user", action = "profile_requested", reply = "UserProfile")]
struct GetUserProfile {
    user_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "user", action = "ping_requested", reply = ())]
struct Ping {}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "user", action = "pong_requested", reply = UserProfile, reply = UserProfile)]
struct Pong {}

fn main() {}
