//! Topic patterns with AMQP topic-exchange semantics.
//!
//! A key is dot-separated words (`order.created`). In a pattern, `*` stands for exactly one
//! word and `#` for zero or more. The functions here are `const` so that the `#[handler]`
//! macro can check, at compile time, that a typed handler's pattern can match its event.
//!
//! # Syntax
//!
//! A word is any non-empty text without `.`, as on RabbitMQ's topic exchange: lowercase and
//! uppercase letters, digits, punctuation, spaces and non-ASCII (UTF-8) text are all words
//! (`Order.Created`, `заказ.*`, `a+b.c`). Patterns and keys are 1 to [`MAX_LEN`] (255) bytes,
//! the AMQP limit. Rejected although RabbitMQ would take them, as likely mistakes:
//!
//! - an empty word: a leading, trailing or double dot (`.a`, `a.`, `a..b`);
//! - a word that contains `*` or `#` without being one (`order.cre*`, `a.#b`): wildcards
//!   are whole words only, there is no prefix or suffix matching;
//! - ASCII control characters (tab, newline, NUL, ...) anywhere.
//!
//! A key is checked the same way, except that it contains no `*` or `#` at all.

use std::fmt;

/// Why a pattern or key is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pattern {pattern:?}: {reason}")]
pub struct PatternError {
    /// The text that was rejected.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// A validated topic pattern such as `order.*` or `#.failed`.
///
/// Words are any non-empty text without `.` (see the [module docs](self#syntax)), so a
/// pattern can match keys that other publishers chose, uppercase or not ASCII.
///
/// ```
/// use pubsub_core::pattern::Pattern;
/// let p = Pattern::new("order.*").unwrap();
/// assert!(p.matches("order.created"));
/// assert!(!p.matches("order.created.v2"));
/// assert!(Pattern::new("Order.Created").unwrap().matches("Order.Created"));
/// assert!(Pattern::new("заказ.*").unwrap().matches("заказ.создан"));
/// // `*` and `#` are wildcards only as whole words
/// assert!(Pattern::new("order.cre*").is_err());
/// assert!(Pattern::new("a".repeat(256)).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pattern(String);

impl Pattern {
    /// Validates `pattern` with [`validate_pattern`]: at most 255 bytes of non-empty
    /// dot-separated words, each `*`, `#` or text without `*`, `#` or ASCII control characters.
    pub fn new(pattern: impl Into<String>) -> Result<Self, PatternError> {
        let pattern = pattern.into();
        match validate_pattern(&pattern) {
            Ok(()) => Ok(Self(pattern)),
            Err(reason) => Err(PatternError { pattern, reason }),
        }
    }

