//! Statuses and stale reasons: each explains itself in one line.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::hash::Hash;
use crate::partition::Day;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldChange {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
}

impl fmt::Display for FieldChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<Value>| v.as_ref().map_or("(unset)".to_string(), |v| v.to_string());
        write!(
            f,
            "{}: {} -> {}",
            self.path,
            show(&self.old),
            show(&self.new)
        )
    }
}

/// Why a target must run. Rendered one per line, like cargo's dirty reasons.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum StaleReason {
    NeverBuilt,
    ConfigChanged {
        fields: Vec<FieldChange>,
    },
    InputChanged {
        table: String,
        partition: Day,
        old: Hash,
        new: Hash,
    },
    InputAdded {
        table: String,
        partition: Day,
    },
    InputRemoved {
        table: String,
        partition: Day,
    },
    OutputMissing {
        table: String,
        partition: Day,
    },
    OutputModified {
        table: String,
        partition: Day,
        old: Hash,
        new: Hash,
    },
    PreviousRunFailed {
        run: i64,
    },
    Forced,
    /// Same config and inputs, but the key format (`KEY_VERSION`) changed.
    KeyVersionChanged,
    /// The key differs from the recorded one, and neither the slice nor an
    /// input partition names why (cargo's `DirtyReason::NothingObvious`).
    /// Also what a key change says until the state's documents name it.
    KeyChanged,
    /// The streaming status command says no job runs for the group-by.
    StreamingNotRunning,
    /// A streaming job runs, with another config hash than the current key.
    StreamingOutdated {
        running: String,
    },
}

impl fmt::Display for StaleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StaleReason::NeverBuilt => write!(f, "never-built"),
            StaleReason::ConfigChanged { fields } => {
                write!(f, "config-changed")?;
                for (i, field) in fields.iter().enumerate() {
                    write!(f, "{}{field}", if i == 0 { " " } else { ", " })?;
                }
                Ok(())
            }
            StaleReason::InputChanged {
                table,
                partition,
                old,
                new,
            } => {
                write!(f, "input-changed {table} ds={partition} ({old} -> {new})")
            }
            StaleReason::InputAdded { table, partition } => {
                write!(f, "input-added {table} ds={partition}")
            }
            StaleReason::InputRemoved { table, partition } => {
                write!(f, "input-removed {table} ds={partition}")
            }
            StaleReason::OutputMissing { table, partition } => {
                write!(f, "output-missing {table} ds={partition}")
            }
            StaleReason::OutputModified {
                table,
                partition,
                old,
                new,
            } => {
                write!(f, "output-modified {table} ds={partition} ({old} -> {new})")
            }
            StaleReason::PreviousRunFailed { run } => write!(f, "previous-run-failed (run {run})"),
            StaleReason::Forced => write!(f, "forced"),
            StaleReason::KeyVersionChanged => write!(f, "key-version-changed"),
            StaleReason::KeyChanged => write!(f, "key-changed"),
            StaleReason::StreamingNotRunning => write!(f, "streaming-not-running"),
            StaleReason::StreamingOutdated { running } => {
                write!(f, "streaming-outdated (running {running})")
            }
        }
    }
}

/// A partition that must exist before a target can run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Missing {
    /// The reading input's own name (`graph::Input::table`), shared.
    pub table: Arc<str>,
    pub partition: Day,
    /// The invalid config that writes the table (left out of the graph):
    /// blocked until that config is fixed, whatever the warehouse holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid_config: Option<String>,
}

/// What blocks a target: `missing TABLE ds=DAY`, or the invalid config
/// that writes the table.
impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.invalid_config {
            Some(config) => write!(f, "invalid config {config} (it writes {})", self.table),
            None => write!(f, "missing {} ds={}", self.table, self.partition),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Status {
    Fresh,
    Stale(Arc<StaleReason>),
    Blocked { input: Arc<Missing> },
    Waiting { upstream: Upstream },
}

/// The upstream target a waiting target waits on: its node's label, one
/// allocation shared by every target of that node and every target waiting
/// on them (never a name per target), and its day. Written `LABEL@DAY`
/// (`LABEL` when unpartitioned), in text and in JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct Upstream {
    pub node: Arc<str>,
    pub day: Option<Day>,
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.day {
            Some(day) => write!(f, "{}@{day}", self.node),
            None => write!(f, "{}", self.node),
        }
    }
}

impl Serialize for Upstream {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Status {
    pub fn kind(&self) -> StatusKind {
        match self {
            Status::Fresh => StatusKind::Fresh,
            Status::Stale(_) => StatusKind::Stale,
            Status::Blocked { .. } => StatusKind::Blocked,
            Status::Waiting { .. } => StatusKind::Waiting,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Fresh => write!(f, "fresh"),
            Status::Stale(reason) => write!(f, "stale: {reason}"),
            Status::Blocked { input } => write!(f, "blocked: {input}"),
            Status::Waiting { upstream } => write!(f, "waiting: {upstream}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StatusKind {
    Fresh,
    Stale,
    Blocked,
    Waiting,
}

impl StatusKind {
    pub const ALL: [StatusKind; 4] = [
        StatusKind::Fresh,
        StatusKind::Stale,
        StatusKind::Blocked,
        StatusKind::Waiting,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StatusKind::Fresh => "fresh",
            StatusKind::Stale => "stale",
            StatusKind::Blocked => "blocked",
            StatusKind::Waiting => "waiting",
        }
    }
}
