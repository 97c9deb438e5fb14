//! Policy errors, all shaped `FILE:LINE: message` so an operator can jump straight to the problem.

use std::fmt;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read at all.
    #[error("{}: cannot read policy file: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The file was read but is not a valid policy.
    #[error("{}", Located { path: path.as_ref(), line: *line, message })]
    Invalid {
        /// `None` when parsed from a string rather than loaded from a file.
        path: Option<PathBuf>,
        /// 1-based line; `None` only when the TOML parser could not locate its error.
        line: Option<usize>,
        message: String,
    },
    /// Several independent problems (two or more `Invalid`), in the order of their lines.
    #[error("{}", join_lines(.0))]
    Several(Vec<PolicyError>),
}

fn join_lines(errors: &[PolicyError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl PolicyError {
    /// An error about the text starting at byte `offset` of `src`.
    pub(crate) fn at(src: &str, offset: usize, message: impl Into<String>) -> Self {
        PolicyError::Invalid {
            path: None,
            line: Some(line_of(src, offset)),
            message: message.into(),
        }
    }

    /// One error for everything found: `None` when nothing was, the error itself when one
    /// was, [`PolicyError::Several`] in line order otherwise.
    pub(crate) fn all(mut errors: Vec<PolicyError>) -> Option<Self> {
        if errors.len() > 1 {
            errors.sort_by_key(|e| e.line());
            return Some(PolicyError::Several(errors));
        }
        errors.pop()
    }

    /// Attaches the file name once the caller knows it.
    pub(crate) fn with_path(self, p: PathBuf) -> Self {
        match self {
            PolicyError::Invalid { line, message, .. } => PolicyError::Invalid {
                path: Some(p),
                line,
                message,
            },
            PolicyError::Several(errors) => {
                PolicyError::Several(errors.into_iter().map(|e| e.with_path(p.clone())).collect())
            }
            other => other,
        }
    }

    /// The 1-based line the error is about (the first one's, for several), if any.
    pub fn line(&self) -> Option<usize> {
        match self {
            PolicyError::Invalid { line, .. } => *line,
            PolicyError::Read { .. } => None,
            PolicyError::Several(errors) => errors.first().and_then(PolicyError::line),
        }
    }

    /// Each problem on its own: the errors of [`PolicyError::Several`], else this one.
    pub fn each(&self) -> &[PolicyError] {
        match self {
            PolicyError::Several(errors) => errors,
            one => std::slice::from_ref(one),
        }
    }
}

/// 1-based line number of byte `offset` in `src`.
pub(crate) fn line_of(src: &str, offset: usize) -> usize {
    let end = offset.min(src.len());
    src.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

struct Located<'a> {
    path: Option<&'a PathBuf>,
    line: Option<usize>,
    message: &'a str,
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.path, self.line) {
            (Some(p), Some(l)) => write!(f, "{}:{l}: {}", p.display(), self.message),
            (Some(p), None) => write!(f, "{}: {}", p.display(), self.message),
            (None, Some(l)) => write!(f, "line {l}: {}", self.message),
            (None, None) => f.write_str(self.message),
        }
    }
}
