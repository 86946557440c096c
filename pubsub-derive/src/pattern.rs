//! Syntax of routing keys and topic patterns, checked at expansion time.
//!
//! Handler patterns follow the rules of `pubsub_core::pattern` (same wording in the
//! messages): a proc-macro crate cannot depend on the runtime crate, so they are duplicated
//! here. Matching a pattern against an event's key is not duplicated: the generated code
//! calls core's `const fn`. An event's own key is stricter: see [`validate_word`].

/// Longest pattern or routing key, in bytes: AMQP sends them as a `shortstr`
/// (`pubsub_core::pattern::MAX_LEN`).
pub(crate) const MAX_LEN: usize = 255;

/// Checks a handler's topic pattern: at most 255 bytes of non-empty dot-separated words, each
/// `*` (exactly one word), `#` (zero or more words) or any text RabbitMQ takes (uppercase,
/// punctuation, non-ASCII) except, as likely mistakes, text containing `*` or `#` and ASCII
/// control characters.
pub(crate) fn validate_pattern(pattern: &str) -> Result<(), &'static str> {
    if pattern.is_empty() {
        return Err("it is empty");
    }
    if pattern.len() > MAX_LEN {
        return Err("it is longer than 255 bytes, the AMQP limit for routing keys and patterns");
    }
    for word in pattern.split('.') {
        if word.is_empty() {
            return Err("it has an empty word (leading, trailing or double dot)");
        }
        if word == "*" || word == "#" {
            continue;
        }
        if word.contains(['*', '#']) {
            return Err(
                "`*` and `#` are wildcards only as a whole word; a word that contains one is likely a mistake",
            );
        }
        if word.bytes().any(|b| b.is_ascii_control()) {
            return Err("it contains an ASCII control character (tab, newline, ...)");
        }
    }
    Ok(())
}

/// `pattern` quoted for an error message: whole, or only its start if it is over [`MAX_LEN`]
/// (the error's span shows the literal anyway).
pub(crate) fn quoted(pattern: &str) -> String {
    if pattern.len() <= MAX_LEN {
        return format!("{pattern:?}");
    }
    let start: String = pattern.chars().take(24).collect();
    format!("{start:?}... ({} bytes)", pattern.len())
}

/// Checks an event's routing key `domain.action` as a whole (each word is checked by
/// [`validate_word`]): at most 255 bytes.
pub(crate) fn validate_key(domain: &str, action: &str) -> Result<(), String> {
    let len = domain.len() + 1 + action.len();
    if len > MAX_LEN {
        return Err(format!(
            "the routing key `domain.action` is {len} bytes long, over the AMQP limit of {MAX_LEN} \
             bytes; shorten `domain` or `action`"
        ));
    }
    Ok(())
}

/// Checks one word of a routing key (an event's `domain` or `action`); `what` names it in
/// the message. Keys this crate's users define stay `[a-z0-9_-]`, stricter than patterns,
/// which also have to match keys that other publishers chose.
pub(crate) fn validate_word(word: &str, what: &str) -> Result<(), String> {
    if word.is_empty() {
        return Err(format!("`{what}` cannot be empty"));
    }
    if word.contains('.') {
        return Err(format!(
            "`{what}` is a single word and cannot contain `.`; the routing key is `domain.action`"
        ));
    }
    if word.contains(['*', '#']) {
        return Err(format!(
            "`{what}` cannot contain the wildcards `*` or `#`; they belong in handler patterns"
        ));
    }
    if let Some(bad) = word
        .chars()
        .find(|c| !c.is_ascii() || !is_word_byte(*c as u8))
    {
        let mut message = format!("`{what}` may only contain a-z, 0-9, `_` and `-`, found {bad:?}");
        if bad.is_ascii_uppercase() {
            message.push_str(&format!("; write {:?}", word.to_ascii_lowercase()));
        }
        return Err(message);
    }
    Ok(())
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        for good in ["order.*", "#", "a-b_c.9", "*.created", "a.#.c"] {
            assert_eq!(validate_pattern(good), Ok(()), "{good:?}");
        }
        for bad in [
            "", ".", "a.", ".a", "a..b", "a*", "a.#b", "**", "a\tb", "a.b\n",
        ] {
            assert!(validate_pattern(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn patterns_take_any_word_rabbitmq_takes() {
        for good in [
            "Order.Created",
            "ORDER.#",
            "заказ.*",
            "ü",
            "a+b.c",
            "a b.c",
            "v1:2/3@x.!$%&'()=?",
            "注文.作成",
        ] {
            assert_eq!(validate_pattern(good), Ok(()), "{good:?}");
        }
        for bad in ["a*", "order.cre*", "a.#b", "#b.created", "Ü*"] {
            assert!(
                validate_pattern(bad)
                    .unwrap_err()
                    .contains("likely a mistake"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn patterns_are_at_most_255_bytes() {
        for longest in ["a".repeat(255), ["b"; 128].join("."), "ü".repeat(127) + "a"] {
            assert_eq!(longest.len(), 255);
            assert_eq!(validate_pattern(&longest), Ok(()), "{longest:?}");
        }
        for too_long in [
            "a".repeat(256),
            "ü".repeat(128),
            ["#"; 128].join(".") + ".z",
        ] {
            assert!(
                validate_pattern(&too_long)
                    .unwrap_err()
                    .contains("longer than 255 bytes"),
                "{too_long:?}"
            );
        }
    }

    #[test]
    fn long_patterns_are_quoted_in_part() {
        assert_eq!(quoted("Order.*"), r#""Order.*""#);
        assert_eq!(quoted(&"a".repeat(255)), format!("{:?}", "a".repeat(255)));
        assert_eq!(
            quoted(&"ü".repeat(200)),
            format!("{:?}... (400 bytes)", "ü".repeat(24))
        );
    }

    #[test]
    fn event_keys_are_at_most_255_bytes() {
        assert_eq!(validate_key("order", "created"), Ok(()));
        assert_eq!(validate_key(&"d".repeat(127), &"a".repeat(127)), Ok(()));
        let error = validate_key(&"d".repeat(128), &"a".repeat(127)).unwrap_err();
        assert!(error.contains("256 bytes"), "{error}");
    }

    #[test]
    fn words() {
        assert!(validate_word("order", "domain").is_ok());
        assert!(validate_word("order-v2_x", "domain").is_ok());
        for bad in ["", "a.b", "*", "Order", "a b", "é"] {
            assert!(
                validate_word(bad, "domain").is_err(),
                "{bad:?} should be rejected"
            );
        }
        assert!(
            validate_word("Order", "domain")
                .unwrap_err()
                .contains("\"order\"")
        );
    }
}
