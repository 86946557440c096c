//! Routing-key templates such as `session.{session_id}.code_updated`: an event's type on the
//! wire, filled word by word from the event's fields into the key it is routed by.
//!
//! A template is dot-separated words, each a literal or one `{field}` placeholder; the
//! derive checks its shape at compile time. A placeholder stands for exactly one word, so a
//! value is refused at publish time ([`KeyError`]) if it is empty or holds `.`, `*`, `#` or
//! whitespace, or if the key grows past 255 bytes.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use crate::key_word::KeyWord;
use crate::pattern::MAX_LEN;

/// Why an event's routing key could not be made from its fields: nothing was published.
///
/// ```
/// use pubsub::prelude::*;
///
/// #[derive(Debug, Clone, Serialize, Deserialize, Event)]
/// #[event(key = "room.{room}.said")]
/// struct Said { room: String, text: String }
///
/// let error = Said { room: "a.b".into(), text: "hi".into() }.routing_key().unwrap_err();
/// assert_eq!((error.param, error.value.as_str()), ("room", "a.b"));
/// assert!(error.to_string().contains("room.{room}.said"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot route event {key_template}: key parameter `{param}` is {value:?}, which {reason}")]
#[non_exhaustive]
pub struct KeyError {
    /// The event's key template (its type on the wire), e.g. `session.{session_id}.code_updated`.
    pub key_template: &'static str,
    /// The parameter whose value was refused.
    pub param: &'static str,
    /// The value, as text.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// A key parameter of the event type `E`, whose field has type `T`: what
/// `#[derive(Event)]` generates, as an associated constant named after the field in
/// upper case, for each `{placeholder}` of the key (`CodeUpdated::SESSION_ID` for
/// `{session_id}`). Naming a parameter through it is checked by the compiler: a misspelled
/// one does not exist, and a value of another type is refused.
///
/// ```
/// use pubsub::prelude::*;
/// use pubsub::KeyParam;
///
/// #[derive(Debug, Clone, Serialize, Deserialize, Event)]
/// #[event(key = "session.{session_id}.code_updated")]
/// struct CodeUpdated { session_id: u64, delta: String }
///
/// let param: KeyParam<CodeUpdated, u64> = CodeUpdated::SESSION_ID;
/// assert_eq!(param.name(), "session_id");
/// assert_eq!(CodeUpdated::KEY_PARAMS, ["session_id"]);
/// ```
pub struct KeyParam<E, T: ?Sized> {
    name: &'static str,
    _event: PhantomData<fn() -> E>,
    _value: PhantomData<fn(&T)>,
}

impl<E, T: ?Sized> KeyParam<E, T> {
    /// What generated code builds (through `__private`).
    pub(crate) const fn new(name: &'static str) -> Self {
        Self {
            name,
            _event: PhantomData,
            _value: PhantomData,
        }
    }

    /// The parameter's name: the placeholder's, which is its field's.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<E, T: ?Sized> Clone for KeyParam<E, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E, T: ?Sized> Copy for KeyParam<E, T> {}

impl<E, T: ?Sized> fmt::Debug for KeyParam<E, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("KeyParam").field(&self.name).finish()
    }
}

/// A value for a [`KeyParam<E, T>`]: a `T` or a `&T`, and for a `String` parameter a `&str`
/// too, so that `.param(Said::ROOM, "lobby")` and `.param(CodeUpdated::SESSION_ID, 42)`
/// both read as they should (the literal `42` takes the parameter's type).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a value for a key parameter whose field is a `{T}`",
    label = "this key parameter's field is a `{T}`",
    note = "pass a `{T}` or a `&{T}` (for a `String` parameter, a `&str` too)"
)]
pub trait ParamValue<T: ?Sized> {
    /// The value's text, as it appears in the routing key.
    fn param_word(&self) -> Cow<'_, str>;
}

impl<T: KeyWord> ParamValue<T> for T {
    fn param_word(&self) -> Cow<'_, str> {
        self.key_word()
    }
}

impl ParamValue<String> for &str {
    fn param_word(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl<T: KeyWord> ParamValue<T> for &T {
    fn param_word(&self) -> Cow<'_, str> {
        (*self).key_word()
    }
}

/// The pattern of `template` with the placeholders named in `params` filled by their
/// values and the others `*`: what a subscription to some parameters binds
/// (`session.{session_id}.code_updated` with `session_id = 42`: `session.42.code_updated`).
/// A parameter given twice takes its last value.
pub(crate) fn narrow(
    template: &'static str,
    params: &[(&'static str, String)],
) -> Result<String, KeyError> {
    let mut pattern = String::with_capacity(template.len());
    for (i, word) in template.split('.').enumerate() {
        if i > 0 {
            pattern.push('.');
        }
        let Some(param) = placeholder(word) else {
            pattern.push_str(word);
            continue;
        };
        match params.iter().rev().find(|(name, _)| *name == param) {
            Some((_, value)) => {
                check_value(value).map_err(|reason| KeyError {
                    key_template: template,
                    param,
                    value: value.clone(),
                    reason,
                })?;
                pattern.push_str(value);
            }
            None => pattern.push('*'),
        }
    }
    if pattern.len() > MAX_LEN {
        let (param, value) = params.last().cloned().unwrap_or_default();
        return Err(KeyError {
            key_template: template,
            param,
            value,
            reason: "makes the key longer than 255 bytes, the AMQP limit",
        });
    }
    Ok(pattern)
}

/// The value of the first placeholder of `template` in `key`: the partition key of an
/// event with parameters on a super stream (all events of one entity in one partition).
pub(crate) fn first_param<'k>(template: &str, key: &'k str) -> Option<&'k str> {
    let name = template.split('.').find_map(placeholder)?;
    param_of(template, key, name)
}

/// The name of the placeholder `word` is (`{session_id}` → `session_id`), if it is one.
pub(crate) fn placeholder(word: &str) -> Option<&str> {
    word.strip_prefix('{')?.strip_suffix('}')
}

/// Why `value` cannot be one word of a routing key, if it cannot.
pub(crate) fn check_value(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("is empty and would drop a word of the key");
    }
    if value.contains('.') {
        return Err("contains `.` and would split into several words of the key");
    }
    if value.contains(['*', '#']) {
        return Err("contains a wildcard (`*` or `#`), which has no place in a key");
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or a control character");
    }
    Ok(())
}

