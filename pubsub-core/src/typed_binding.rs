//! What a typed handler with a pattern of its own binds: the keys of its event type that the
//! pattern matches, as one pattern.
//!
//! `#[handler("session.42.code_updated")]` on an event whose key is
//! `session.{session_id}.code_updated` binds `session.42.code_updated`; `"#"` or
//! `"session.#"` bind the event's own pattern, `session.*.code_updated`. A typed handler
//! never binds more than its event's pattern, so it receives no key of another type.

use crate::key_template::check_value;

/// The pattern that matches the keys of `event_pattern` (an event's
/// [`PATTERN`](crate::Event::PATTERN): literal words and `*` for placeholders) that
/// `pattern` matches; `None` if it matches none of them.
///
/// Where a `#` lets the pattern's words fall on the event's words in several ways that put
/// different words in one place (`#.7.#` on `a.*.*`), that place binds `*`.
pub(crate) fn typed_binding(pattern: &str, event_pattern: &str) -> Option<String> {
    let p: Vec<&str> = pattern.split('.').collect();
    let t: Vec<&str> = event_pattern.split('.').collect();
    let (m, n) = (p.len(), t.len());
    let fits_at = |i: usize, j: usize| j < n && fits(p[i], t[j]);
    // ahead[i][j]: p[..i] can stand for t[..j]; behind[i][j]: p[i..] for t[j..]
    let mut ahead = vec![vec![false; n + 1]; m + 1];
    ahead[0][0] = true;
    for i in 0..m {
        for j in 0..=n {
            if !ahead[i][j] {
                continue;
            }
            if p[i] == "#" {
                ahead[i + 1][j..].iter_mut().for_each(|cell| *cell = true);
            } else if fits_at(i, j) {
                ahead[i + 1][j + 1] = true;
            }
        }
    }
    let mut behind = vec![vec![false; n + 1]; m + 1];
    behind[m][n] = true;
    for i in (0..m).rev() {
        for j in (0..=n).rev() {
            behind[i][j] = if p[i] == "#" {
                behind[i + 1][j] || (j < n && behind[i][j + 1])
            } else {
                fits_at(i, j) && behind[i + 1][j + 1]
            };
        }
    }
    if !behind[0][0] {
        return None;
    }
    let words = (0..n).map(|j| {
        let mut seen: Option<&str> = None;
        let mut differ = false;
        for i in 0..m {
            let here = if p[i] == "#" {
                // the `#` covers t[j] in some alignment
                (0..=j).any(|a| ahead[i][a]) && (j + 1..=n).any(|b| behind[i + 1][b])
            } else {
                ahead[i][j] && fits_at(i, j) && behind[i + 1][j + 1]
            };
            if here {
                let word = if matches!(p[i], "#" | "*") {
                    t[j]
                } else {
                    p[i]
                };
                match seen {
                    None => seen = Some(word),
                    Some(first) => differ |= first != word,
                }
            }
        }
        if differ { "*" } else { seen.unwrap_or(t[j]) }
    });
    Some(words.collect::<Vec<_>>().join("."))
}

/// Whether the pattern word `p` can stand where the event pattern has `t`.
fn fits(p: &str, t: &str) -> bool {
    match (p, t) {
        ("*", _) => true,
        (p, "*") => check_value(p).is_ok(),
        (p, t) => p == t,
    }
}

#[cfg(test)]
mod tests {
    use super::typed_binding;

    const SESSION: &str = "session.*.code_updated";

    #[test]
    fn a_pattern_narrows_the_events_pattern() {
        for (pattern, want) in [
            ("session.42.code_updated", Some("session.42.code_updated")),
            ("session.*.code_updated", Some(SESSION)),
            ("#", Some(SESSION)),
            ("session.#", Some(SESSION)),
            ("#.#", Some(SESSION)),
            ("*.42.#", Some("session.42.code_updated")),
            ("#.42.code_updated", Some("session.42.code_updated")),
            ("session.42", None),
            ("session.a b.code_updated", None),
            ("other.#", None),
        ] {
            assert_eq!(
                typed_binding(pattern, SESSION).as_deref(),
                want,
                "{pattern}"
            );
        }
    }

    #[test]
    fn an_event_without_parameters_binds_its_key() {
        assert_eq!(
            typed_binding("order.*", "order.created").as_deref(),
            Some("order.created")
        );
        assert_eq!(
            typed_binding("#", "order.created").as_deref(),
            Some("order.created")
        );
    }

    #[test]
    fn an_ambiguous_place_binds_a_wildcard() {
        assert_eq!(typed_binding("#.7.#", "a.*.*").as_deref(), Some("a.*.*"));
        assert_eq!(typed_binding("a.7.#", "a.*.*").as_deref(), Some("a.7.*"));
    }
}
