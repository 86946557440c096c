//! [`HandlerError`]: why a handler failed, and how to classify other errors as one.

use std::fmt;

/// Why a handler failed. Any `std::error::Error` converts into it with `?`.
///
/// ```
/// use pubsub::HandlerError;
/// fn parse(s: &str) -> Result<u32, HandlerError> {
///     let n: u32 = s.parse()?; // ParseIntError -> HandlerError
///     if n == 0 {
///         return Err(HandlerError::permanent("zero is never valid")); // no retry
///     }
///     Ok(n)
/// }
/// assert!(parse("x").unwrap_err().is_retryable());
/// assert!(!parse("0").unwrap_err().is_retryable());
/// ```
pub struct HandlerError {
    kind: HandlerErrorKind,
    message: String,
}

/// The kind of a [`HandlerError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HandlerErrorKind {
    /// The handler returned an error; it is retried.
    Failed,
    /// The handler said retrying cannot help; dead-lettered at once.
    Permanent,
    /// The handler panicked; it is retried.
    Panicked,
    /// The handler ran past its timeout; it is retried.
    TimedOut,
    /// The payload could not be decoded for this handler (malformed body, wrong content
    /// type, unknown version); dead-lettered at once.
    Decode,
}

impl HandlerError {
    /// A failure that is worth retrying.
    pub fn new(message: impl Into<String>) -> Self {
        Self::with_kind(HandlerErrorKind::Failed, message)
    }

    /// A failure that retrying cannot fix: the message is dead-lettered without retries.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::with_kind(HandlerErrorKind::Permanent, message)
    }

    pub(crate) fn with_kind(kind: HandlerErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> HandlerErrorKind {
        self.kind
    }

    /// The human-readable reason.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the retry policy applies (false for permanent and decode failures).
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self.kind,
            HandlerErrorKind::Permanent | HandlerErrorKind::Decode
        )
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            HandlerErrorKind::Failed | HandlerErrorKind::Permanent => f.write_str(&self.message),
            HandlerErrorKind::Panicked => write!(f, "panicked: {}", self.message),
            HandlerErrorKind::TimedOut => write!(f, "timed out: {}", self.message),
            HandlerErrorKind::Decode => write!(f, "cannot decode: {}", self.message),
        }
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .finish()
    }
}

/// Any error converts into a retryable failure with `?`: a `std::error::Error`, an
/// `anyhow::Error` (or another report type that converts into a boxed error), a `String`,
/// a `&str`. The message is the error and its sources, each once
/// ([`Report`](crate::Report)).
///
/// ```
/// use pubsub::HandlerError;
/// let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
/// assert_eq!(HandlerError::from(io).message(), "no such file");
/// assert_eq!(HandlerError::from("out of stock").message(), "out of stock");
/// assert!(HandlerError::from(String::from("busy")).is_retryable());
/// ```
impl<E> From<E> for HandlerError
where
    E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
{
    fn from(error: E) -> Self {
        let error: Box<dyn std::error::Error + Send + Sync + 'static> = error.into();
        Self::new(crate::Report::new(&*error).to_string())
    }
}

/// Classifies any error as a handler failure — for error types that do not implement
/// `std::error::Error` (such as `anyhow::Error`), or to mark a failure as permanent.
///
/// ```
/// use pubsub::prelude::*;
///
/// fn lookup(id: &str) -> Result<u32, String> {
///     id.parse::<u32>().map_err(|_| format!("no customer {id}"))
/// }
///
/// fn handle(id: &str) -> Result<u32, HandlerError> {
///     let customer = lookup(id).permanent()?; // retrying cannot help: dead-letter now
///     Ok(customer)
/// }
/// let error = handle("x").unwrap_err();
/// assert_eq!(error.message(), "no customer x");
/// assert!(!error.is_retryable());
/// ```
pub trait HandlerResultExt<T> {
    /// A failure worth retrying.
    fn retryable(self) -> Result<T, HandlerError>;
    /// A failure that retrying cannot fix: dead-lettered without retries.
    fn permanent(self) -> Result<T, HandlerError>;
}

impl<T, E: fmt::Display> HandlerResultExt<T> for Result<T, E> {
    fn retryable(self) -> Result<T, HandlerError> {
        // `{:#}`: error types such as anyhow's print their whole chain this way
        self.map_err(|e| HandlerError::new(format!("{e:#}")))
    }

    fn permanent(self) -> Result<T, HandlerError> {
        self.map_err(|e| HandlerError::permanent(format!("{e:#}")))
    }
}
