//! Plan output. Contiguous partitions of one node with the same status are
//! grouped into one range with a count; totals per status close the output.
//!
//! What is listed is the plan's work (`Plan::lists`): the selected nodes
//! and the upstream nodes planned with them, the latter marked as pulled
//! in. `run` and `run -n` work on the same nodes (`Plan::planned`), so a
//! selection lists the same targets in all three.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use super::{Plan, Status, StatusKind};
use crate::graph::{Graph, Step};
use crate::partition::{Day, DayRange};

/// A run of contiguous partitions of one node sharing a status.
#[derive(Serialize)]
pub struct Group<'p> {
    pub target: String,
    pub step: Step,
    pub config: &'p str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part: Option<&'p str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Day>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Day>,
    pub count: usize,
    #[serde(flatten)]
    pub status: &'p Status,
    /// For blocked and waiting runs: the last target's status, whose missing
    /// partition or upstream day closes the range.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<&'p Status>,
    /// Upstream of the selection, planned because the selection reads it:
    /// `run` with the same selection runs it too.
    pub pulled_in: bool,
}

/// Statuses that read as one run: equal, or blocked on the same table, or
/// waiting on the same upstream node (the days differ along the run).
fn same_run(a: &Status, b: &Status) -> bool {
    match (a, b) {
        (Status::Blocked { input: x }, Status::Blocked { input: y }) => {
            x.table == y.table && x.invalid_config == y.invalid_config
        }
        (Status::Waiting { upstream: x }, Status::Waiting { upstream: y }) => x.node == y.node,
        _ => a == b,
    }
}

impl Group<'_> {
    fn status_text(&self) -> String {
        match (self.status, self.last) {
            (Status::Blocked { input: first }, Some(Status::Blocked { input: last }))
                if first.partition != last.partition && first.invalid_config.is_none() =>
            {
                format!(
                    "blocked: missing {} ds={}..{}",
                    first.table, first.partition, last.partition
                )
            }
            (Status::Waiting { upstream: first }, Some(Status::Waiting { upstream: last }))
                if first != last =>
            {
                let day = last.day.map(|d| d.to_string()).unwrap_or_default();
                format!("waiting: {first}..{day}")
            }
            (status, _) => status.to_string(),
        }
    }
}

/// Why a node is there: the selection reads it. Said after a pulled-in
/// group's status, after a pulled-in job's lines in `run`'s output
/// (`mark`), and with the count of such jobs (`pulled_in_count`).
macro_rules! pulled_in {
    () => {
        "pulled in: upstream of the selection"
    };
}

/// What follows a line about work on a node: the pulled-in mark when the
/// node is there only as upstream of the selection, else nothing.
pub fn mark(pulled_in: bool) -> &'static str {
    if pulled_in {
        concat!(" (", pulled_in!(), ")")
    } else {
        ""
    }
}

/// After a count of jobs: how many of them are pulled in, when any are.
pub fn pulled_in_count(n: usize) -> String {
    match n {
        0 => String::new(),
        n => format!(concat!(" ({} ", pulled_in!(), ")"), n),
    }
}

#[derive(Serialize)]
pub struct PlanJson<'p> {
    pub until: Day,
    pub groups: Vec<Group<'p>>,
    pub totals: BTreeMap<&'static str, usize>,
    pub notes: &'p [String],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub orphans: &'p [super::Orphan],
}

pub struct Filter {
    pub show_fresh: bool,
    /// Invalid configs set apart: said on the last line, which must agree
    /// with the exit code (1).
    pub invalid_configs: usize,
    /// Blocked and waiting ranges per node too (`-v`), not only per cause.
    pub every: bool,
}

