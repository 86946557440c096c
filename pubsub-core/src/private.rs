//! Items the macros' generated code names. Not public API: no semver guarantees.

pub use crate::codec::Json;
#[cfg(feature = "protobuf")]
pub use crate::codec::Protobuf;

/// Stand-in for `codec = "protobuf"` without the `protobuf` feature: it implements no
/// `Codec`, so the compiler's error carries `Codec`'s note about the feature.
#[cfg(not(feature = "protobuf"))]
#[derive(Debug, Clone, Copy)]
pub struct Protobuf;
pub use crate::context::Context;
pub use crate::event::Event;
pub use crate::event_registration::EventRegistration;
pub use crate::handler_error::HandlerError;
pub use crate::handler_input::{Answer, FromContext, HandlerInput, Input, IntoHandlerResult};
pub use crate::key_template::{KeyError, KeyParam};
pub use crate::key_word::KeyWord;
pub use crate::pattern::matches as pattern_matches;
pub use crate::registration::{CallFn, HandlerRegistration};
pub use crate::request::Request;
pub use crate::selection::{HandlerFn, IsHandlerFn};
pub use futures::future::BoxFuture;
pub use inventory;
pub use std::borrow::Cow;

/// A field's text as a key word; generated code names the field's type in it, so that a
/// type that is not a [`KeyWord`] is reported at the field's type.
pub fn key_word<T: KeyWord + ?Sized>(value: &T) -> Cow<'_, str> {
    value.key_word()
}

/// The routing key of an event whose key template is `template`, its placeholders filled
/// in order by `values`.
pub fn fill_key(
    template: &'static str,
    values: &[Cow<'_, str>],
) -> Result<Cow<'static, str>, KeyError> {
    crate::key_template::fill(template, values)
}

/// The key parameter `name` of `E`, whose field has type `T`.
pub const fn key_param<E, T: ?Sized>(name: &'static str) -> KeyParam<E, T> {
    KeyParam::new(name)
}

/// What `#[handler]` puts in the [`IsHandlerFn`] impl of its fn's hidden item.
pub const fn handler_fn(name: &'static str, module_path: &'static str) -> HandlerFn {
    HandlerFn::new(name, module_path)
}

/// Boxes a handler future (keeps generated code short).
pub fn boxed<F>(future: F) -> BoxFuture<'static, Result<Answer, HandlerError>>
where
    F: std::future::Future<Output = Result<Answer, HandlerError>> + Send + 'static,
{
    Box::pin(future)
}

/// Whether a handler's pattern can match its event's key, a `{placeholder}` of which
/// stands for any one word (always true for `RawEvent`, whose key is `None`);
/// `#[handler]` asserts it in a `const`.
pub const fn pattern_can_match(pattern: &str, key: Option<&str>) -> bool {
    match key {
        Some(key) => crate::pattern::matches_template(pattern, key),
        None => true,
    }
}

/// What the facade's prelude adds when the `testing` feature of `pubsub-core` is on: the
/// facade glob-imports this module, so that its prelude follows the feature however it
/// was turned on (the facade's `testing`, or `pubsub-core/testing` directly).
pub mod testing_prelude {
    #[cfg(feature = "testing")]
    pub use crate::testing::TestHarness;

    /// Stands in for the test harness without the `testing` feature, so that using it
    /// says what to enable instead of only "cannot find type".
    #[cfg(not(feature = "testing"))]
    #[deprecated(
        note = "`TestHarness` needs the `testing` feature of `pubsub`: in Cargo.toml, \
                `[dev-dependencies] pubsub = { version = \"..\", features = [\"testing\"] }`"
    )]
    #[derive(Debug)]
    pub struct TestHarness(());
}
