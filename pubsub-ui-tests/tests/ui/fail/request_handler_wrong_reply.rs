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

// a handler of a request answers with its reply type, not `()`
#[handler]
async fn answers_nothing(_req: GetUserProfile) -> Result<(), HandlerError> {
    Ok(())
}

// nor another type
#[handler]
async fn answers_a_name(req: GetUserProfile) -> Result<String, HandlerError> {
    Ok(req.user_id)
}

fn main() {}
