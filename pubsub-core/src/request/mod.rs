//! Requests: events that name a reply type ([`Request`]), what a caller gets when no reply
//! comes ([`RequestError`]), and how a request and its reply travel ([`wire`]).
//!
//! The caller's side is [`Bus::request`](crate::Bus::request); the responder's is an
//! ordinary handler of the request type, which returns the reply.

mod error;
pub(crate) mod wire;

use std::time::Duration;

pub use error::RequestError;

use crate::event::Event;

/// How long [`Bus::request`](crate::Bus::request) waits for a reply unless told otherwise
/// with [`RequestCall::timeout`](crate::RequestCall::timeout).
///
/// ```
/// assert_eq!(pubsub::DEFAULT_REQUEST_TIMEOUT, std::time::Duration::from_secs(10));
/// ```
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// An event that asks for an answer: its handler returns [`Event::Reply`], which goes
/// back to the caller of [`Bus::request`](crate::Bus::request).
///
/// Derive it by naming the reply type in `#[event(...)]`, once:
///
/// ```
/// use pubsub::prelude::*;
///
/// #[derive(Debug, Clone, Serialize, Deserialize)]
/// struct UserProfile { name: String }
///
/// #[derive(Debug, Clone, Serialize, Deserialize, Event)]
/// #[event(domain = "user", action = "profile_requested", reply = UserProfile)]
/// struct GetUserProfile { user_id: String }
///
/// // a handler of the request returns its reply type
/// #[handler]
/// async fn profile(req: GetUserProfile) -> Result<UserProfile, HandlerError> {
///     Ok(UserProfile { name: format!("user {}", req.user_id) })
/// }
///
/// fn reply_of<R: Request>() -> &'static str { std::any::type_name::<R::Reply>() }
/// assert!(reply_of::<GetUserProfile>().ends_with("UserProfile"));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a request: it names no reply type",
    label = "not a request",
    note = "name what its handler answers in its `#[event(...)]`: \
            `#[event(domain = \"...\", action = \"...\", reply = MyReply)]`; \
            to send an event without waiting for an answer, use `bus.publish(..)`"
)]
pub trait Request: Event {}
