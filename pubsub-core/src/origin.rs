//! Where a handler was declared, for errors that point at it.

/// Where a handler was declared, so that an error about it (such as
/// [`Error::DuplicateHandler`](crate::Error::DuplicateHandler)) can point at the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HandlerOrigin {
    /// A `#[handler]` fn.
    Attribute {
        /// The module the fn is declared in.
        module_path: &'static str,
        /// The source file, as `file!()` names it.
        file: &'static str,
        /// The line of the fn's name.
        line: u32,
    },
    /// A [`Handler::typed`](crate::Handler::typed) or [`Handler::raw`](crate::Handler::raw) call.
    Runtime {
        /// The source file of the call, as `file!()` names it.
        file: &'static str,
        /// The line of the call.
        line: u32,
    },
}

impl HandlerOrigin {
    /// The source file.
    pub fn file(&self) -> &'static str {
        match *self {
            Self::Attribute { file, .. } | Self::Runtime { file, .. } => file,
        }
    }

    /// The line in [`file`](Self::file).
    pub fn line(&self) -> u32 {
        match *self {
            Self::Attribute { line, .. } | Self::Runtime { line, .. } => line,
        }
    }
}

impl HandlerOrigin {
    /// How to rename one of two handlers that share a name, for [`Error::DuplicateHandler`](crate::Error::DuplicateHandler).
    pub(crate) fn rename_hint(first: Self, second: Self) -> &'static str {
        let is_fn = |origin| matches!(origin, Self::Attribute { .. });
        match (is_fn(first), is_fn(second)) {
            (true, true) => "rename one with #[handler(name = \"...\")] on its fn",
            (false, false) => {
                "rename one: Handler::typed(\"other-name\", ..) or Handler::raw(\"other-name\", ..)"
            }
            _ => {
                "rename one: #[handler(name = \"...\")] on the fn, or Handler::typed(\"other-name\", ..) \
                 / Handler::raw(\"other-name\", ..) for the other"
            }
        }
    }

    #[track_caller]
    pub(crate) fn caller() -> Self {
        let location = std::panic::Location::caller();
        Self::Runtime {
            file: location.file(),
            line: location.line(),
        }
    }
}

impl std::fmt::Display for HandlerOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Attribute {
                module_path,
                file,
                line,
            } => write!(f, "the #[handler] fn in {module_path} ({file}:{line})"),
            Self::Runtime { file, line } => write!(f, "the Handler built at {file}:{line}"),
        }
    }
}