/// The key of `template` with its placeholders filled, in order, by `values`; what the
/// generated `Event::routing_key` returns.
pub(crate) fn fill(
    template: &'static str,
    values: &[Cow<'_, str>],
) -> Result<Cow<'static, str>, KeyError> {
    let mut key = String::with_capacity(template.len());
    let mut values = values.iter();
    // the longest value, blamed if the key is too long
    let mut longest: Option<(&'static str, &str)> = None;
    for (i, word) in template.split('.').enumerate() {
        if i > 0 {
            key.push('.');
        }
        let Some(param) = placeholder(word) else {
            key.push_str(word);
            continue;
        };
        let value = values.next().map_or("", |v| v.as_ref());
        if let Err(reason) = check_value(value) {
            return Err(KeyError {
                key_template: template,
                param,
                value: value.to_owned(),
                reason,
            });
        }
        if longest.is_none_or(|(_, v)| v.len() < value.len()) {
            longest = Some((param, value));
        }
        key.push_str(value);
    }
    match longest {
        Some((param, value)) if key.len() > MAX_LEN => Err(KeyError {
            key_template: template,
            param,
            value: value.to_owned(),
            reason: "makes the key longer than 255 bytes, the AMQP limit",
        }),
        _ => Ok(Cow::Owned(key)),
    }
}

/// The word of `key` that the placeholder `{name}` of `template` stands for.
pub(crate) fn param_of<'k>(template: &str, key: &'k str, name: &str) -> Option<&'k str> {
    let index = template
        .split('.')
        .position(|word| placeholder(word) == Some(name))?;
    if template.split('.').count() != key.split('.').count() {
        return None;
    }
    key.split('.').nth(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = "session.{session_id}.code.{user}";

    fn filled(values: &[&str]) -> Result<Cow<'static, str>, KeyError> {
        let values: Vec<Cow<'_, str>> = values.iter().map(|v| Cow::Borrowed(*v)).collect();
        fill(TEMPLATE, &values)
    }

    #[test]
    fn placeholders_are_filled_in_order() {
        assert_eq!(filled(&["42", "ann"]).unwrap(), "session.42.code.ann");
    }

    #[test]
    fn values_that_change_the_keys_shape_are_refused() {
        for (bad, reason) in [
            ("", "empty"),
            ("a.b", "`.`"),
            ("a*", "wildcard"),
            ("#", "wildcard"),
            ("a b", "whitespace"),
            ("a\tb", "whitespace"),
            ("\u{a0}", "whitespace"),
        ] {
            let error = filled(&["42", bad]).unwrap_err();
            assert_eq!((error.param, error.value.as_str()), ("user", bad));
            assert!(error.reason.contains(reason), "{bad:?}: {error}");
            assert!(error.to_string().contains(TEMPLATE), "{error}");
        }
    }

    #[test]
    fn a_key_over_255_bytes_blames_the_longest_value() {
        let long = "u".repeat(255);
        let error = filled(&["42", &long]).unwrap_err();
        assert_eq!(error.param, "user");
        assert!(error.reason.contains("255 bytes"), "{error}");
        let longest_fitting = "u".repeat(255 - "session.42.code.".len());
        assert!(filled(&["42", &longest_fitting]).is_ok());
    }

    #[test]
    fn narrowing_fills_the_given_params_and_stars_the_rest() {
        let session = [("session_id", "42".to_owned())];
        assert_eq!(narrow(TEMPLATE, &session).unwrap(), "session.42.code.*");
        assert_eq!(narrow(TEMPLATE, &[]).unwrap(), "session.*.code.*");
        let both = [
            ("user", "ann".to_owned()),
            ("session_id", "1".to_owned()),
            ("session_id", "2".to_owned()),
        ];
        assert_eq!(narrow(TEMPLATE, &both).unwrap(), "session.2.code.ann");
        let error = narrow(TEMPLATE, &[("user", "a.b".to_owned())]).unwrap_err();
        assert_eq!((error.param, error.value.as_str()), ("user", "a.b"));
        let long = [("user", "u".repeat(250))];
        assert!(narrow(TEMPLATE, &long).unwrap_err().reason.contains("255"));
    }

    #[test]
    fn the_first_param_is_the_partition_key() {
        assert_eq!(first_param(TEMPLATE, "session.42.code.ann"), Some("42"));
        assert_eq!(first_param("order.created", "order.created"), None);
    }

    #[test]
    fn params_are_read_back_from_the_key() {
        let key = "session.42.code.ann";
        assert_eq!(param_of(TEMPLATE, key, "session_id"), Some("42"));
        assert_eq!(param_of(TEMPLATE, key, "user"), Some("ann"));
        assert_eq!(param_of(TEMPLATE, key, "code"), None);
        assert_eq!(param_of(TEMPLATE, "session.42", "session_id"), None);
    }
}
