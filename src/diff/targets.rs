//! Which targets change key: each head node compared with the base node of
//! the same step, config and part, in dependency order so that upstream
//! changes reach dependents; then the changed partitions counted against
//! those that exist (built, with a state; wanted, without one).

use std::collections::{BTreeSet, HashMap};

use super::{History, Invalidated, Options, Reason, Side};
use crate::graph::{Input, Lookback, Node, Schedule, Start, Step};
use crate::partition::{Day, DayRange};
use crate::settings::Settings;

/// The invalidated targets of the head, sorted by config, step and part;
/// and the online configs whose metadata upload runs again, apart since
/// they move no data.
pub(super) fn invalidated(
    head: &Side,
    changes: &[Change],
    renamed_from: &HashMap<&str, &str>,
    opts: &Options,
    history: Option<&History>,
) -> (Vec<Invalidated>, Vec<String>) {
    let mut targets = Vec::new();
    let mut metadata_uploads = Vec::new();
    for node in &head.graph.nodes {
        let change = &changes[node.id];
        if change.reasons.is_empty() {
            continue;
        }
        let days = change.partitions(node, head, opts, history);
        if days.as_ref().is_some_and(|d| d.is_empty()) {
            continue;
        }
        if node.step == Step::MetadataUpload {
            metadata_uploads.push(node.name.clone());
            continue;
        }
        targets.push(invalidated_node(node, change, days, renamed_from, history));
    }
    targets.sort_by(|a, b| (&a.config, a.step, &a.part).cmp(&(&b.config, b.step, &b.part)));
    (targets, metadata_uploads)
}

fn invalidated_node(
    node: &Node,
    change: &Change,
    days: Option<Vec<Option<Day>>>,
    renamed_from: &HashMap<&str, &str>,
    history: Option<&History>,
) -> Invalidated {
    let partitions = days.as_ref().map(Vec::len);
    let ranges = days
        .as_ref()
        .map(|d| DayRange::runs(d.iter().flatten().copied()))
        .unwrap_or_default();
    let mut names = vec![node.name.as_str()];
    if let Some(old) = renamed_from.get(node.name.as_str()) {
        names.push(old);
    }
    let estimate = history
        .zip(partitions)
        .and_then(|(h, n)| h.estimate(node, &names, n));
    Invalidated {
        step: node.step,
        config: node.name.clone(),
        part: node.part.clone(),
        label: node.label(),
        reasons: change.reasons.clone(),
        partitioned: !matches!(node.schedule, Schedule::Unpartitioned),
        partitions,
        ranges,
        estimate,
    }
}

// ---------------------------------------------------------------------------
// Targets

/// How one head node's targets change.
#[derive(Default)]
pub(super) struct Change {
    /// Every existing partition changes key.
    all: bool,
    /// These existing partitions change key.
    days: BTreeSet<Day>,
    /// The node is new: every wanted partition is new work.
    new_all: bool,
    /// Partitions wanted for the first time.
    new_days: BTreeSet<Day>,
    reasons: Vec<Reason>,
}

impl Change {
    fn add_reason(&mut self, reason: Reason) {
        if !self.reasons.contains(&reason) {
            self.reasons.push(reason);
        }
    }

    /// The days a dependent sees changed: `None` for all of them.
    fn changed_days(&self) -> Option<BTreeSet<Day>> {
        if self.all || self.new_all {
            return None;
        }
        Some(self.days.union(&self.new_days).copied().collect())
    }

    /// The partitions to compute, sorted; `None` when they cannot be counted.
    fn partitions(
        &self,
        node: &Node,
        head: &Side,
        opts: &Options,
        history: Option<&History>,
    ) -> Option<Vec<Option<Day>>> {
        let wanted = || wanted(node, &head.settings, opts);
        if self.new_all {
            return wanted();
        }
        let existing = match history {
            Some(history) => Some(built(node, history, opts.until)),
            None => wanted(),
        };
        let mut out: BTreeSet<Option<Day>> = match (&existing, self.all) {
            (Some(existing), true) => existing.iter().copied().collect(),
            (None, true) => return None,
            (Some(existing), false) => existing
                .iter()
                .filter(|d| d.is_some_and(|d| self.days.contains(&d)))
                .copied()
                .collect(),
            (None, false) => self.days.iter().map(|d| Some(*d)).collect(),
        };
        out.extend(self.new_days.iter().map(|d| Some(*d)));
        Some(out.into_iter().collect())
    }
}

