//! Dead-letter reasons, bounded: a reason travels in a header, and a header over the
//! broker's frame size makes the dead-letter publish fail, so the message would come back
//! forever.

/// Most bytes of one handler's failure in a reason.
pub(crate) const PER_HANDLER: usize = 1024;
/// Most bytes of a whole reason.
pub(crate) const TOTAL: usize = 4096;
/// Ends a text that was cut.
pub(crate) const MARKER: &str = "…[truncated]";

/// `text` cut to at most `limit` bytes (marker included) on a character boundary.
pub(crate) fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut end = limit.saturating_sub(MARKER.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MARKER}", &text[..end])
}

/// The reason for handlers that failed: each failure bounded, then the whole.
pub(crate) fn combine<'a>(failures: impl IntoIterator<Item = (&'a str, u32, String)>) -> String {
    let parts: Vec<String> = failures
        .into_iter()
        .map(|(handler, attempts, error)| {
            truncate(
                &format!("handler `{handler}` failed after {attempts} attempt(s): {error}"),
                PER_HANDLER,
            )
        })
        .collect();
    truncate(&parts.join("; "), TOTAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_texts_are_kept() {
        assert_eq!(truncate("boom", 10), "boom");
    }

    #[test]
    fn long_texts_are_cut_on_a_char_boundary_with_a_marker() {
        let long = "é".repeat(2000); // 4000 bytes
        let cut = truncate(&long, PER_HANDLER);
        assert!(cut.len() <= PER_HANDLER, "{}", cut.len());
        assert!(cut.ends_with(MARKER));
    }

    #[test]
    fn a_combined_reason_is_bounded_per_handler_and_in_total() {
        let huge = "x".repeat(1 << 20);
        let failures = (0..10).map(|i| (["a", "b"][i % 2], 3, huge.clone()));
        let reason = combine(failures);
        assert!(reason.len() <= TOTAL, "{}", reason.len());
        assert!(reason.starts_with("handler `a` failed after 3 attempt(s): xxx"));
        assert!(reason.ends_with(MARKER));
        let two = combine([("a", 1, huge.clone()), ("b", 2, "short".to_owned())]);
        assert!(
            two.contains("handler `b` failed after 2 attempt(s): short"),
            "{two}"
        );
    }
}