    /// The pattern text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `key` matches under AMQP topic rules. Runs in O(pattern words × key words),
    /// so it is safe on untrusted keys (the `const` [`matches()`] backtracks, which is fine at
    /// compile time only). The bus matches a key against all its handlers' patterns at
    /// once, in a trie whose cost does not grow with the number of patterns.
    pub fn matches(&self, key: &str) -> bool {
        let pattern: Vec<&str> = self.0.split('.').collect();
        // as RabbitMQ splits it: no words in the empty key
        let key: Vec<&str> = if key.is_empty() {
            Vec::new()
        } else {
            key.split('.').collect()
        };
        // rest[j]: whether the pattern words after the current one match key[j..]
        let mut rest = vec![false; key.len() + 1];
        rest[key.len()] = true;
        for word in pattern.iter().rev() {
            let mut here = vec![false; key.len() + 1];
            for j in (0..=key.len()).rev() {
                let has_word = j < key.len();
                here[j] = match *word {
                    "#" => rest[j] || (has_word && here[j + 1]),
                    "*" => has_word && rest[j + 1],
                    literal => has_word && key[j] == literal && rest[j + 1],
                };
            }
            rest = here;
        }
        rest[0]
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Pattern {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// Longest pattern or key, in bytes: AMQP sends routing and binding keys as a `shortstr`.
pub const MAX_LEN: usize = 255;

/// Checks pattern syntax; the error is a human-readable reason.
///
/// Accepted: 1 to [`MAX_LEN`] bytes of dot-separated words, each `*` (one word), `#` (zero or
/// more) or any other non-empty text without `.`: uppercase, digits, punctuation, spaces and
/// non-ASCII are fine, as on RabbitMQ. Rejected as likely mistakes, although RabbitMQ would
/// take them: empty words, words that contain `*` or `#` without being one (`order.cre*`),
/// and ASCII control characters.
///
/// ```
/// use pubsub_core::pattern::validate_pattern;
/// assert!(validate_pattern("Order.*").is_ok());
/// assert!(validate_pattern("a.#b").is_err());
/// ```
pub const fn validate_pattern(pattern: &str) -> Result<(), &'static str> {
    validate(pattern.as_bytes(), true)
}

/// Checks key syntax: like a pattern, but without `*` or `#` anywhere.
///
/// The bus does not apply it to incoming messages: they are routed whatever their key (only
/// an empty one is dead-lettered), and a key's words simply have to equal a pattern's.
pub const fn validate_key(key: &str) -> Result<(), &'static str> {
    validate(key.as_bytes(), false)
}

const fn validate(b: &[u8], wildcards: bool) -> Result<(), &'static str> {
    if b.is_empty() {
        return Err("it is empty");
    }
    if b.len() > MAX_LEN {
        return Err("it is longer than 255 bytes, the AMQP limit for routing keys and patterns");
    }
    let mut i = 0;
    let mut word_start = 0;
    while i <= b.len() {
        if i == b.len() || b[i] == b'.' {
            if i == word_start {
                return Err("it has an empty word (leading, trailing or double dot)");
            }
            word_start = i + 1;
        } else {
            let c = b[i];
            if c == b'*' || c == b'#' {
                if !wildcards {
                    return Err("a key cannot contain the wildcards `*` or `#`");
                }
                let alone = (i == word_start) && (i + 1 == b.len() || b[i + 1] == b'.');
                if !alone {
                    return Err(
                        "`*` and `#` are wildcards only as a whole word; a word that contains one is likely a mistake",
                    );
                }
            } else if c.is_ascii_control() {
                return Err("it contains an ASCII control character (tab, newline, ...)");
            }
        }
        i += 1;
    }
    Ok(())
}

/// Whether `key` matches `pattern` under AMQP topic rules. Usable in `const` items.
///
/// ```
/// use pubsub_core::pattern::matches;
/// assert!(matches("#", "order.created"));
/// assert!(matches("order.#", "order"));
/// assert!(matches("*.created", "user.created"));
/// assert!(!matches("*", "order.created"));
/// ```
pub const fn matches(pattern: &str, key: &str) -> bool {
    // As in RabbitMQ, the empty key has no words (only `#` matches it), while `a..b` has
    // three, the middle one empty. Position `len + 1` means "every word consumed".
    let start = if key.is_empty() { 1 } else { 0 };
    match_at(pattern.as_bytes(), 0, key.as_bytes(), start, false)
}

/// Whether `pattern` can match some key of the key template `template`
/// (`session.{session_id}.code_updated`), each `{placeholder}` of which stands for any one
/// word a key parameter may be (no whitespace). Usable in `const` items: `#[handler]`
/// checks a typed handler's pattern against its event's key with it.
///
/// ```
/// use pubsub_core::pattern::matches_template;
/// let template = "session.{session_id}.code_updated";
/// assert!(matches_template("session.42.code_updated", template));
/// assert!(matches_template("session.*.code_updated", template));
/// assert!(matches_template("session.#", template));
/// assert!(!matches_template("session.42", template));
/// assert!(!matches_template("session.42.7.code_updated", template));
/// ```
pub const fn matches_template(pattern: &str, template: &str) -> bool {
    let start = if template.is_empty() { 1 } else { 0 };
    match_at(pattern.as_bytes(), 0, template.as_bytes(), start, true)
}

/// Whether the key word `k[start..end]` is a `{placeholder}`.
const fn is_placeholder(k: &[u8], start: usize, end: usize) -> bool {
    end - start >= 2 && k[start] == b'{' && k[end - 1] == b'}'
}

/// Whether the pattern word `p[start..end]` is a value a key parameter may take.
const fn is_param_value(p: &[u8], start: usize, end: usize) -> bool {
    let mut i = start;
    while i < end {
        if p[i].is_ascii_whitespace() || p[i].is_ascii_control() {
            return false;
        }
        i += 1;
    }
    end > start
}

/// End (exclusive) of the word starting at `start`.
const fn word_end(b: &[u8], start: usize) -> usize {
    let mut i = start;
    while i < b.len() && b[i] != b'.' {
        i += 1;
    }
    i
}

const fn word_eq(
    a: &[u8],
    a_start: usize,
    a_end: usize,
    b: &[u8],
    b_start: usize,
    b_end: usize,
) -> bool {
    if a_end - a_start != b_end - b_start {
        return false;
    }
    let mut i = 0;
    while i < a_end - a_start {
        if a[a_start + i] != b[b_start + i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Positions are word starts; a position past `len` means "every word consumed". With
/// `templated`, a `{placeholder}` word of `k` matches any word a key parameter may be.
const fn match_at(p: &[u8], pi: usize, k: &[u8], ki: usize, templated: bool) -> bool {
    if pi > p.len() {
        return ki > k.len();
    }
    let pe = word_end(p, pi);
    if pe - pi == 1 && p[pi] == b'#' {
        if match_at(p, pe + 1, k, ki, templated) {
            return true;
        }
        if ki > k.len() {
            return false;
        }
        return match_at(p, pi, k, word_end(k, ki) + 1, templated);
    }
    if ki > k.len() {
        return false;
    }
    let ke = word_end(k, ki);
    let star = pe - pi == 1 && p[pi] == b'*';
    let any = templated && is_placeholder(k, ki, ke) && is_param_value(p, pi, pe);
    if star || any || word_eq(p, pi, pe, k, ki, ke) {
        match_at(p, pe + 1, k, ke + 1, templated)
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amqp_topic_examples() {
        let cases = [
            ("order.*", "order.created", true),
            ("order.*", "order", false),
            ("order.*", "order.created.v2", false),
            ("order.#", "order", true),
            ("order.#", "order.created.v2", true),
            ("#", "a.b.c", true),
            ("#.c", "c", true),
            ("#.c", "a.b.c", true),
            ("a.#.c", "a.c", true),
            ("a.#.c", "a.b.b.c", true),
            ("a.#.c", "a.b.b.d", false),
            ("*.*", "a.b", true),
            ("*.*", "a", false),
            ("#.#", "a", true),
            ("*.#", "a", true),
            ("order.created", "order.created", true),
            ("order.created", "order.create", false),
            // checked against RabbitMQ 4.0.5: the empty key has zero words
            ("#", "", true),
            ("#.#", "", true),
            ("*", "", false),
            ("*.#", "", false),
            ("#.*", "", false),
            // ... and `a..b` three, `.` two empty ones
            ("*.#", "a..b", true),
            ("#.*", ".", true),
            ("*", ".", false),
        ];
        for (p, k, want) in cases {
            assert_eq!(matches(p, k), want, "{p} vs {k}");
            assert_eq!(
                Pattern::new(p).unwrap().matches(k),
                want,
                "Pattern {p} vs {k}"
            );
        }
    }

    #[test]
    fn syntax() {
        assert!(validate_pattern("order.*").is_ok());
        assert!(validate_pattern("#").is_ok());
        assert!(validate_pattern("a-b_c.9").is_ok());
        for bad in [
            "", ".", "a.", ".a", "a..b", "a*", "a.#b", "*a", "a.**", "##",
        ] {
            assert!(validate_pattern(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(validate_key("order.*").is_err());
        assert!(validate_key("order.created").is_ok());
    }

    #[test]
    fn words_are_whatever_rabbitmq_takes() {
        let good = [
            "Order.Created",
            "ORDER.#",
            "заказ.*",
            "ü",
            "a+b.c",
            "a b.c",
            "v1:2/3@x.!$%&'()=?",
            "*.Bestellung.#",
            "注文.作成",
        ];
        for p in good {
            assert_eq!(validate_pattern(p), Ok(()), "{p:?}");
            assert!(Pattern::new(p).is_ok(), "{p:?}");
        }
        for key in ["Order.Created", "заказ.создан", "a+b.c", "a b"] {
            assert_eq!(validate_key(key), Ok(()), "{key:?}");
        }
        assert!(Pattern::new("Order.*").unwrap().matches("Order.Created"));
        assert!(!Pattern::new("Order.*").unwrap().matches("order.created"));
        assert!(Pattern::new("заказ.*").unwrap().matches("заказ.создан"));
        assert!(matches("заказ.*", "заказ.создан"));
        assert!(matches("a+b.#", "a+b.c.D"));
    }

    #[test]
    fn wildcards_inside_words_are_rejected_as_mistakes() {
        for bad in ["a*", "order.cre*", "a.#b", "#b.created", "Ü*"] {
            let error = Pattern::new(bad).unwrap_err();
            assert!(
                error.reason.contains("likely a mistake"),
                "{bad:?}: {error}"
            );
        }
        for bad in ["a*", "a.#b", "order.*", "#"] {
            assert!(
                validate_key(bad).unwrap_err().contains("wildcards"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn control_characters_are_rejected() {
        for bad in ["a\tb", "a.b\n", "\0", "a\u{7f}", "a.\r.b"] {
            assert!(
                validate_pattern(bad).unwrap_err().contains("control"),
                "{bad:?}"
            );
            assert!(
                validate_key(bad).unwrap_err().contains("control"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn at_most_255_bytes() {
        assert_eq!(MAX_LEN, 255);
        // bytes count, dots included, not chars
        let longest = [
            "a".repeat(255),
            ["b"; 128].join("."),
            "ü".repeat(127) + "a",
            ["#"; 127].join(".") + ".z",
        ];
        for pattern in &longest {
            assert_eq!(pattern.len(), 255);
            assert!(Pattern::new(pattern.as_str()).is_ok(), "{pattern:?}");
        }
        assert!(validate_key(&longest[0]).is_ok());
        assert!(validate_key(&longest[2]).is_ok());

        let too_long = [
            "a".repeat(256),
            ["b"; 128].join(".") + ".*",
            "ü".repeat(128),
            longest[0].clone() + ".#",
        ];
        for pattern in &too_long {
            assert!(pattern.len() > 255);
            let error = Pattern::new(pattern.as_str()).unwrap_err();
            assert!(error.reason.contains("longer than 255 bytes"), "{error}");
            assert_eq!(validate_pattern(pattern), Err(error.reason));
            assert_eq!(validate_key(pattern), Err(error.reason));
        }
    }

    #[test]
    fn runtime_matching_is_polynomial_on_hostile_input() {
        let pattern = Pattern::new(["#"; 12].join(".") + ".z").unwrap();
        let key = ["a"; 200].join(".");
        assert!(!pattern.matches(&key));
        assert!(pattern.matches(&(key + ".z")));
    }

    #[test]
    fn a_placeholder_is_one_word() {
        let t = "session.{session_id}.code_updated";
        for (pattern, want) in [
            ("session.42.code_updated", true),
            ("session.*.code_updated", true),
            ("*.*.*", true),
            ("#.code_updated", true),
            ("session.#", true),
            ("#", true),
            ("session.code_updated", false),
            ("session.42.7.code_updated", false),
            ("session.42.other", false),
            ("session.a b.code_updated", false),
            ("other.*.code_updated", false),
        ] {
            assert_eq!(matches_template(pattern, t), want, "{pattern}");
        }
        // without placeholders, as `matches`
        assert!(matches_template("order.*", "order.created"));
        assert!(!matches_template("order.paid", "order.created"));
    }

    const _: () = assert!(matches("order.*", "order.created"));
    const _: () = assert!(matches("Заказ.*", "Заказ.Создан"));
    const _: () = assert!(validate_pattern("Order.#").is_ok());
}
