//! What `diff` returns: the config changes, the invalidated targets with
//! their reasons and estimates, serving changes and the totals. The JSON
//! format is these types serialized (schema: `schemas/diff.schema.json`).

use serde::Serialize;
use serde_json::Value;

use crate::config::Config;
use crate::graph::Step;
use crate::hash::FieldClass;
use crate::partition::{Day, DayRange};

#[derive(Debug, Serialize)]
pub struct ConfigRef {
    pub kind: &'static str,
    pub name: String,
    pub path: String,
}

impl ConfigRef {
    pub(super) fn of(config: &Config) -> ConfigRef {
        ConfigRef {
            kind: config.kind.label(),
            name: config.name.clone(),
            path: config.path.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Rename {
    pub kind: &'static str,
    pub from: String,
    pub to: String,
    pub from_path: String,
    pub to_path: String,
}

#[derive(Debug, Serialize)]
pub struct FieldDiff {
    pub path: String,
    pub class: FieldClass,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

#[derive(Debug, Serialize)]
pub struct Modified {
    pub kind: &'static str,
    pub name: String,
    pub path: String,
    /// The classes of the changed fields, most consequential first.
    pub classes: Vec<FieldClass>,
    pub fields: Vec<FieldDiff>,
}

#[derive(Debug, Default, Serialize)]
pub struct ConfigChanges {
    pub added: Vec<ConfigRef>,
    pub removed: Vec<ConfigRef>,
    pub renamed: Vec<Rename>,
    pub modified: Vec<Modified>,
}

impl ConfigChanges {
    pub fn count(&self) -> usize {
        self.added.len() + self.removed.len() + self.renamed.len() + self.modified.len()
    }
}

/// Why a target's key changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Reason {
    /// The target did not exist on the base side: a new or renamed config, a
    /// config newly online or newly scheduled.
    New,
    /// A field this step hashes changed.
    ConfigChanged,
    /// The step reads other tables than before.
    InputsChanged,
    /// A cutoff moved: the days whose input ranges changed.
    InputRangesChanged,
    /// The schedule starts earlier: partitions wanted for the first time.
    NewlyWanted,
    /// Reads an invalidated partition of this target.
    Upstream { target: String },
}

impl Reason {
    pub fn text(&self) -> String {
        match self {
            Reason::New => "new target".into(),
            Reason::ConfigChanged => "config changed".into(),
            Reason::InputsChanged => "reads other tables".into(),
            Reason::InputRangesChanged => "input ranges changed (cutoff)".into(),
            Reason::NewlyWanted => "start moved earlier".into(),
            Reason::Upstream { target } => format!("upstream {target}"),
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Basis {
    /// The median of this step and config (and join part).
    Config,
    /// The median of this step across configs: this config has no history.
    Step,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Estimate {
    pub seconds: f64,
    pub per_partition_seconds: f64,
    pub basis: Basis,
}

/// The targets of one node whose keys change.
#[derive(Debug, Serialize)]
pub struct Invalidated {
    pub step: Step,
    pub config: String,
    pub part: Option<String>,
    pub label: String,
    pub reasons: Vec<Reason>,
    /// False for the one target of an unpartitioned step (a deploy).
    pub partitioned: bool,
    /// `None` when the count is unknown: no start date, no state.
    pub partitions: Option<usize>,
    pub ranges: Vec<DayRange>,
    pub estimate: Option<Estimate>,
}

#[derive(Debug, Serialize)]
pub struct ServingChange {
    pub kind: &'static str,
    pub name: String,
    pub path: String,
    /// The config was online before under the same name: what it serves
    /// changes under a name (and version) that stays the same.
    pub in_place: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct Totals {
    pub configs_changed: usize,
    /// (step, config[, part]) entries with invalidated targets.
    pub targets: usize,
    pub partitions: usize,
    /// Entries whose partitions cannot be counted: no start date, no state.
    pub uncounted: usize,
    /// Unpartitioned targets to run again (streaming deploys).
    pub redeploys: usize,
    /// Sum of the estimates; `None` without run history.
    pub job_seconds: Option<f64>,
    /// Entries with no estimate.
    pub unestimated: usize,
    pub online_group_bys_changing_serving: usize,
    pub online_joins_changing_serving: usize,
    pub in_place_online_changes: usize,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub base: String,
    pub head: String,
    pub until: Day,
    pub from: Option<Day>,
    /// Whether counts come from a state file (built partitions only).
    pub with_state: bool,
    pub headline: String,
    pub totals: Totals,
    pub configs: ConfigChanges,
    pub targets: Vec<Invalidated>,
    /// Online configs whose metadata upload runs again (any edit does it).
    pub metadata_uploads: Vec<String>,
    pub serving: Vec<ServingChange>,
    pub notes: Vec<String>,
}

impl Report {
    /// Whether anything must be recomputed or redeployed.
    pub fn invalidates(&self) -> bool {
        !self.targets.is_empty()
    }
}