pub fn groups<'p>(plan: &'p Plan, graph: &'p Graph, filter: &Filter) -> Vec<Group<'p>> {
    let mut out = Vec::new();
    for &id in &graph.order {
        let node = &graph.nodes[id];
        if !plan.lists(id) {
            continue;
        }
        let targets = &plan.nodes[id].targets;
        let mut i = 0;
        while i < targets.len() {
            let mut j = i + 1;
            while j < targets.len()
                && same_run(&targets[i].status, &targets[j].status)
                && matches!((targets[j - 1].day, targets[j].day), (Some(a), Some(b)) if b.0 == a.0 + 1)
            {
                j += 1;
            }
            let status = &targets[i].status;
            if filter.show_fresh || status.kind() != StatusKind::Fresh {
                out.push(Group {
                    target: node.label(),
                    step: node.step,
                    config: &node.name,
                    part: node.part.as_deref(),
                    from: targets[i].day,
                    to: targets[j - 1].day,
                    count: j - i,
                    status,
                    last: (j - i > 1
                        && matches!(status, Status::Blocked { .. } | Status::Waiting { .. }))
                    .then_some(&targets[j - 1].status),
                    pulled_in: plan.pulled_in(id),
                });
            }
            i = j;
        }
    }
    out
}

/// Targets per status over what the plan lists: the selection and the
/// upstream pulled in with it.
pub fn totals(plan: &Plan, graph: &Graph) -> BTreeMap<&'static str, usize> {
    // Counted by kind (a million targets), then named.
    let mut counts = [0usize; StatusKind::ALL.len()];
    for node in &graph.nodes {
        if !plan.lists(node.id) {
            continue;
        }
        for target in &plan.nodes[node.id].targets {
            counts[target.status.kind() as usize] += 1;
        }
    }
    StatusKind::ALL
        .iter()
        .map(|k| (k.name(), counts[*k as usize]))
        .collect()
}

/// The text of a plan, notes left out (they go to standard error). Stale
/// (and with `show_fresh`, fresh) ranges one line per node; blocked and
/// waiting ones too, unless there are more than `say::LIST_MAX` of them:
/// then one line per cause (`causes`), unless `every` (`-v`).
pub fn to_text(plan: &Plan, graph: &Graph, filter: &Filter) -> String {
    let groups = groups(plan, graph, filter);
    let held = |g: &Group| matches!(g.status, Status::Blocked { .. } | Status::Waiting { .. });
    let every = filter.every || groups.iter().filter(|g| held(g)).count() <= crate::say::LIST_MAX;
    let (listed, grouped): (Vec<&Group>, Vec<&Group>) =
        groups.iter().partition(|g| every || !held(g));
    // Columns padded up to a bound: one long name does not push every
    // line past the width.
    let width = |f: &dyn Fn(&Group) -> usize, most: usize| {
        listed.iter().map(|g| f(g)).max().unwrap_or(0).min(most)
    };
    let step_width = width(&|g| g.step.name().len(), 27);
    let name_width = width(
        &|g| g.config.chars().count() + g.part.map_or(0, |p| p.chars().count() + 1),
        44,
    );
    let range_width = width(&|g| range_text(g).len(), 28);
    let mut out = String::new();
    for group in &listed {
        let name = match group.part {
            Some(part) => format!("{}#{part}", group.config),
            None => group.config.to_string(),
        };
        // Padded by hand: `{:width$}` panics on widths over 65,535 (a
        // config name can be that long).
        let _ = writeln!(
            out,
            "{}  {}  {}  {}{}",
            pad(group.step.name(), step_width),
            pad(&name, name_width),
            pad(&range_text(group), range_width),
            group.status_text(),
            mark(group.pulled_in)
        );
    }
    if !grouped.is_empty() {
        for cause in causes(plan, graph) {
            let _ = writeln!(out, "{}", cause.line());
        }
        let _ = writeln!(
            out,
            "({} blocked or waiting range(s) of single nodes: -v lists them, --format json has them all)",
            crate::say::thousands(grouped.len())
        );
    }
    out.push_str(&orphan_lines(plan));
    let totals = totals(plan, graph);
    let all: usize = totals.values().sum();
    let parts: Vec<String> = StatusKind::ALL
        .iter()
        .map(|k| {
            format!(
                "{} {}",
                totals.get(k.name()).copied().unwrap_or(0),
                k.name()
            )
        })
        .collect();
    let left_out = match filter.invalid_configs {
        0 => String::new(),
        n => format!("; {n} invalid config(s) left out"),
    };
    let _ = writeln!(
        out,
        "{all} targets up to {}: {}{left_out}",
        plan.until,
        parts.join(", ")
    );
    out
}

