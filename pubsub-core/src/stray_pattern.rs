//! A `RawEvent` handler's pattern that matches none of the event types linked into the
//! binary is most likely a typo (`ordr.*`): `build()` warns about it, naming the closest
//! known key, unless the handler expects foreign events.

use crate::event_registration::registered_events;
use crate::handler::Handler;
use crate::pattern::{Pattern, matches_template};

/// Warns about every raw handler of `handlers` whose pattern matches none of the event
/// keys the binary derives, unless it expects foreign events. Says nothing when the binary
/// derives no event at all (there is nothing to compare with).
pub(crate) fn warn_about_stray_patterns(service: &str, handlers: &[Handler]) {
    let keys: Vec<String> = registered_events()
        .iter()
        .map(|event| format!("{}.{}", event.domain, event.action))
        .collect();
    if keys.is_empty() {
        return;
    }
    for handler in handlers {
        if handler.decoder.is_some() || handler.foreign {
            continue;
        }
        if let Some(closest) = stray(&handler.pattern, &keys) {
            tracing::warn!(
                %service,
                handler = %handler.name,
                pattern = %handler.pattern,
                closest_key = %closest,
                origin = %handler.origin,
                "the handler's pattern matches none of the event types linked into this binary \
                 (a typo? the closest key is {closest:?}); if it is for events other services \
                 define, say so: #[handler(\"{}\", foreign)] or Handler::expects_foreign_events()",
                handler.pattern
            );
        }
    }
}

/// `None` if `pattern` matches one of `keys`; else the key closest to it.
fn stray<'k>(pattern: &str, keys: &'k [String]) -> Option<&'k str> {
    Pattern::new(pattern).ok()?;
    // a key template's placeholder stands for any one word
    if keys.iter().any(|key| matches_template(pattern, key)) {
        return None;
    }
    keys.iter()
        .min_by_key(|key| (distance(pattern, key), key.as_str()))
        .map(String::as_str)
}

/// How far `pattern` is from `key`, word by word: a wildcard word costs nothing, a literal
/// word its edit distance to the key's word in that place, and every word one has and the
/// other lacks its length (none after a `#`, which takes any number of words).
fn distance(pattern: &str, key: &str) -> usize {
    let pattern: Vec<&str> = pattern.split('.').collect();
    let key: Vec<&str> = key.split('.').collect();
    let mut cost = 0;
    for (i, word) in pattern.iter().enumerate() {
        match (*word, key.get(i)) {
            ("#", _) => return cost,
            ("*", _) => {}
            (word, Some(other)) => cost += edits(word, other),
            (word, None) => cost += word.len(),
        }
    }
    cost + key
        .iter()
        .skip(pattern.len())
        .map(|word| word.len())
        .sum::<usize>()
}

/// Levenshtein distance, by characters.
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<String> {
        [
            "order.created",
            "order.paid",
            "user.signed-up",
            "stock.reserved",
        ]
        .map(String::from)
        .into()
    }

    #[test]
    fn a_typo_names_the_closest_key() {
        assert_eq!(stray("ordr.*", &keys()), Some("order.created"));
        assert_eq!(stray("user.signed_up", &keys()), Some("user.signed-up"));
        assert_eq!(stray("stock.reservd", &keys()), Some("stock.reserved"));
    }

    #[test]
    fn a_placeholder_matches_any_word() {
        let keys = vec!["session.{session_id}.code_updated".to_owned()];
        for pattern in ["session.42.code_updated", "session.*.code_updated", "#"] {
            assert_eq!(stray(pattern, &keys), None, "{pattern}");
        }
        assert!(stray("session.42.code_update", &keys).is_some());
    }

    #[test]
    fn a_pattern_that_matches_a_key_is_no_stray() {
        for pattern in ["order.*", "#", "*.paid", "user.#", "stock.reserved"] {
            assert_eq!(stray(pattern, &keys()), None, "{pattern}");
        }
    }

    #[test]
    fn edits_count_characters() {
        assert_eq!(edits("ordr", "order"), 1);
        assert_eq!(edits("", "abc"), 3);
        assert_eq!(edits("kitten", "sitting"), 3);
        assert_eq!(edits("заказ", "заказы"), 1);
    }
}
