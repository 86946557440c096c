//! Topic patterns with AMQP topic-exchange semantics.
//!
//! A key is dot-separated words (`order.created`). In a pattern, `*` stands for exactly one
//! word and `#` for zero or more. The functions here are `const` so that the `#[handler]`
//! macro can check, at compile time, that a typed handler's pattern can match its event.

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
/// ```
/// use pubsub_core::Pattern;
/// let p = Pattern::new("order.*").unwrap();
/// assert!(p.matches("order.created"));
/// assert!(!p.matches("order.created.v2"));
/// assert!(Pattern::new("order.cre*").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pattern(String);

impl Pattern {
    /// Validates `pattern`: non-empty dot-separated words of `[a-z0-9_-]`, or `*`, or `#`.
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
    /// so it is safe on untrusted keys (the `const` [`matches`] backtracks, which is fine at
    /// compile time only). To match one key against many patterns, use a
    /// [`Router`](crate::Router).
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

/// Checks pattern syntax; the error is a human-readable reason.
pub const fn validate_pattern(pattern: &str) -> Result<(), &'static str> {
    validate(pattern.as_bytes(), true)
}

/// Checks key syntax (like a pattern, but without wildcards).
pub const fn validate_key(key: &str) -> Result<(), &'static str> {
    validate(key.as_bytes(), false)
}

const fn validate(b: &[u8], wildcards: bool) -> Result<(), &'static str> {
    if b.is_empty() {
        return Err("it is empty");
    }
    let mut i = 0;
    let mut word_start = 0;
    while i <= b.len() {
        if i == b.len() || b[i] == b'.' {
            let len = i - word_start;
            if len == 0 {
                return Err("it has an empty word (leading, trailing or double dot)");
            }
            if len == 1 && (b[word_start] == b'*' || b[word_start] == b'#') && !wildcards {
                return Err("a key cannot contain wildcards");
            }
            word_start = i + 1;
        } else {
            let c = b[i];
            let plain = c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-';
            if c == b'*' || c == b'#' {
                if !wildcards {
                    return Err("a key cannot contain wildcards");
                }
                let alone = (i == word_start) && (i + 1 == b.len() || b[i + 1] == b'.');
                if !alone {
                    return Err("`*` and `#` must stand alone as a whole word");
                }
            } else if !plain {
                return Err("words may only contain a-z, 0-9, `_` and `-`");
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
    match_at(pattern.as_bytes(), 0, key.as_bytes(), start)
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

/// Positions are word starts; a position past `len` means "every word consumed".
const fn match_at(p: &[u8], pi: usize, k: &[u8], ki: usize) -> bool {
    if pi > p.len() {
        return ki > k.len();
    }
    let pe = word_end(p, pi);
    if pe - pi == 1 && p[pi] == b'#' {
        if match_at(p, pe + 1, k, ki) {
            return true;
        }
        if ki > k.len() {
            return false;
        }
        return match_at(p, pi, k, word_end(k, ki) + 1);
    }
    if ki > k.len() {
        return false;
    }
    let ke = word_end(k, ki);
    let star = pe - pi == 1 && p[pi] == b'*';
    if star || word_eq(p, pi, pe, k, ki, ke) {
        match_at(p, pe + 1, k, ke + 1)
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
        for bad in ["", ".", "a.", ".a", "a..b", "a*", "a.#b", "A.b", "a b", "ü"] {
            assert!(validate_pattern(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(validate_key("order.*").is_err());
        assert!(validate_key("order.created").is_ok());
    }

    #[test]
    fn runtime_matching_is_polynomial_on_hostile_input() {
        let pattern = Pattern::new(["#"; 12].join(".") + ".z").unwrap();
        let key = ["a"; 200].join(".");
        assert!(!pattern.matches(&key));
        assert!(pattern.matches(&(key + ".z")));
    }

    const _: () = assert!(matches("order.*", "order.created"));
}