/// Blocked or waiting targets of any node that share one cause: a missing
/// table (the days missing), an invalid config, or an upstream node (the
/// days waited on).
pub struct Cause<'p> {
    pub kind: StatusKind,
    pub what: String,
    pub count: usize,
    pub configs: std::collections::BTreeSet<&'p str>,
    pub days: Option<(Day, Day)>,
}

impl Cause<'_> {
    /// `blocked: 1,240 partitions of 38 configs; missing data.purchases 2023-01-01..2025-09-29`
    pub fn line(&self) -> String {
        let days = match self.days {
            Some((a, b)) if a == b => format!(" {a}"),
            Some((a, b)) => format!(" {}", DayRange::new(a, b)),
            None => String::new(),
        };
        format!(
            "{}: {} partition(s) of {} config(s); {}{days}",
            self.kind.name(),
            crate::say::thousands(self.count),
            crate::say::thousands(self.configs.len()),
            self.what,
        )
    }
}

/// The blocked and waiting targets of the plan, one `Cause` each, in the
/// order the causes are first met.
pub fn causes<'p>(plan: &'p Plan, graph: &'p Graph) -> Vec<Cause<'p>> {
    let mut out: Vec<Cause<'p>> = Vec::new();
    let mut index: std::collections::HashMap<(StatusKind, String), usize> = Default::default();
    for &id in &graph.order {
        let node = &graph.nodes[id];
        if !plan.lists(id) {
            continue;
        }
        for target in &plan.nodes[id].targets {
            let (what, day) = match &target.status {
                Status::Blocked { input } => match &input.invalid_config {
                    Some(_) => (input.to_string(), None),
                    None => (format!("missing {}", input.table), Some(input.partition)),
                },
                Status::Waiting { upstream } => (format!("on {}", upstream.node), upstream.day),
                _ => continue,
            };
            let kind = target.status.kind();
            let at = *index.entry((kind, what.clone())).or_insert_with(|| {
                out.push(Cause {
                    kind,
                    what,
                    count: 0,
                    configs: Default::default(),
                    days: None,
                });
                out.len() - 1
            });
            let cause = &mut out[at];
            cause.count += 1;
            cause.configs.insert(&node.name);
            if let Some(day) = day {
                cause.days = Some(match cause.days {
                    Some((a, b)) => (a.min(day), b.max(day)),
                    None => (day, day),
                });
            }
        }
    }
    out
}

fn range_text(group: &Group) -> String {
    match (group.from, group.to) {
        (Some(from), Some(to)) if from == to => format!("{from} (1)"),
        (Some(from), Some(to)) => format!("{from}..{to} ({})", group.count),
        _ => "-".to_string(),
    }
}

pub fn to_json<'p>(plan: &'p Plan, graph: &'p Graph, filter: &Filter) -> PlanJson<'p> {
    PlanJson {
        until: plan.until,
        groups: groups(plan, graph, filter),
        totals: totals(plan, graph),
        notes: &plan.notes,
        orphans: &plan.orphans,
    }
}

/// One line per orphaned table: what `run` (or `gc`) removes.
pub fn orphan_lines(plan: &Plan) -> String {
    plan.orphans
        .iter()
        .map(|o| {
            let range = match (o.partitions.first(), o.partitions.last()) {
                (Some(a), Some(b)) => DayRange::new(*a, *b).to_string(),
                _ => String::new(),
            };
            format!(
                "to remove  {} ds={range} ({} partition(s)): before {}'s start {}\n",
                o.table,
                o.partitions.len(),
                o.target,
                o.start
            )
        })
        .collect()
}

/// `text` followed by spaces up to `width` characters.
fn pad(text: &str, width: usize) -> String {
    let mut out = text.to_string();
    out.extend(std::iter::repeat_n(
        ' ',
        width.saturating_sub(text.chars().count()),
    ));
    out
}
