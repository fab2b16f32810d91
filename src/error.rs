//! Errors by domain, and the one place that maps them to exit codes.

use crate::config::ConfigErrors;
use crate::probe::ProbeError;
use crate::settings::SettingsError;
use crate::store::StoreError;
use crate::warehouse::WarehouseError;

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
    Warehouse(#[from] WarehouseError),
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Locked(String),
    /// The state went away during a run (a database server down for
    /// good): the run stopped; what ran meanwhile is redone next time.
    #[error("state: {0}")]
    StateLost(String),
    /// An error in one of several inputs, e.g. the head side of a diff.
    #[error("{what}: {source}")]
    Within { what: String, source: Box<Error> },
}

/// How a command ended. `Exit::code` and `Error::code` are the one map
/// to exit codes (DESIGN.md section 8); commands return outcomes, never
/// numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Success; for `plan` and `run -n`, nothing in the work is blocked.
    Ok,
    /// Some target failed; a `diff` policy failed; invalid configs were set
    /// apart.
    Failed,
    /// A usage, config or state problem reported as a result, not raised:
    /// `validate` found invalid configs, `--metrics-file` could not be
    /// written.
    Invalid,
    /// Nothing failed, but some targets are blocked on missing inputs:
    /// `run` left them, or `plan` and `run -n` list them (a plan exits as
    /// its run would).
    Blocked,
    /// `--exit-code`: something is stale, blocked, waiting, failed or
    /// invalidated.
    Attention,
    /// `run` was interrupted (Ctrl-C) before it finished.
    Interrupted,
    /// `run` was stopped by SIGTERM: its jobs were stopped too.
    Terminated,
    /// `run` was stopped by SIGHUP: its jobs were stopped too.
    HungUp,
    /// `compute`: the job held more memory than its bound allows
    /// (`[bounds] memory`); nothing more was written.
    OverMemory,
    /// `compute`: the job ran longer than its bound allows (`[bounds]
    /// time`); nothing more was written.
    OverTime,
}

impl Exit {
    pub fn code(self) -> i32 {
        match self {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::Invalid => 2,
            Exit::Blocked => 3,
            Exit::Attention => 4,
            // 128 + SIGINT, as shells report an interrupted command.
            Exit::Interrupted => 130,
            // 128 + the signal, likewise.
            Exit::Terminated => 143,
            Exit::HungUp => 129,
            Exit::OverMemory => 5,
            Exit::OverTime => 6,
        }
    }
}

impl Error {
    /// A usage, config, settings or state error: nothing was written (2);
    /// a state lost during a run: the run failed (1).
    pub fn code(&self) -> i32 {
        match self {
            Error::StateLost(_) => Exit::Failed.code(),
            _ => Exit::Invalid.code(),
        }
    }
}

impl From<SettingsError> for Error {
    fn from(e: SettingsError) -> Error {
        Error::Settings(e.0)
    }
}
