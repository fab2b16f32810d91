//! Errors by domain, and the one place that maps them to exit codes.

use crate::config::ConfigErrors;

/// Exit codes, as in DESIGN.md section 8.
pub mod exit {
    /// Success; for `plan`, the plan was computed.
    pub const OK: i32 = 0;
    /// Some target failed.
    pub const FAILED: i32 = 1;
    /// Usage, config or state error.
    pub const ERROR: i32 = 2;
    /// Nothing failed but some targets are blocked on missing inputs.
    pub const BLOCKED: i32 = 3;
    /// `plan --exit-code` / `diff --exit-code`: something is stale or invalidated.
    pub const STALE: i32 = 4;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(ConfigErrors),
    #[error("{0}")]
    Settings(String),
    #[error("{0}")]
    Usage(String),
    #[error("state: {0}")]
    Store(#[from] StoreError),
    #[error("probe: {0}")]
    Probe(#[from] ProbeError),
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Locked(String),
    /// An error in one of several inputs, e.g. the head side of a diff.
    #[error("{what}: {source}")]
    Within { what: String, source: Box<Error> },
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {message}")]
    Open { path: String, message: String },
    #[error(
        "{path}: schema version {found} is newer than this chronon-build understands (up to {known}); use a newer chronon-build"
    )]
    TooNew {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("{path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{table}: cannot list {path}: {message}")]
    Listing {
        table: String,
        path: String,
        message: String,
    },
    #[error("{table}: command {argv:?} failed: {message}")]
    Command {
        table: String,
        argv: Vec<String>,
        message: String,
    },
    #[error("{table}: command {argv:?} printed a bad line {line}: {message}")]
    BadLine {
        table: String,
        argv: Vec<String>,
        line: usize,
        message: String,
    },
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        exit::ERROR
    }
}
