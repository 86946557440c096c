//! Syntax of routing keys and topic patterns, checked at expansion time.
//!
//! These are the rules of `pubsub_core::pattern` (same wording in the messages): a proc-macro
//! crate cannot depend on the runtime crate, so they are duplicated here. Matching a pattern
//! against an event's key is not duplicated: the generated code calls core's `const fn`.

/// Checks a handler's topic pattern: non-empty dot-separated words of `[a-z0-9_-]`, or `*`
/// (exactly one word), or `#` (zero or more words).
pub(crate) fn validate_pattern(pattern: &str) -> Result<(), &'static str> {
    if pattern.is_empty() {
        return Err("it is empty");
    }
    for word in pattern.split('.') {
        if word.is_empty() {
            return Err("it has an empty word (leading, trailing or double dot)");
        }
        if word == "*" || word == "#" {
            continue;
        }
        if word.contains(['*', '#']) {
            return Err("`*` and `#` must stand alone as a whole word");
        }
        if !word.bytes().all(is_word_byte) {
            return Err("words may only contain a-z, 0-9, `_` and `-`");
        }
    }
    Ok(())
}

/// Checks one word of a routing key (an event's `domain` or `action`); `what` names it in
/// the message.
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
        for bad in ["", ".", "a.", ".a", "a..b", "a*", "a.#b", "A.b", "a b", "ü"] {
            assert!(validate_pattern(bad).is_err(), "{bad:?} should be rejected");
        }
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
