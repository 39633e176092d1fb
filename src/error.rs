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
    /// The store's configuration failed validation when it was opened; the
    /// [`ConfigError`] is kept whole so its field can still be named by the caller.
    #[error("invalid input: {0}")]
    InvalidConfig(ConfigError),
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
    /// An existing table or index was made with other settings than the configured ones.
    /// `field` and `remedy` name configuration fields, which the CLI shows as its flags.
    #[error("{existing} has {found} but {field} is {configured}; {remedy}")]
    Mismatch {
        existing: String,
        found: String,
        field: String,
        configured: String,
        remedy: String,
    },
}

impl StoreError {
    pub fn class(&self) -> ErrorClass {
        match self {
            StoreError::Dimension { .. }
            | StoreError::NonFinite { .. }
            | StoreError::InvalidInput(_)
            | StoreError::InvalidConfig(_) => ErrorClass::Rejected,
            StoreError::Unreachable { .. } => ErrorClass::Connection,
            StoreError::Timeout { .. } => ErrorClass::Timeout,
            StoreError::Auth { .. }
            | StoreError::Backend { .. }
            | StoreError::Conflict(_)
            | StoreError::Mismatch { .. } => ErrorClass::Backend,
            StoreError::BadResponse { .. } => ErrorClass::BadResponse,
        }
    }

    /// True when the backend could not be reached at all ([`Exit::Unreachable`]).
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

/// Errors in configuration, input files and command usage ([`Exit::Usage`]).
#[derive(Debug, Clone, Error)]
pub enum ConfigError {
    /// `field` names the setting: a configuration field (see [`crate::config::field`]),
    /// a scenario key such as `load.rate`, or a name the caller passed in. The binary
    /// replaces configuration fields by the flags that set them
    /// ([`ConfigError::rename_fields`]).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// Like [`ConfigError::Invalid`], for a message about one value of the field (a path
    /// or an address), written after the field's name.
    #[error("{field} {value}: {message}")]
    Value {
        field: String,
        value: String,
        message: String,
    },
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
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// An error about `value` of `field`, e.g. the address `serve.listen` could not bind.
    pub fn value(
        field: impl Into<String>,
        value: impl std::fmt::Display,
        message: impl Into<String>,
    ) -> Self {
        ConfigError::Value {
            field: field.into(),
            value: value.to_string(),
            message: message.into(),
        }
    }

    pub fn file(path: impl AsRef<std::path::Path>, message: impl std::fmt::Display) -> Self {
        ConfigError::File {
            path: path.as_ref().display().to_string(),
            message: message.to_string(),
        }
    }

    /// The setting the error is about, when it names one.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { field, .. } | ConfigError::Value { field, .. } => Some(field),
            ConfigError::File { .. } | ConfigError::Line { .. } => None,
        }
    }

    /// Replaces the field's name by `name(field)` where that gives one: the binary names
    /// the flag or variable that sets a configuration field; other names stay.
    pub fn rename_fields(self, name: impl Fn(&str) -> Option<String>) -> Self {
        match self {
            ConfigError::Invalid { field, message } => ConfigError::Invalid {
                field: name(&field).unwrap_or(field),
                message: name_in(&message, &name),
            },
            ConfigError::Value {
                field,
                value,
                message,
            } => ConfigError::Value {
                field: name(&field).unwrap_or(field),
                value,
                message,
            },
            other => other,
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

    /// The process exit code this error ends a command with.
    pub fn exit_code(&self) -> Exit {
        match self {
            Error::Config(_) => Exit::Usage,
            Error::Store(e) if e.is_unreachable() => Exit::Unreachable,
            Error::Unreachable(_) => Exit::Unreachable,
            Error::Store(
                StoreError::Dimension { .. }
                | StoreError::NonFinite { .. }
                | StoreError::InvalidInput(_)
                | StoreError::InvalidConfig(_)
                | StoreError::Conflict(_)
                | StoreError::Mismatch { .. },
            ) => Exit::Usage,
            Error::Store(_) | Error::Io { .. } | Error::Failed(_) => Exit::Failure,
        }
    }

    /// [`ConfigError::rename_fields`] on the configuration error inside, wherever it is
    /// kept whole (a config error, or a store's config refused when it was opened).
    pub fn rename_fields(self, name: impl Fn(&str) -> Option<String>) -> Self {
        match self {
            Error::Config(c) => Error::Config(c.rename_fields(name)),
            Error::Store(StoreError::InvalidConfig(c)) => {
                Error::Store(StoreError::InvalidConfig(c.rename_fields(name)))
            }
            Error::Store(StoreError::Mismatch {
                existing,
                found,
                field,
                configured,
                remedy,
            }) => Error::Store(StoreError::Mismatch {
                existing,
                found,
                field: name(&field).unwrap_or(field),
                configured,
                remedy: name_in(&remedy, &name),
            }),
            other => other,
        }
    }
}

/// `text` with each configuration field in backticks replaced by `name`'s flag (other
/// backticked words are kept as they are).
fn name_in(text: &str, name: &impl Fn(&str) -> Option<String>) -> String {
    let mut parts = text.split('`');
    let mut out = parts.next().unwrap_or_default().to_string();
    for (i, part) in parts.enumerate() {
        // Odd parts were inside backticks.
        if i % 2 == 0 {
            out.push_str(&name(part).unwrap_or_else(|| format!("`{part}`")));
        } else {
            out.push_str(part);
        }
    }
    out
}

/// How a command ends, as a process exit code. Every code the binary returns is here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exit {
    /// 0: done; the gate passed; the stores are consistent.
    Pass = 0,
    /// 1: the command ran and found a failure (a failed gate or drill, an inconsistency,
    /// a regression, a non-empty outbox), or a step of it failed.
    Failure = 1,
    /// 2: a usage, configuration or input error; nothing was judged.
    Usage = 2,
    /// 3: a backend store or a service the command needs could not be reached, or
    /// refused the credentials.
    Unreachable = 3,
    /// 4: the gate could not decide (a criterion had no data); never a pass.
    Inconclusive = 4,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }

    /// [`Exit::Failure`] when `failed`, else [`Exit::Pass`].
    pub fn failure_if(failed: bool) -> Exit {
        if failed { Exit::Failure } else { Exit::Pass }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e.code())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(f: &str) -> Option<String> {
        match f {
            "dimension" => Some("--vector-dimension".into()),
            "pg.table" => Some("--pg-table".into()),
            "drill.allow_remote" => Some("--allow-remote".into()),
            _ => None,
        }
    }

    #[test]
    fn the_cli_names_its_flags_where_the_library_names_fields() {
        let e = Error::from(StoreError::Mismatch {
            existing: "pgvector table t".into(),
            found: "column embedding vector(3)".into(),
            field: "dimension".into(),
            configured: "4".into(),
            remedy: "drop the table or choose another `pg.table`".into(),
        });
        assert_eq!(
            e.rename_fields(flags).to_string(),
            "pgvector table t has column embedding vector(3) but --vector-dimension is 4; \
             drop the table or choose another --pg-table"
        );
        let e = Error::from(ConfigError::invalid(
            "drill.target",
            "plain http; pass `drill.allow_remote` to send it anyway; see `status`",
        ));
        assert_eq!(
            e.rename_fields(flags).to_string(),
            "drill.target: plain http; pass --allow-remote to send it anyway; see `status`"
        );
    }
}
