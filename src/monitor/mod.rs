//! Monitoring: what `status`, `history`, `report` and `run --metrics-file`
//! show. Everything here reads a plan and the state's history; nothing
//! needs a server.
//!
//! A node's health is the statuses of its wanted partitions (from the plan),
//! its last recorded build, and its latest attempt. A partition is `failed`
//! when it is stale because the run that last tried it failed; it then counts
//! as failed, not as stale.
//!
//! Files:
//! - `mod.rs`: health, per-node statuses and freshness lags (what `status`
//!   shows), and the time and file helpers the outputs share;
//! - `metrics.rs`: `run --metrics-file`, one function per metric family;
//! - `report.rs`: the HTML page of `report`: grid, duration charts, failures.

pub(crate) mod metrics;
pub(crate) mod report;

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use crate::graph::{Graph, Node, Schedule, Step};
use crate::partition::{Day, civil_from_days};
use crate::plan::{NodePlan, Plan, StaleReason, Status, node_key};
use crate::store::{Attempt, NO_PARTITION, NodeKey, NodeState, day_column};

/// What a wanted partition looks like, as the report colours it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Health {
    Fresh,
    Stale,
    /// Stale, but an upstream target must be built first.
    Waiting,
    Blocked,
    /// The last run that tried it failed.
    Failed,
    /// Not a wanted partition of the node (before its start, or a serving
    /// step's past days).
    NotWanted,
}

impl Health {
    pub const ALL: [Health; 6] = [
        Health::Fresh,
        Health::Stale,
        Health::Waiting,
        Health::Blocked,
        Health::Failed,
        Health::NotWanted,
    ];

    pub fn of(status: &Status) -> Health {
        match status {
            Status::Fresh => Health::Fresh,
            Status::Stale(reason) if matches!(**reason, StaleReason::PreviousRunFailed { .. }) => {
                Health::Failed
            }
            Status::Stale(_) => Health::Stale,
            Status::Waiting { .. } => Health::Waiting,
            Status::Blocked { .. } => Health::Blocked,
        }
    }

    /// A target's health: `failed` when it is stale and the last run that
    /// tried it failed, whatever reason the planner names first (a forced
    /// target that then failed is failed).
    pub fn of_target(status: &Status, state: &NodeState, day: Option<Day>) -> Health {
        match Health::of(status) {
            Health::Stale if state.failed.contains_key(&day_column(day)) => Health::Failed,
            health => health,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Health::Fresh => "fresh",
            Health::Stale => "stale",
            Health::Waiting => "waiting",
            Health::Blocked => "blocked",
            Health::Failed => "failed",
            Health::NotWanted => "not-wanted",
        }
    }
}

/// Wanted partitions of a node by health.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Counts {
    pub fresh: usize,
    pub stale: usize,
    pub waiting: usize,
    pub blocked: usize,
    pub failed: usize,
}

impl Counts {
    fn add(&mut self, health: Health) {
        match health {
            Health::Fresh => self.fresh += 1,
            Health::Stale => self.stale += 1,
            Health::Waiting => self.waiting += 1,
            Health::Blocked => self.blocked += 1,
            Health::Failed => self.failed += 1,
            Health::NotWanted => {}
        }
    }

    pub fn wanted(&self) -> usize {
        self.fresh + self.stale + self.waiting + self.blocked + self.failed
    }

    pub fn all_fresh(&self) -> bool {
        self.wanted() == self.fresh
    }
}

/// A node's latest attempt, as `status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct LastAttempt {
    pub run: i64,
    /// `ok` or `failed`.
    pub result: &'static str,
    pub exit_code: Option<i32>,
    pub start_ds: Option<Day>,
    pub end_ds: Option<Day>,
    pub attempt: u32,
    pub started_at: String,
    pub duration_seconds: f64,
    pub log: Option<String>,
}

impl LastAttempt {
    pub fn of(a: &Attempt) -> LastAttempt {
        LastAttempt {
            run: a.run,
            result: if a.succeeded() { "ok" } else { "failed" },
            exit_code: a.exit_code,
            start_ds: a.from,
            end_ds: a.to,
            attempt: a.attempt,
            started_at: timestamp(a.started_at),
            duration_seconds: a.duration.as_secs_f64(),
            log: Some(a.log_path.clone()).filter(|l| !l.is_empty()),
        }
    }
}

