//! The live plan: a plan kept current while a run goes on.
//!
//! It owns every target's status and where each target is in the run
//! (`Phase`). The runner tells it what happened (a job was dispatched, its
//! targets were built, a job failed, an input landed) and it answers with the
//! targets that became ready, as cargo's `DependencyQueue::finish` answers
//! with the units that became ready (`job_queue/mod.rs`). Staleness is
//! decided here and in `plan` only; the runner dispatches, limits and
//! records.
//!
//! When targets are built, the node's output column is updated and the
//! dependents' undecided targets that read those days are evaluated again:
//! a dependent whose key now matches its recorded one is fresh (early
//! cutoff), and that propagates in turn. A failure marks every undecided
//! target reading it, transitively, `UpstreamFailed`.
//!
//! Ready lists may repeat a target (two events can both release it);
//! `take_ready` drops what is no longer idle, so a target is handed out once.

use std::collections::HashMap;
use std::sync::Arc;

use crate::graph::{Graph, Node, NodeId};
use crate::partition::{Day, DayRange};
use crate::probe::Partitions;
use crate::store::{Memo, Recorded, day_column};

use super::{Column, Entry, Plan, StaleReason, Status, TargetPlan};

/// Where a target is in this run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not handed to the runner: fresh, or waiting, or blocked, or ready
    /// but held (behind an ordering edge, or a whole join's backfill).
    Idle,
    /// Handed to the runner: queued, running, or waiting for a retry.
    Dispatched,
    /// Its job ended well and it was recorded.
    Built,
    Failed,
    UpstreamFailed,
    /// `adopt`: its output is not in the warehouse.
    NotAdopted,
}

/// Targets that became ready, by node, in the order they did.
#[derive(Debug, Default, PartialEq, Eq)]
#[must_use = "ready targets must be dispatched"]
pub struct Ready(pub Vec<(NodeId, Vec<usize>)>);

impl Ready {
    fn push(&mut self, id: NodeId, targets: Vec<usize>) {
        if !targets.is_empty() {
            self.0.push((id, targets));
        }
    }

