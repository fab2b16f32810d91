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
        (Status::Waiting { upstream: x }, Status::Waiting { upstream: y }) => {
            x.split('@').next() == y.split('@').next()
        }
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
                let day = last.rsplit('@').next().unwrap_or_default();
                format!("waiting: {first}..{day}")
            }
            (status, _) => status.to_string(),
        }
    }
}

/// The text after a pulled-in group's status.
const PULLED_IN: &str = " (pulled in: upstream of the selection)";

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
    let mut totals: BTreeMap<&'static str, usize> =
        StatusKind::ALL.iter().map(|k| (k.name(), 0)).collect();
    for node in &graph.nodes {
        if !plan.lists(node.id) {
            continue;
        }
        for target in &plan.nodes[node.id].targets {
            *totals.entry(target.status.kind().name()).or_default() += 1;
        }
    }
    totals
}

pub fn to_text(plan: &Plan, graph: &Graph, filter: &Filter) -> String {
    let groups = groups(plan, graph, filter);
    let step_width = groups
        .iter()
        .map(|g| g.step.name().len())
        .max()
        .unwrap_or(0);
    let name_width = groups
        .iter()
        .map(|g| g.config.len() + g.part.map_or(0, |p| p.len() + 1))
        .max()
        .unwrap_or(0);
    let range_width = groups
        .iter()
        .map(|g| range_text(g).len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for group in &groups {
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
            if group.pulled_in { PULLED_IN } else { "" }
        );
    }
    out.push_str(&orphan_lines(plan));
    for note in &plan.notes {
        let _ = writeln!(out, "note: {note}");
    }
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