/// An all-history read with no cutoff reaches back this far: far enough
/// that the same read on both sides compares equal.
const FAR_PAST: Day = Day(0);

/// The partitions of a node wanted up to `--until`; `None` when its start is
/// only known from the warehouse.
fn wanted(node: &Node, settings: &Settings, opts: &Options) -> Option<Vec<Option<Day>>> {
    if let Schedule::Daily { start } = &node.schedule {
        let known =
            matches!(start, Start::Day(_)) || settings.start.is_some() || opts.from.is_some();
        if !known {
            return None;
        }
    }
    // A span over the plan's maximum cannot be counted here either; `plan`
    // and `run` refuse it with the reason.
    crate::plan::wanted_days(node, opts.until, opts.from, settings, &HashMap::new()).ok()
}

/// The partitions of a node recorded built, up to `--until`. For a step that
/// keeps only the latest partition, the one at `--until`.
fn built(node: &Node, history: &History, until: Day) -> Vec<Option<Day>> {
    let key = crate::plan::node_key(node);
    let days = history
        .built
        .get(&key)
        .map(Vec::as_slice)
        .unwrap_or_default();
    match node.schedule {
        Schedule::Unpartitioned => days.iter().filter(|d| d.is_none()).copied().collect(),
        Schedule::Latest => days
            .iter()
            .filter(|d| **d == Some(until))
            .copied()
            .collect(),
        Schedule::Daily { .. } => days
            .iter()
            .filter(|d| d.is_some_and(|d| d <= until))
            .copied()
            .collect(),
    }
}

/// Per head node, how its targets change, in dependency order so that
/// upstream changes reach dependents.
pub(super) fn node_changes(base: &Side, head: &Side, opts: &Options) -> Vec<Change> {
    let base_nodes: HashMap<(Step, &str, Option<&str>), &Node> = base
        .graph
        .nodes
        .iter()
        .map(|n| ((n.step, n.name.as_str(), n.part.as_deref()), n))
        .collect();
    let mut changes: Vec<Change> = (0..head.graph.nodes.len())
        .map(|_| Change::default())
        .collect();
    for id in &head.graph.order {
        let node = &head.graph.nodes[*id];
        let old = base_nodes.get(&(node.step, node.name.as_str(), node.part.as_deref()));
        let mut change = own_change(base, old.copied(), head, node, opts);
        for input in node.inputs.iter().filter(|i| !i.ordering_only) {
            let Some(producer) = input.producer else {
                continue;
            };
            let upstream = &changes[producer];
            if upstream.reasons.is_empty() {
                continue;
            }
            let reason = Reason::Upstream {
                target: head.graph.nodes[producer].label(),
            };
            reach_from_upstream(&mut change, upstream, reason, node, input, opts.until);
        }
        changes[*id] = change;
    }
    changes
}

/// How a node's own targets change against its base node (`None`: it is new).
fn own_change(base: &Side, old: Option<&Node>, head: &Side, node: &Node, opts: &Options) -> Change {
    let mut change = Change::default();
    match old {
        None => {
            change.new_all = true;
            change.add_reason(Reason::New);
        }
        Some(old) if old.slice_hash != node.slice_hash => {
            change.all = true;
            change.add_reason(Reason::ConfigChanged);
        }
        Some(old) if !same_reads(base, old, head, node) => {
            change.all = true;
            change.add_reason(Reason::InputsChanged);
        }
        Some(old) => {
            let moved = cutoff_days(old, node, opts);
            if !moved.is_empty() {
                change.days.extend(moved);
                change.add_reason(Reason::InputRangesChanged);
            }
            let before = wanted(old, &base.settings, opts);
            let now = wanted(node, &head.settings, opts);
            if let (Some(before), Some(now)) = (before, now) {
                let before: BTreeSet<Option<Day>> = before.into_iter().collect();
                let fresh: Vec<Day> = now
                    .into_iter()
                    .filter(|d| !before.contains(d))
                    .flatten()
                    .collect();
                if !fresh.is_empty() {
                    change.new_days.extend(fresh);
                    change.add_reason(Reason::NewlyWanted);
                }
            }
        }
    }
    change
}

