use pubsub::prelude::*;

// no Serialize / Deserialize: a reply travels as JSON
#[derive(Debug, Clone)]
struct UserProfile {
    name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(domain = "user", action = "profile_requested", reply = UserProfile)]
struct GetUserProfile {
    user_id: String,
}

fn main() {}