    pub fn extend(&mut self, other: Ready) {
        self.0.extend(other.0);
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

pub struct LivePlan<'g> {
    graph: &'g Graph,
    plan: Plan,
    phases: Vec<Vec<Phase>>,
    /// Per target that failed or could not run: what to say about it.
    notes: Vec<HashMap<usize, Arc<str>>>,
    /// Targets found fresh on re-evaluation (early cutoff).
    cutoff: usize,
}

impl<'g> LivePlan<'g> {
    pub fn new(graph: &'g Graph, plan: Plan) -> LivePlan<'g> {
        let phases = plan
            .nodes
            .iter()
            .map(|n| vec![Phase::Idle; n.targets.len()])
            .collect();
        let notes = plan.nodes.iter().map(|_| HashMap::new()).collect();
        LivePlan {
            graph,
            plan,
            phases,
            notes,
            cutoff: 0,
        }
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn into_plan(self) -> Plan {
        self.plan
    }

    pub fn target(&self, id: NodeId, i: usize) -> &TargetPlan {
        &self.plan.nodes[id].targets[i]
    }

    pub fn phase(&self, id: NodeId, i: usize) -> Phase {
        self.phases[id][i]
    }

    pub fn note(&self, id: NodeId, i: usize) -> Option<&Arc<str>> {
        self.notes[id].get(&i)
    }

    pub fn cutoff(&self) -> usize {
        self.cutoff
    }

    /// Whether every target of a node was built in this run.
    pub fn all_built(&self, id: NodeId) -> bool {
        !self.phases[id].is_empty() && self.phases[id].iter().all(|p| *p == Phase::Built)
    }

    /// The memo of a node (`memo::memo`) from the columns as they are now,
    /// its output table listed as `output`: what a later plan computes when
    /// nothing that decides the node changed. It holds for targets keyed
    /// from these columns.
    pub fn memo(&self, id: NodeId, output: Option<&Column>) -> Option<Memo> {
        let node = &self.graph.nodes[id];
        let days: Vec<Option<Day>> = self.plan.nodes[id].targets.iter().map(|t| t.day).collect();
        let inputs = self.plan.input_columns(self.graph, node);
        let state = &self.plan.state[id];
        let basis = super::memo::Basis {
            node,
            until: self.plan.until,
            inputs: &inputs,
            output,
        };
        basis.memo(&days, state)
    }

    /// What can run at the start: every planned node's ready targets, in
    /// build order.
    pub fn start(&self) -> Ready {
        let mut ready = Ready::default();
        for &id in &self.graph.order {
            if self.plan.planned[id] {
                ready.push(id, self.held(id));
            }
        }
        ready
    }

    /// Keeps the targets of `ready` that are still idle and ready, and
    /// marks them dispatched.
    pub fn take_ready(&mut self, id: NodeId, ready: Vec<usize>) -> Vec<usize> {
        let mut taken: Vec<usize> = ready
            .into_iter()
            .filter(|&i| self.phases[id][i] == Phase::Idle && is_ready(self.target(id, i)))
            .collect();
        taken.sort_unstable();
        taken.dedup();
        for &i in &taken {
            self.phases[id][i] = Phase::Dispatched;
        }
        taken
    }

    /// Targets the runner took but will not run now: idle again, with why.
    pub fn hold(&mut self, id: NodeId, targets: &[usize], why: Option<&Arc<str>>) {
        for &i in targets {
            self.phases[id][i] = Phase::Idle;
            if let Some(why) = why {
                self.notes[id].insert(i, why.clone());
            }
        }
    }

    /// Whether a node must wait for work on its ordering-only inputs (a
    /// streaming deploy after the KV upload).
    pub fn ordering_busy(&self, id: NodeId) -> bool {
        self.graph.nodes[id]
            .inputs
            .iter()
            .filter(|i| i.ordering_only)
            .filter_map(|i| i.producer)
            .filter(|p| self.plan.planned[*p])
            .any(|p| {
                self.phases[p]
                    .iter()
                    .zip(&self.plan.nodes[p].targets)
                    .any(|(phase, t)| match phase {
                        Phase::Dispatched => true,
                        Phase::Idle => {
                            matches!(t.status, Status::Stale(_) | Status::Waiting { .. })
                        }
                        _ => false,
                    })
            })
    }

    /// A node's targets that could run but are not dispatched: at the
    /// start, or held behind an ordering edge or a whole join's backfill.
    pub fn held(&self, id: NodeId) -> Vec<usize> {
        (0..self.plan.nodes[id].targets.len())
            .filter(|&i| self.phases[id][i] == Phase::Idle && is_ready(self.target(id, i)))
            .collect()
    }

    /// Dispatched targets were built: `built` gives each one's record
    /// (index into the node's targets). The rest of `dispatched` goes back
    /// to idle, except `missing` (exited well without their output: the
    /// runner fails them, or marks them not adopted).
    pub fn built(
        &mut self,
        id: NodeId,
        dispatched: &[usize],
        built: Vec<(usize, Recorded)>,
        missing: &[usize],
    ) -> Ready {
        let mut changed = Vec::with_capacity(built.len());
        for (i, recorded) in built {
            let day = self.plan.nodes[id].targets[i].day;
            self.plan.state[id].built.insert(day_column(day), recorded);
            self.plan.nodes[id].targets[i].status = Status::Fresh;
            self.phases[id][i] = Phase::Built;
            changed.push(i);
        }
        // Targets the job was given but whose key was unknown stay as they are.
        for &i in dispatched {
            if self.phases[id][i] == Phase::Dispatched && !missing.contains(&i) {
                self.phases[id][i] = Phase::Idle;
            }
        }
        let mut ready = self.changed(id, &changed);
        self.release_ordering(id, &mut ready);
        ready
    }

    /// Targets failed: stale for the next plan (`PreviousRunFailed`), and
    /// what reads them cannot run.
    pub fn failed(&mut self, id: NodeId, targets: &[usize], run: i64) -> Ready {
        for &i in targets {
            self.phases[id][i] = Phase::Failed;
            self.plan.nodes[id].targets[i].status =
                Status::Stale(Arc::new(StaleReason::PreviousRunFailed { run }));
        }
        let why = format!("{} failed", self.graph.nodes[id].label());
        let mut ready = self.upstream_failed(id, targets, &why);
        self.release_ordering(id, &mut ready);
        ready
    }

    /// `adopt`: targets whose output is not in the warehouse.
    pub fn not_adopted(&mut self, id: NodeId, targets: &[usize]) -> Ready {
        for &i in targets {
            self.phases[id][i] = Phase::NotAdopted;
        }
        let mut ready = self.upstream_failed(id, targets, "not adopted");
        self.release_ordering(id, &mut ready);
        ready
    }

    /// Targets that cannot run because work they wait on failed (a whole
    /// join's backfill).
    pub fn cannot_run(&mut self, id: NodeId, targets: &[usize], why: &Arc<str>) {
        for &i in targets {
            self.phases[id][i] = Phase::UpstreamFailed;
            self.notes[id].insert(i, why.clone());
        }
    }

    /// Tables whose missing partitions block targets now.
    pub fn blocked_tables(&self) -> Vec<String> {
        let mut tables: Vec<String> = Vec::new();
        for (id, node_plan) in self.plan.nodes.iter().enumerate() {
            for (i, target) in node_plan.targets.iter().enumerate() {
                if self.phases[id][i] != Phase::Idle {
                    continue;
                }
                if let Status::Blocked { input } = &target.status
                    && self.plan.probed.contains_key(&*input.table)
                    && !tables.iter().any(|t| **t == *input.table)
                {
                    tables.push(input.table.to_string());
                }
            }
        }
        tables
    }

    /// Probed tables were listed again (`--wait`). The tables whose
    /// partitions changed have landed: the targets blocked on them (and
    /// those blocked through them) are evaluated again. Returns the tables
    /// that landed.
    pub fn landed(&mut self, listed: Vec<(String, Partitions)>) -> (Vec<String>, Ready) {
        let mut landed = Vec::new();
        for (table, partitions) in listed {
            if self.plan.probed.get(&table) != Some(&partitions) {
                self.plan
                    .columns
                    .insert(table.clone(), Column::from_partitions(&table, &partitions));
                self.plan.probed.insert(table.clone(), partitions);
                landed.push(table);
            }
        }
        let mut ready = Ready::default();
        for id in 0..self.graph.nodes.len() {
            let reads = self.graph.nodes[id]
                .inputs
                .iter()
                .any(|i| landed.iter().any(|t| **t == *i.table));
            if !self.plan.planned[id] || !reads {
                continue;
            }
            let fresh = self.reevaluate(id, &mut ready, |_, t, _| {
                matches!(t.status, Status::Blocked { .. })
            });
            let more = self.changed(id, &fresh);
            ready.extend(more);
            self.unblock_downstream(id, &mut ready);
        }
        (landed, ready)
    }

    /// Marks every undecided target downstream of these as unable to run.
    fn upstream_failed(&mut self, node_id: NodeId, targets: &[usize], why: &str) -> Ready {
        let mut ready = Ready::default();
        let mut work: Vec<(NodeId, Vec<Option<Day>>)> =
            vec![(node_id, self.days(node_id, targets))];
        let why: Arc<str> = why.into();
        while let Some((from, days)) = work.pop() {
            let range = span(&days);
            for &dep in &self.graph.dependents[from] {
                if !self.plan.planned[dep] {
                    continue;
                }
                let reads = reads_of(&self.graph.nodes[dep], from, &self.plan);
                let hit: Vec<usize> = (0..self.plan.nodes[dep].targets.len())
                    .filter(|&i| {
                        let target = self.target(dep, i);
                        self.phases[dep][i] == Phase::Idle
                            && undecided(target)
                            && reads.any(target.day.unwrap_or(self.plan.until), range)
                    })
                    .collect();
                if hit.is_empty() {
                    continue;
                }
                self.cannot_run(dep, &hit, &why);
                self.release_ordering(dep, &mut ready);
                work.push((dep, self.days(dep, &hit)));
            }
        }
        ready
    }

    /// After targets of a node became fresh: update its output column and
    /// evaluate what waited on them, transitively.
    fn changed(&mut self, node_id: NodeId, targets: &[usize]) -> Ready {
        let mut ready = Ready::default();
        let mut work: Vec<(NodeId, Vec<usize>)> = vec![(node_id, targets.to_vec())];
        while let Some((from, targets)) = work.pop() {
            if targets.is_empty() {
                continue;
            }
            self.update_column(from, &targets);
            let range = span(&self.days(from, &targets));
            let graph = self.graph;
            for &dep in &graph.dependents[from] {
                if !self.plan.planned[dep] {
                    continue;
                }
                let reads = reads_of(&graph.nodes[dep], from, &self.plan);
                let fresh = self.reevaluate(dep, &mut ready, |_, target, plan| {
                    reads.any(target.day.unwrap_or(plan.until), range)
                });
                work.push((dep, fresh));
            }
            self.release_ordering(from, &mut ready);
        }
        ready
    }

    fn update_column(&mut self, id: NodeId, targets: &[usize]) {
        let node = &self.graph.nodes[id];
        let Some(output) = &node.output else { return };
        let probed = self.plan.columns.get(output);
        let label = node.label().into();
        let entries: Vec<(Day, Entry)> = targets
            .iter()
            .filter_map(|&i| {
                let target = &self.plan.nodes[id].targets[i];
                let state = &self.plan.state[id];
                let entry = super::internal_entry(node, &label, target, state, probed);
                Some((target.day?, entry))
            })
            .collect();
        let Some(column) = self.plan.columns.get_mut(&super::internal_key(output)) else {
            return;
        };
        for (day, entry) in entries {
            column.set(day, entry);
        }
    }

    /// Evaluates a node's undecided targets that `touched` selects: the
    /// ready ones go to `ready`, and those that became fresh are returned.
    fn reevaluate(
        &mut self,
        id: NodeId,
        ready: &mut Ready,
        touched: impl Fn(&Node, &TargetPlan, &Plan) -> bool,
    ) -> Vec<usize> {
        let node = &self.graph.nodes[id];
        let columns = self.plan.input_columns(self.graph, node);
        let output = node.output.as_ref().and_then(|t| self.plan.columns.get(t));
        let state = &self.plan.state[id];
        let mut decided = Vec::new();
        for (i, target) in self.plan.nodes[id].targets.iter().enumerate() {
            if self.phases[id][i] != Phase::Idle
                || !undecided(target)
                || super::blocked_by_invalid_config(&target.status)
                || !touched(node, target, &self.plan)
            {
                continue;
            }
            let at = target.day.unwrap_or(self.plan.until);
            let evaluation = super::evaluate(node, target.day, at, &columns);
            let recorded = state.built.get(&day_column(target.day));
            let decision = super::decide(node, target.day, evaluation, recorded, state, output);
            let mut new = decision.target;
            if let (Status::Stale(reason), Status::Stale(old)) = (&new.status, &target.status)
                && (decision.detail || matches!(**reason, StaleReason::NeverBuilt))
            {
                // Keep the more telling reason found by the planner.
                new.status = Status::Stale(old.clone());
            }
            decided.push((i, new));
        }
        let mut now_ready = Vec::new();
        let mut fresh = Vec::new();
        for (i, new) in decided {
            if matches!(new.status, Status::Fresh) {
                fresh.push(i);
                self.cutoff += 1;
            } else if is_ready(&new) {
                now_ready.push(i);
            }
            self.plan.nodes[id].targets[i] = new;
        }
        ready.push(id, now_ready);
        fresh
    }

    /// Dependents whose targets were blocked through a node see its new
    /// statuses: waiting rather than blocked, once its inputs landed.
    fn unblock_downstream(&mut self, id: NodeId, ready: &mut Ready) {
        let all: Vec<usize> = (0..self.plan.nodes[id].targets.len()).collect();
        self.update_column(id, &all);
        let mut stack = vec![id];
        let graph = self.graph;
        while let Some(from) = stack.pop() {
            for &dep in &graph.dependents[from] {
                if !self.plan.planned[dep] {
                    continue;
                }
                let fresh = self.reevaluate(dep, &mut *ready, |_, t, _| {
                    matches!(t.status, Status::Blocked { .. })
                });
                ready.extend(self.changed(dep, &fresh));
                let all: Vec<usize> = (0..self.plan.nodes[dep].targets.len()).collect();
                self.update_column(dep, &all);
                stack.push(dep);
            }
        }
    }

    /// After work on a node ended: what was held behind it by an ordering
    /// edge.
    fn release_ordering(&self, from: NodeId, ready: &mut Ready) {
        for &dep in &self.graph.dependents[from] {
            let ordered = self.graph.nodes[dep]
                .inputs
                .iter()
                .any(|i| i.ordering_only && i.producer == Some(from));
            if ordered && self.plan.planned[dep] {
                ready.push(dep, self.held(dep));
            }
        }
    }

    fn days(&self, id: NodeId, targets: &[usize]) -> Vec<Option<Day>> {
        targets.iter().map(|&i| self.target(id, i).day).collect()
    }
}

/// Waiting for its inputs: not fresh (a fresh target's inputs are all
/// fresh, and stay so in a run; a node's memo may leave it without its
/// recorded key), and without a key.
fn undecided(target: &TargetPlan) -> bool {
    target.key.is_none() && target.status != Status::Fresh
}

/// Stale with every input known: can run now.
pub fn is_ready(target: &TargetPlan) -> bool {
    matches!(target.status, Status::Stale(_)) && target.key.is_some()
}

/// The days spanned, as a range (unpartitioned counts as everything).
fn span(days: &[Option<Day>]) -> DayRange {
    let known: Vec<Day> = days.iter().filter_map(|d| *d).collect();
    match (known.iter().min(), known.iter().max()) {
        (Some(a), Some(b)) if known.len() == days.len() => DayRange::new(*a, *b),
        _ => DayRange::new(Day(i32::MIN / 2), Day(i32::MAX / 2)),
    }
}

/// What `node` reads of `producer`: each input that reads it, with the
/// first day its column has present. Made once per node looked at, not
/// per target (it looks the column up by name).
fn reads_of<'g>(node: &'g Node, producer: NodeId, plan: &Plan) -> Reads<'g> {
    let inputs = node
        .inputs
        .iter()
        .filter(|i| i.producer == Some(producer) && !i.ordering_only)
        .map(|input| {
            let first = plan
                .columns
                .get(&super::internal_key(input.base_table()))
                .and_then(Column::first_present);
            (input, first)
        })
        .collect();
    Reads(inputs)
}

/// What a node reads of one producer (`reads_of`).
struct Reads<'g>(Vec<(&'g crate::graph::Input, Option<Day>)>);

impl Reads<'_> {
    /// Whether a target at `at` reads days of the producer in `range`.
    fn any(&self, at: Day, range: DayRange) -> bool {
        self.0.iter().any(|(input, first)| {
            !input
                .range(at, first.or(Some(range.from)))
                .intersect(range)
                .is_empty()
        })
    }
}

#[cfg(test)]
mod tests;
