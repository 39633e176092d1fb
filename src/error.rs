//! Typed errors. Store errors carry an [`ErrorClass`] so a failed query is counted by
//! class in reports instead of aborting a run. No variant ever holds a credential:
//! connection strings are redacted before they are formatted (see [`crate::config::redact_url`]).

use thiserror::Error;

/// How a failed operation is counted in reports and metrics.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    Timeout,
    Connection,
    /// The backend answered with an HTTP or SQL error.
    Backend,
    /// The backend answered 2xx but the body could not be understood.
    BadResponse,
    /// The request was invalid (dimension, NaN, k); the caller's fault, not the backend's.
    Rejected,
    /// Never sent: the generator could not start it within `max_lag` of its intended
    /// time (this side's in-flight limit was full, or the scheduler itself was late).
    /// Counted against availability, because a caller would not have been served.
    Dropped,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 6] = [
        ErrorClass::Timeout,
        ErrorClass::Connection,
        ErrorClass::Backend,
        ErrorClass::BadResponse,
        ErrorClass::Rejected,
        ErrorClass::Dropped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Timeout => "timeout",
            ErrorClass::Connection => "connection",
            ErrorClass::Backend => "backend",
            ErrorClass::BadResponse => "bad_response",
            ErrorClass::Rejected => "rejected",
            ErrorClass::Dropped => "dropped",
        }
    }
}

#[derive(Debug, Clone, Error)]
pub enum StoreError {
    #[error("vector has dimension {got}, expected {expected}")]
    Dimension { expected: usize, got: usize },
    #[error("vector component {position} is NaN or infinite")]
    NonFinite { position: usize },
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("{backend}: cannot connect to {target}: {detail}")]
    Unreachable {
        backend: &'static str,
        target: String,
        detail: String,
    },
    #[error("{backend}: authentication failed for {target}")]
    Auth {
        backend: &'static str,
        target: String,
    },
    #[error("{backend}: timed out: {detail}")]
    Timeout {
        backend: &'static str,
        detail: String,
    },
    #[error("{backend}: {detail}")]
    Backend {
        backend: &'static str,
        detail: String,
    },
    #[error("{backend}: unexpected response: {detail}")]
    BadResponse {
        backend: &'static str,
        detail: String,
    },
    #[error("{0}")]
    Conflict(String),
}

impl StoreError {
    pub fn class(&self) -> ErrorClass {
        match self {
            StoreError::Dimension { .. }
            | StoreError::NonFinite { .. }
            | StoreError::InvalidInput(_) => ErrorClass::Rejected,
            StoreError::Unreachable { .. } => ErrorClass::Connection,
            StoreError::Timeout { .. } => ErrorClass::Timeout,
            StoreError::Auth { .. } | StoreError::Backend { .. } | StoreError::Conflict(_) => {
                ErrorClass::Backend
            }
            StoreError::BadResponse { .. } => ErrorClass::BadResponse,
        }
    }

    /// True when the backend could not be reached at all (exit code 3).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            StoreError::Unreachable { .. } | StoreError::Auth { .. }
        )
    }

    pub fn bad_response(backend: &'static str, detail: impl std::fmt::Display) -> Self {
        StoreError::BadResponse {
            backend,
            detail: detail.to_string(),
        }
    }

    pub fn backend(backend: &'static str, detail: impl std::fmt::Display) -> Self {
        StoreError::Backend {
            backend,
            detail: detail.to_string(),
        }
    }
}

/// Errors in configuration, input files and command usage (exit code 2).
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{flag}: {message}")]
    Invalid { flag: String, message: String },
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("{path}:{line}: {message}")]
    Line {
        path: String,
        line: usize,
        message: String,
    },
}

impl ConfigError {
    pub fn invalid(flag: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            flag: flag.into(),
            message: message.into(),
        }
    }

    pub fn file(path: impl AsRef<std::path::Path>, message: impl std::fmt::Display) -> Self {
        ConfigError::File {
            path: path.as_ref().display().to_string(),
            message: message.to_string(),
        }
    }
}

/// Top-level library error; `main` maps it to an exit code.
#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file or socket operation failed; `context` says which and on what.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A step failed with an error of its own module (a report not written, a drill
    /// step refused, a fault not injected); the typed error is kept as the source.
    #[error("{0}")]
    Failed(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A service the command needs did not answer (not a backend store).
    #[error("{0}")]
    Unreachable(String),
}

impl Error {
    /// Wraps a module's own error, keeping it as the source.
    pub fn failed(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Failed(Box::new(e))
    }

    /// An I/O error with what was being done, e.g. `"{path}: cannot write"`.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// 0 pass, 1 failure (validation/gate), 2 usage or input, 3 backend unreachable.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) => 2,
            Error::Store(e) if e.is_unreachable() => 3,
            Error::Unreachable(_) => 3,
            Error::Store(
                StoreError::Dimension { .. }
                | StoreError::NonFinite { .. }
                | StoreError::InvalidInput(_)
                | StoreError::Conflict(_),
            ) => 2,
            Error::Store(_) | Error::Io { .. } | Error::Failed(_) => 1,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
