//! [`KeyWord`]: a value that can fill a `{placeholder}` of an event's routing key.

use std::borrow::Cow;

use uuid::Uuid;

/// A value that can be one word of a routing key: the type of a field that a key template
/// such as `#[event(key = "session.{session_id}.code_updated")]` names.
///
/// The word is the value's text. Integers, `bool`, `char`, strings and [`Uuid`] are words;
/// a string is checked when the event is published (a value that is empty or holds `.`,
/// `*`, `#` or whitespace would change the key's shape, and is refused with
/// [`KeyError`](crate::KeyError)). Implement it for an id type of your own by returning
/// its text:
///
/// ```
/// use std::borrow::Cow;
/// use pubsub::KeyWord;
///
/// struct RoomId(u32);
///
/// impl KeyWord for RoomId {
///     fn key_word(&self) -> Cow<'_, str> {
///         Cow::Owned(format!("room-{}", self.0))
///     }
/// }
///
/// assert_eq!(RoomId(7).key_word(), "room-7");
/// assert_eq!(42u64.key_word(), "42");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a routing-key word",
    label = "named by a `{{placeholder}}` of the event's key",
    note = "a key parameter's field is one word of the routing key: `KeyWord` is implemented for \
            integers, bool, char, String, &str, Cow<str> and Uuid; implement it for your own id type"
)]
pub trait KeyWord {
    /// The value's text, as it appears in the routing key.
    fn key_word(&self) -> Cow<'_, str>;
}

macro_rules! display_words {
    ($($ty:ty),* $(,)?) => {$(
        impl KeyWord for $ty {
            fn key_word(&self) -> Cow<'_, str> {
                Cow::Owned(self.to_string())
            }
        }
    )*};
}

display_words!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, bool, char, Uuid
);

impl KeyWord for str {
    fn key_word(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl KeyWord for String {
    fn key_word(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl KeyWord for Cow<'_, str> {
    fn key_word(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl<T: KeyWord + ?Sized> KeyWord for &T {
    fn key_word(&self) -> Cow<'_, str> {
        (**self).key_word()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_the_values_text() {
        assert_eq!((-3i8).key_word(), "-3");
        assert_eq!(true.key_word(), "true");
        assert_eq!('x'.key_word(), "x");
        assert_eq!("a-b".key_word(), "a-b");
        assert_eq!(String::from("s").key_word(), "s");
        assert_eq!(Cow::Borrowed("c").key_word(), "c");
        assert_eq!((&&7u16).key_word(), "7");
        let id = Uuid::from_u128(1);
        assert_eq!(id.key_word(), id.to_string());
    }
}
