//! A job: the command that builds contiguous targets of one node, what it
//! records, where its log goes, and how its outputs are found.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::Action;
use crate::config::Repo;
use crate::error::Error;
use crate::exec::{self, CommandLine};
use crate::graph::{Graph, Node, NodeId};
use crate::hash::Hash;
use crate::partition::{Day, DayRange};
use crate::plan::BuildRecord;
use crate::plan::live::LivePlan;
use crate::probe::{Partitions, Probe};
use crate::settings::Settings;
use crate::store::{Recorded, day_column};

/// The sequence number of a record the run holds before its write: a
/// write's number is known when it commits, and the run's plan never reads
/// it (an adoption's writer thread numbers its own writes likewise).
const NOT_WRITTEN: i64 = 0;

pub(super) struct Job {
    pub node: NodeId,
    /// Indices into the node's planned targets, in day order.
    pub targets: Vec<usize>,
    pub range: Option<DayRange>,
    pub records: Vec<BuildRecord>,
    pub command: CommandLine,
    pub attempt: u32,
}

/// A job's process.
pub(super) struct Running {
    pub pid: u32,
    pub started: Instant,
    pub deadline: Option<Instant>,
    /// Whether `deadline` is a local job's time bound (and not
    /// `--timeout`).
    pub bounded: bool,
    /// When the job was sent SIGTERM (its timeout, or a stop signal to the
    /// run), and when SIGKILL follows.
    pub terminated: Option<Instant>,
    pub kill_at: Option<Instant>,
    pub started_at: i64,
    pub log: PathBuf,
}

impl Job {
    /// `<logs>/run-N/<step>/<name>[__<part>]/<from>_<to>.attemptK.log`.
    pub fn log_path(&self, graph: &Graph, log_dir: &Path, run_id: i64) -> PathBuf {
        let node = &graph.nodes[self.node];
        let mut name = safe_name(&node.name);
        if let Some(part) = &node.part {
            name.push_str("__");
            name.push_str(&safe_name(part));
        }
        // File names stop at 255 bytes: a long name keeps its head and a
        // hash of the whole.
        const MAX_NAME: usize = 160;
        if name.len() > MAX_NAME {
            let hash = Hash::of(name.as_bytes()).hex();
            name = format!("{}-{}", &name[..MAX_NAME - 17], &hash[..16]);
        }
        let range = match self.range {
            Some(r) => format!("{}_{}", r.from, r.to),
            None => "all".into(),
        };
        log_dir
            .join(format!("run-{run_id}"))
            .join(node.step.name())
            .join(name)
            .join(format!("{range}.attempt{}.log", self.attempt))
    }

    /// The job's targets as recorded (by target index), and those whose
    /// outputs are missing. Their write's sequence number is not known yet
    /// (`NOT_WRITTEN`: the write waits for its group commit); the live plan
    /// never reads it.
    pub fn recorded(
        &self,
        live: &LivePlan<'_>,
        records: &[BuildRecord],
        outputs: &[Option<Hash>],
    ) -> (Vec<(usize, Recorded)>, Vec<usize>) {
        let by_day: HashMap<i64, usize> = self
            .targets
            .iter()
            .map(|&i| (day_column(live.target(self.node, i).day), i))
            .collect();
        let mut recorded = Vec::new();
        let mut missing = Vec::new();
        for (record, output) in records.iter().zip(outputs) {
            let Some(&i) = by_day.get(&day_column(record.day)) else {
                continue;
            };
            match output {
                Some(output) => recorded.push((
                    i,
                    Recorded {
                        key: record.key,
                        slice: record.slice,
                        inputs: record.inputs_hash,
                        output: *output,
                        seq: NOT_WRITTEN,
                    },
                )),
                None => missing.push(i),
            }
        }
        (recorded, missing)
    }

    /// Nothing is known of a dry run's outputs: assume they changed.
    pub fn dry_run_outputs(&self) -> Vec<Option<Hash>> {
        self.records
            .iter()
            .map(|r| Some(Hash::of(format!("dry-run {}", r.key).as_bytes())))
            .collect()
    }
}

/// Probes the output partitions of what a job of `node` records: per
/// record, its fingerprint, or `None` when the partition is missing. Steps
/// whose output cannot be probed record their key.
pub(super) fn probe_outputs(
    node: &Node,
    records: &[BuildRecord],
    probe: &dyn Probe,
) -> Result<Vec<Option<Hash>>, Error> {
    let listed = match node.probed_table() {
        Some(table) => {
            let days: Vec<Day> = records.iter().filter_map(|r| r.day).collect();
            Some(probe.list_days(table, &days)?)
        }
        None => None,
    };
    Ok(outputs(records, listed.as_ref()))
}

/// Per record, its output's fingerprint in `listed` (the node's probed
/// output table, listed), or its key when the node has none.
pub(super) fn outputs(records: &[BuildRecord], listed: Option<&Partitions>) -> Vec<Option<Hash>> {
    records
        .iter()
        .map(|r| match listed {
            Some(listed) => r.day.and_then(|d| listed.get(&d).copied()),
            None => Some(r.key),
        })
        .collect()
}

/// What building these targets of a node records (those whose key is
/// known), from the inputs as they are now.
pub(super) fn records(
    live: &LivePlan,
    graph: &Graph,
    id: NodeId,
    targets: &[usize],
    slice_json: &Arc<str>,
) -> Vec<BuildRecord> {
    let node = &graph.nodes[id];
    let key = Arc::new(crate::plan::node_key(node));
    targets
        .iter()
        .filter_map(|&i| {
            let target = live.target(id, i);
            BuildRecord::for_target(live.plan(), graph, node, target, &key, slice_json)
        })
        .collect()
}

/// How many days one job of `node` may cover (`exec::ranges::step_days`);
/// all for `adopt`.
pub(super) fn step_days(repo: &Repo, settings: &Settings, action: Action, node: &Node) -> usize {
    if action == Action::Adopt {
        return usize::MAX;
    }
    exec::ranges::step_days(repo, settings, node)
}

/// A config name as a file name: anything outside `[A-Za-z0-9._-]` becomes
/// `_`, and a short hash keeps distinct names apart.
fn safe_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean == name && !name.starts_with('.') {
        clean
    } else {
        format!("{clean}-{}", &Hash::of(name.as_bytes()).hex()[..8])
    }
}
