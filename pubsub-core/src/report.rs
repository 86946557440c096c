//! [`Report`]: an error with its chain of sources on one line, each level once.

use std::error::Error as StdError;
use std::fmt;

/// Shows an error and every [`source`](StdError::source) below it on one line, joined
/// by `: `. Each error of this crate and of the transports says only its own part, and
/// keeps the cause as its source: `{}` alone is the top of the story, a `Report` the
/// whole of it. The bus logs errors this way; use it (or `{:#}` under `anyhow`) where you
/// print one. A level that does repeat its source's text (some libraries' errors do) is
/// not written twice.
///
/// ```
/// use pubsub::Report;
/// use pubsub::transport::TransportError;
///
/// let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset");
/// let error = TransportError::Unavailable {
///     message: "publishing failed".into(),
///     source: Some(std::sync::Arc::new(io)),
/// };
/// assert_eq!(error.to_string(), "connection unavailable: publishing failed");
/// assert_eq!(
///     Report::new(&error).to_string(),
///     "connection unavailable: publishing failed: connection reset"
/// );
/// ```
#[derive(Clone, Copy)]
pub struct Report<'a>(&'a (dyn StdError + 'static));

impl<'a> Report<'a> {
    /// The report of `error` and its sources.
    pub fn new(error: &'a (dyn StdError + 'static)) -> Self {
        Self(error)
    }

    /// The text of each level, top first, leaving out a level whose text is the end of
    /// the one above it (that level already said it).
    fn levels(&self) -> Vec<String> {
        let mut levels = vec![self.0.to_string()];
        let mut source = self.0.source();
        while let Some(error) = source {
            let text = error.to_string();
            if !text.is_empty() && levels.last().is_none_or(|above| !above.ends_with(&text)) {
                levels.push(text);
            }
            source = error.source();
        }
        levels
    }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.levels().join(": "))
    }
}

/// The error, then `Caused by:` and one source per line (what `main` prints when it
/// returns the error).
impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let levels = self.levels();
        f.write_str(&levels[0])?;
        if levels.len() > 1 {
            f.write_str("\n\nCaused by:")?;
            for level in &levels[1..] {
                write!(f, "\n    {level}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Report;
    use std::fmt;

    #[derive(Debug)]
    struct Level(&'static str, Option<Box<Level>>);

    impl fmt::Display for Level {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Level {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn each_level_once_even_when_a_level_repeats_its_source() {
        let leaf = Level("refused", None);
        let repeating = Level("connect: refused", Some(Box::new(leaf)));
        let top = Level("transport", Some(Box::new(repeating)));
        assert_eq!(Report::new(&top).to_string(), "transport: connect: refused");
    }
}