/// One node's health: one row of `status`.
#[derive(Clone, Debug, Serialize)]
pub struct NodeStatus {
    pub target: String,
    pub config: String,
    pub step: Step,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part: Option<String>,
    pub team: String,
    /// Whether any partition was ever recorded as built.
    pub built: bool,
    /// The latest partition recorded as built.
    pub last_built: Option<Day>,
    /// The latest wanted partition that is fresh now.
    pub last_fresh: Option<Day>,
    /// Days from `last_fresh` to `--until`; `None` when nothing is fresh or
    /// the node has no partitions.
    pub behind_days: Option<i64>,
    #[serde(flatten)]
    pub counts: Counts,
    pub last_attempt: Option<LastAttempt>,
    #[serde(skip)]
    pub partitioned: bool,
    #[serde(skip)]
    pub node: usize,
}

/// Every shown node's health at the plan's `until`: by config name, and
/// in build order within a config.
pub fn statuses(plan: &Plan, graph: &Graph, latest: &HashMap<NodeKey, Attempt>) -> Vec<NodeStatus> {
    let mut statuses: Vec<NodeStatus> = graph
        .order
        .iter()
        .filter(|id| plan.shown[**id])
        .map(|id| {
            let node = &graph.nodes[*id];
            node_status(node, &plan.nodes[*id], &plan.state[*id], plan.until, latest)
        })
        .collect();
    statuses.sort_by(|a, b| a.config.cmp(&b.config));
    statuses
}

fn node_status(
    node: &Node,
    node_plan: &NodePlan,
    state: &NodeState,
    until: Day,
    latest: &HashMap<NodeKey, Attempt>,
) -> NodeStatus {
    let mut counts = Counts::default();
    let mut last_fresh = None;
    for target in &node_plan.targets {
        let health = Health::of_target(&target.status, state, target.day);
        counts.add(health);
        if health == Health::Fresh {
            last_fresh = last_fresh.max(target.day);
        }
    }
    let last_built = state
        .built
        .keys()
        .filter(|d| **d != NO_PARTITION)
        .max()
        .map(|d| Day(*d as i32));
    let partitioned = !matches!(node.schedule, Schedule::Unpartitioned);
    NodeStatus {
        target: node.label(),
        config: node.name.clone(),
        step: node.step,
        part: node.part.clone(),
        team: node.team.clone(),
        built: !state.built.is_empty(),
        last_built,
        last_fresh,
        behind_days: last_fresh
            .filter(|_| partitioned)
            .map(|d| i64::from((until.0 - d.0).max(0))),
        counts,
        last_attempt: latest.get(&node_key(node)).map(LastAttempt::of),
        partitioned,
        node: node.id,
    }
}

/// Per config, the largest lag of its partitioned nodes: how many days its
/// data is behind `until`. `None` when one of them has nothing fresh: the
/// lag is unknown, not zero. `statuses` are grouped by config, as
/// `statuses` returns them.
pub fn config_lags(statuses: &[NodeStatus]) -> Vec<(String, Option<i64>)> {
    statuses
        .chunk_by(|a, b| a.config == b.config)
        .filter_map(|config| {
            let mut nodes = config
                .iter()
                .filter(|s| s.partitioned && s.counts.wanted() > 0)
                .map(|s| s.behind_days);
            let first = nodes.next()?;
            let worst = nodes.fold(first, |worst, lag| worst.zip(lag).map(|(a, b)| a.max(b)));
            Some((config[0].config.clone(), worst))
        })
        .collect()
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SSZ` (UTC).
pub fn timestamp(secs: i64) -> String {
    let days = secs.div_euclid(86_400) as i32;
    let rest = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// The unix second a day starts (UTC).
pub fn day_start(day: Day) -> i64 {
    i64::from(day.0) * 86_400
}

/// Replaces the file atomically (the textfile collector may read it at any
/// moment): written beside it, then renamed.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("expected a file path"))?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