/// Adds to `change` the days of `node` that read, through `input`, what
/// changed in its producer (`upstream`).
fn reach_from_upstream(
    change: &mut Change,
    upstream: &Change,
    reason: Reason,
    node: &Node,
    input: &Input,
    until: Day,
) {
    match upstream.changed_days() {
        None => {
            change.all = true;
            change.add_reason(reason);
        }
        Some(days) => {
            match reading_days(node, input, &days, until) {
                Reading::All => change.all = true,
                Reading::Days(found) if found.is_empty() => return,
                Reading::Days(found) => change.days.extend(found),
            }
            change.add_reason(reason);
        }
    }
}

enum Reading {
    All,
    Days(BTreeSet<Day>),
}

/// The days of `node` whose read of `input` touches one of `changed`.
fn reading_days(node: &Node, input: &Input, changed: &BTreeSet<Day>, until: Day) -> Reading {
    let (Some(first), Some(last)) = (changed.first(), changed.last()) else {
        return Reading::Days(BTreeSet::new());
    };
    let touches = |day: Day| {
        let range = input.range(day, Some(FAR_PAST));
        !range.is_empty() && changed.range(range.from..=range.to).next().is_some()
    };
    let candidates = match (&node.schedule, input.lookback) {
        (Schedule::Unpartitioned, _) => return Reading::All,
        (Schedule::Latest, _) => DayRange::new(until, until),
        (Schedule::Daily { .. }, Lookback::Days(n)) => DayRange::new(
            first.plus(input.shift),
            last.plus(input.shift + n as i32).min(until),
        ),
        (Schedule::Daily { .. }, Lookback::AllHistory) => {
            DayRange::new(first.plus(input.shift), until)
        }
    };
    Reading::Days(candidates.days().filter(|d| touches(*d)).collect())
}

/// Whether two nodes read the same tables the same way (cutoffs aside).
fn same_reads(base: &Side, old: &Node, head: &Side, new: &Node) -> bool {
    let producer = |side: &Side, input: &Input| input.producer.map(|p| side.graph.nodes[p].label());
    old.inputs.len() == new.inputs.len()
        && old.inputs.iter().zip(&new.inputs).all(|(a, b)| {
            a.table == b.table
                && a.lookback == b.lookback
                && a.shift == b.shift
                && a.required == b.required
                && a.ordering_only == b.ordering_only
                && producer(base, a) == producer(head, b)
        })
}

/// The days whose input ranges differ between two nodes that read the same
/// tables, when a cutoff moved.
fn cutoff_days(old: &Node, new: &Node, opts: &Options) -> BTreeSet<Day> {
    let mut out = BTreeSet::new();
    for (a, b) in old.inputs.iter().zip(&new.inputs) {
        if a.cutoff_from == b.cutoff_from && a.cutoff_to == b.cutoff_to {
            continue;
        }
        let cutoffs = [a.cutoff_from, a.cutoff_to, b.cutoff_from, b.cutoff_to];
        let Some(lowest) = cutoffs.into_iter().flatten().min() else {
            continue;
        };
        let reach = match b.lookback {
            Lookback::Days(n) => n as i32 + b.shift,
            Lookback::AllHistory => b.shift,
        };
        let from = match &new.schedule {
            Schedule::Daily {
                start: Start::Day(start),
            } => *start,
            _ => lowest.minus(reach + 1),
        };
        let from = opts.from.map_or(from, |f| from.max(f));
        let read = |input: &Input, day: Day| {
            let range = input.range(day, Some(FAR_PAST));
            (!range.is_empty()).then_some(range)
        };
        out.extend(
            DayRange::new(from, opts.until)
                .days()
                .filter(|day| read(a, *day) != read(b, *day)),
        );
    }
    out
}
