//! The planner: for every wanted target, `fresh`, `stale(reason)`,
//! `blocked(input)` or `waiting(upstream)`. It decides; it never runs.
//!
//! Nodes are planned producers first. Each input table becomes a `Column`:
//! per day, the partition's fingerprint (external tables, from the probe) or
//! the producer's recorded output fingerprint when that target is fresh
//! (internal tables), else a pending mark. Prefix sums over the column make
//! any input range's digest one subtraction. A target's key hashes its
//! node's slice hash, its partition and its input digests (`KeyDoc`); when it
//! matches the recorded key and the output is still there as recorded, the
//! target is fresh.
//!
//! Reasons are found cheaply first (hash comparisons), and only for targets
//! that differ are the stored slice and input versions read to name the
//! changed field or partition.
//!
//! Here: the plan, its options, `compute` and `decide`. Beside it:
//! `column` (columns and range digests), `key` (the key document and
//! `evaluate`: where a key is made), `explain` (reasons), `record` (what a
//! build records), `memo` (skipping untouched nodes), `unchanged` (nodes
//! held by their tables' versions, before any table is listed), `live`
//! (the plan a run keeps current), `reason` (statuses and reasons),
//! `render` (output).

mod column;
mod decide;
mod explain;
mod key;
pub(crate) mod live;
pub(crate) mod memo;
pub(crate) mod reason;
mod record;
pub(crate) mod render;
mod unchanged;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use rayon::prelude::*;
use serde::Serialize;

use crate::config::Repo;
use crate::error::Error;
use crate::exec::command::{self, CommandLine};
use crate::graph::{Graph, Input, Node, NodeId, Schedule, Start, Step};
use crate::hash::Hash;
use crate::partition::{Day, DayRange};
use crate::probe::{Partitions, Probe};
use crate::settings::Settings;
use crate::store::{Memo, NO_PARTITION, NodeKey, NodeState, StateStore, day_column};

pub use column::{Column, Entry};
use decide::decide_all;
pub use decide::{Decision, decide};
pub use explain::Explainer;
pub(crate) use key::read_range;
pub use key::{Evaluation, InputDigest, KeyDoc, evaluate};
pub use reason::{FieldChange, Missing, StaleReason, Status, StatusKind, Upstream};
pub use record::{BuildRecord, reads, slice_json};
use unchanged::Unchanged;

#[derive(Clone, Debug)]
pub struct TargetPlan {
    pub day: Option<Day>,
    pub status: Status,
    /// The current key, when every input is known.
    pub key: Option<Hash>,
}

#[derive(Debug, Default)]
pub struct NodePlan {
    pub targets: Vec<TargetPlan>,
}

pub struct Plan {
    pub until: Day,
    /// Indexed by node id; nodes outside the selection and its upstream are
    /// empty.
    pub nodes: Vec<NodePlan>,
    /// Nodes the user asked about.
    pub shown: Vec<bool>,
    pub notes: Vec<String>,
    /// Every input column the plan used, probed and internal.
    pub columns: HashMap<String, Column>,
    /// Nodes planned: the selection and its upstream.
    pub planned: Vec<bool>,
    /// What the state recorded, by node id.
    pub state: Vec<NodeState>,
    /// Every probed table's partitions.
    pub probed: HashMap<String, Partitions>,
    /// Partitions of tables nodes write that lie before the node's start:
    /// no build wants them and a clean build would not have them.
    pub orphans: Vec<Orphan>,
    /// Memos of nodes planned fresh up to a day whose stored memo differs:
    /// `run` stores them (`memo`).
    pub memos: Vec<(NodeKey, Memo)>,
}

/// Partitions of a node's output before its start (a start moved later):
/// `run` removes them from the embedded warehouse, `gc` from others.
#[derive(Clone, Debug, Serialize)]
pub struct Orphan {
    pub target: String,
    pub table: String,
    pub start: Day,
    pub partitions: Vec<Day>,
}

impl Plan {
    /// Whether a node's targets are part of this plan's work: the
    /// selection, and the upstream it reads (which `run` with the same
    /// selection builds when stale). `plan`, `run -n` and `run` list and
    /// run exactly these.
    pub fn lists(&self, id: NodeId) -> bool {
        self.planned[id]
    }

    /// Whether a node is in the work only because the selection reads it.
    pub fn pulled_in(&self, id: NodeId) -> bool {
        self.planned[id] && !self.shown[id]
    }

    /// The columns of a node's inputs, as `evaluate` takes them.
    pub fn input_columns<'p>(&'p self, graph: &Graph, node: &Node) -> Vec<Option<&'p Column>> {
        input_columns(&self.columns, graph, node)
    }
}

/// The column of each input of a node; ordering-only inputs have none.
fn input_columns<'c>(
    columns: &'c HashMap<String, Column>,
    graph: &Graph,
    node: &Node,
) -> Vec<Option<&'c Column>> {
    let column = |i: &Input| {
        if i.ordering_only {
            None
        } else {
            columns.get(&internal_or_external(graph, i))
        }
    };
    node.inputs.iter().map(column).collect()
}

pub struct PlanOptions {
    pub until: Day,
    pub from: Option<Day>,
    /// Which nodes to plan and show; their upstream is planned too.
    pub selected: Vec<bool>,
    /// Load every recorded target, or only those the plan needs: with
    /// `lazily`, a node whose memo holds and whose output no planned node
    /// reads keeps its targets in the state file (its plan has statuses but
    /// no recorded keys, and `Plan::state` has none of its builds).
    pub lazily: bool,
}

impl PlanOptions {
    pub fn new(until: Day, from: Option<Day>, selected: Vec<bool>) -> PlanOptions {
        PlanOptions {
            until,
            from,
            selected,
            lazily: false,
        }
    }

    /// Reads recorded targets only where the plan needs them (`plan` and
    /// `run`, which show and decide statuses; not `status`, which shows
    /// what was built).
    pub fn lazily(self) -> PlanOptions {
        PlanOptions {
            lazily: true,
            ..self
        }
    }
}

/// Everything planning reads.
pub struct Context<'a> {
    pub repo: &'a Repo,
    pub settings: &'a Settings,
    pub graph: &'a Graph,
    pub probe: &'a dyn Probe,
    pub store: Option<&'a StateStore>,
}

pub fn node_key(node: &Node) -> NodeKey {
    NodeKey::new(node.step, &node.name, node.part.as_deref())
}

/// Partitions of every table the planned nodes that are not held read or
/// start from that is not written by another node, and of the outputs of
/// nodes with a build recorded that such a node reads or that are not held
/// themselves: listed once each, in parallel, beside those in `listed`.
fn probe_tables(
    graph: &Graph,
    probe: &dyn Probe,
    planned: &[bool],
    built: &HashSet<NodeKey>,
    unchanged: &Unchanged,
    mut listed: HashMap<String, Partitions>,
) -> Result<HashMap<String, Partitions>, Error> {
    let mut tables = BTreeSet::new();
    for node in graph.nodes.iter().filter(|n| planned[n.id]) {
        let held = unchanged.held[node.id];
        if !held {
            tables.extend(node.external_inputs().map(|i| i.table.to_string()));
            tables.extend(node.start_table().map(str::to_string));
        }
        let read = !held || unchanged.read_by_unheld(graph, planned, node.id);
        let built = built.contains(&node_key(node));
        if let Some(output) = node.probed_table().filter(|_| built && read) {
            tables.insert(output.to_string());
        }
    }
    let tables = tables
        .into_iter()
        .filter(|t| !listed.contains_key(t))
        .collect();
    listed.extend(probe.list_all(tables)?);
    Ok(listed)
}

/// The tables whose first partition starts a planned node.
fn start_tables(graph: &Graph, planned: &[bool]) -> Vec<String> {
    let starts = graph.nodes.iter().filter(|n| planned[n.id]);
    let tables: BTreeSet<&str> = starts.filter_map(Node::start_table).collect();
    tables.into_iter().map(str::to_string).collect()
}

/// Partitions of the planned daily nodes' probed outputs before their start
/// (the config's, bounded by the `start` setting; `--from` only narrows
/// the view and changes nothing here).
fn orphans(ctx: &Context, planned: &[bool], probed: &HashMap<String, Partitions>) -> Vec<Orphan> {
    let planned = ctx.graph.nodes.iter().filter(|n| planned[n.id]);
    planned.filter_map(|n| orphan(ctx, n, probed)).collect()
}

/// The partitions of a daily node's probed output before its start, if
/// any (and its output was listed).
fn orphan(ctx: &Context, node: &Node, probed: &HashMap<String, Partitions>) -> Option<Orphan> {
    let (Schedule::Daily { start }, Some(table)) = (&node.schedule, node.probed_table()) else {
        return None;
    };
    let partitions = probed.get(table)?;
    let start = [start_day(start, probed), ctx.settings.start]
        .into_iter()
        .flatten()
        .max()?;
    let before: Vec<Day> = partitions.range(..start).map(|(d, _)| *d).collect();
    (!before.is_empty()).then(|| Orphan {
        target: node.label(),
        table: table.to_string(),
        start,
        partitions: before,
    })
}

/// The config's start of a daily node, given the probed tables (a start
/// from a table's first partition).
fn start_day(start: &Start, probed: &HashMap<String, Partitions>) -> Option<Day> {
    start.day(|table| probed.get(table).and_then(|p| p.keys().next().copied()))
}

/// The first table `node` reads that an invalid config writes, with that
/// config's path.
fn invalid_input<'t>(
    node: &Node,
    invalid_tables: &HashMap<&'t str, &'t str>,
) -> Option<(&'t str, &'t str)> {
    node.external_inputs().find_map(|i| {
        invalid_tables
            .get_key_value(i.base_table())
            .map(|(t, c)| (*t, *c))
    })
}

/// Whether a target is blocked by an invalid config (it stays so for the
/// whole run).
pub fn blocked_by_invalid_config(status: &Status) -> bool {
    matches!(status, Status::Blocked { input } if input.invalid_config.is_some())
}

/// Why a daily node has no target up to `--until`, and what to do.
fn no_targets_note(
    node: &Node,
    start: &Start,
    opts: &PlanOptions,
    probed: &HashMap<String, Partitions>,
) -> String {
    let label = node.label();
    let until = opts.until;
    match start {
        Start::Unknown => format!(
            "{label}: no start partition in the config; pass --from or set `start` in chronon-build.toml"
        ),
        Start::FirstPartitionOf(table) | Start::FirstPartitionPlus { table, .. }
            if probed.get(table).is_none_or(|p| p.is_empty()) =>
        {
            format!(
                "{label}: no targets: it starts at the first partition of {table}, which has none \
                 yet (no startPartition names a start); targets appear once {table} has data, or \
                 pass --from or set `start` in chronon-build.toml"
            )
        }
        start => match start_day(start, probed) {
            Some(first) => format!(
                "{label}: no targets up to --until {until}: its first partition is {first}{}",
                opts.from
                    .filter(|f| *f > until.min(first))
                    .map(|f| format!(" (and --from is {f})"))
                    .unwrap_or_default()
            ),
            None => format!("{label}: no targets up to --until {until}"),
        },
    }
}

/// The most daily partitions one node may want (about 27 years): the
/// plan's cost grows with the span asked for, so a start far in the past or
/// an `--until` far in the future is refused rather than planned for hours.
pub const MAX_SPAN_DAYS: usize = 10_000;

/// The partitions of a node wanted up to `until`; a span over
/// `MAX_SPAN_DAYS` is an error naming the node and what to change.
pub fn wanted_days(
    node: &Node,
    until: Day,
    from: Option<Day>,
    settings: &Settings,
    probed: &HashMap<String, Partitions>,
) -> Result<Vec<Option<Day>>, Error> {
    match &node.schedule {
        Schedule::Unpartitioned => Ok(vec![None]),
        Schedule::Latest => Ok(vec![Some(until)]),
        Schedule::Daily { start } => {
            let start = start_day(start, probed);
            let bound = [settings.start, from].into_iter().flatten().max();
            let Some(start) = [start, bound].into_iter().flatten().max() else {
                return Ok(Vec::new());
            };
            let range = DayRange::new(start, until);
            if range.len() > MAX_SPAN_DAYS {
                return Err(Error::Usage(format!(
                    "{}: {start}..{until} is {} daily partitions, more than the {MAX_SPAN_DAYS} \
                     one node may plan; pass a later --from or an earlier --until, or set a later \
                     start (startPartition, backfillStartDate, or `start` in chronon-build.toml)",
                    node.label(),
                    range.len()
                )));
            }
            Ok(range.days().map(Some).collect())
        }
    }
}

/// The plan, in phases: load the state while the warehouse is probed
/// (`load`); key and decide each planned node's targets, producers first
/// (`Pass::plan_node`); name the reasons of the targets whose hashes
/// differ from their recorded builds (`Pass::explain`); check streaming
/// deploys against what runs; then the notes (`Pass::finish`).
pub fn compute(ctx: &Context, opts: &PlanOptions) -> Result<Plan, Error> {
    let graph = ctx.graph;
    let roots: Vec<NodeId> = (0..graph.nodes.len())
        .filter(|id| opts.selected[*id])
        .collect();
    let planned = graph.with_upstream(&roots);
    let Loaded {
        mut state,
        probed,
        built,
        unchanged,
    } = load(ctx, opts, &planned)?;
    let mut pass = Pass::new(ctx, opts, &planned, &probed, &built, &unchanged);
    for &id in &graph.order {
        if planned[id] {
            pass.plan_node(id, &mut state)?;
        }
    }
    pass.explain(&state)?;
    check_streaming(ctx, &mut pass.nodes, &planned)?;
    let decided = pass.finish(state);
    Ok(Plan {
        until: opts.until,
        nodes: decided.nodes,
        shown: opts.selected.clone(),
        notes: decided.notes,
        columns: decided.columns,
        planned,
        state: decided.state,
        orphans: decided.orphans,
        probed,
        memos: decided.memos,
    })
}

/// What a pass decided, for the plan.
struct Decided {
    nodes: Vec<NodePlan>,
    notes: Vec<String>,
    columns: HashMap<String, Column>,
    state: Vec<NodeState>,
    orphans: Vec<Orphan>,
    memos: Vec<(NodeKey, Memo)>,
}

/// What the planner reads before deciding: the state (lazily or whole), the
/// probed tables, which nodes have a build recorded, and which nodes
/// nothing touched.
struct Loaded {
    state: HashMap<NodeKey, NodeState>,
    probed: HashMap<String, Partitions>,
    built: HashSet<NodeKey>,
    unchanged: Unchanged,
}

/// Loads the state while the warehouse is probed: the outputs probed are
/// those of nodes with a build recorded, which one query finds. A lazy
/// plan first reads the tables' versions (and the tables that start
/// nodes) while it loads the state, finds the nodes nothing touched
/// (`unchanged`), and lists only the tables the others need.
fn load(ctx: &Context, opts: &PlanOptions, planned: &[bool]) -> Result<Loaded, Error> {
    let graph = ctx.graph;
    let built = match ctx.store {
        Some(store) => store.built_nodes()?,
        None => HashSet::new(),
    };
    let Some(store) = ctx.store.filter(|_| opts.lazily) else {
        let unchanged = Unchanged::none(graph.nodes.len());
        let (state, probed) = std::thread::scope(|s| {
            let listed = HashMap::new();
            let probing =
                s.spawn(|| probe_tables(graph, ctx.probe, planned, &built, &unchanged, listed));
            let state = ctx.store.map_or(Ok(HashMap::new()), StateStore::load);
            let probed = probing.join().expect("probing does not panic");
            Ok::<_, Error>((state?, probed?))
        })?;
        return Ok(Loaded {
            state,
            probed,
            built,
            unchanged,
        });
    };
    let (state, starts, versions) = std::thread::scope(|s| {
        let reading = s.spawn(|| {
            let versions = ctx.probe.versions(&unchanged::tables(graph, planned))?;
            let starts = ctx.probe.list_all(start_tables(graph, planned))?;
            Ok::<_, Error>((starts.into_iter().collect::<HashMap<_, _>>(), versions))
        });
        let state = store.load_lazily();
        let (starts, versions) = reading.join().expect("reading does not panic")?;
        Ok::<_, Error>((state?, starts, versions))
    })?;
    let unchanged = unchanged::find(ctx, opts, planned, &state, &versions, &starts)?;
    let probed = probe_tables(graph, ctx.probe, planned, &built, &unchanged, starts)?;
    Ok(Loaded {
        state,
        probed,
        built,
        unchanged,
    })
}

/// One plan being made: the columns so far (probed, and the internal ones
/// of nodes already planned), each node's targets, and what is left to
/// explain.
struct Pass<'p> {
    ctx: &'p Context<'p>,
    opts: &'p PlanOptions,
    planned: &'p [bool],
    probed: &'p HashMap<String, Partitions>,
    built: &'p HashSet<NodeKey>,
    unchanged: &'p Unchanged,
    /// Tables that invalid configs (left out of the graph) would write.
    invalid_tables: HashMap<&'p str, &'p str>,
    columns: HashMap<String, Column>,
    nodes: Vec<NodePlan>,
    /// Per node, the targets whose hashes differ from the recorded build.
    to_explain: Vec<(NodeId, Vec<usize>)>,
    memos: Vec<(NodeKey, Memo)>,
}

impl<'p> Pass<'p> {
    fn new(
        ctx: &'p Context<'p>,
        opts: &'p PlanOptions,
        planned: &'p [bool],
        probed: &'p HashMap<String, Partitions>,
        built: &'p HashSet<NodeKey>,
        unchanged: &'p Unchanged,
    ) -> Pass<'p> {
        let invalid_tables = ctx
            .repo
            .invalid
            .iter()
            .flat_map(|c| c.tables.iter().map(|t| (t.as_str(), c.path.as_str())))
            .collect();
        // One hash per probed partition: in parallel across tables.
        let columns = probed
            .par_iter()
            .map(|(table, partitions)| (table.clone(), Column::from_partitions(table, partitions)))
            .collect();
        Pass {
            ctx,
            opts,
            planned,
            probed,
            built,
            unchanged,
            invalid_tables,
            columns,
            nodes: (0..ctx.graph.nodes.len())
                .map(|_| NodePlan::default())
                .collect(),
            to_explain: Vec::new(),
            memos: Vec::new(),
        }
    }

    /// Keys and decides one node's targets: the first `held` fresh by the
    /// stored memo (all of them when nothing touched the node:
    /// `unchanged`), the rest evaluated one by one.
    fn plan_node(
        &mut self,
        id: NodeId,
        state: &mut HashMap<NodeKey, NodeState>,
    ) -> Result<(), Error> {
        let (ctx, opts) = (self.ctx, self.opts);
        let node = &ctx.graph.nodes[id];
        let key = node_key(node);
        // Dependents held by their memos read nothing of this node.
        let read_by_planned = self.unchanged.read_by_unheld(ctx.graph, self.planned, id);
        let state = state.entry(key.clone()).or_default();
        let days = wanted_days(node, opts.until, opts.from, ctx.settings, self.probed)?;
        let output_column = node.output.as_ref().and_then(|t| self.columns.get(t));
        let inputs = input_columns(&self.columns, ctx.graph, node);
        let basis = memo::Basis {
            node,
            until: opts.until,
            inputs: &inputs,
            output: output_column,
        };
        let held = match self.unchanged.held[id] {
            true => days.len(),
            false => basis.held(&days, state),
        };
        let all = (read_by_planned && probed_column(node, output_column).is_none())
            || node.step == Step::GroupByStreaming;
        self.load_targets(&key, state, &days, held, all)?;
        let state = &*state;
        let decided = decide_all(node, &days, held, opts.until, &inputs, state, output_column);
        let (targets, differ) = self.blocked_by_invalid(node, decided);
        // The memo of the targets fresh up to a day, for the next plan.
        let fresh = targets
            .iter()
            .take_while(|t| t.status == Status::Fresh)
            .count();
        let with_versions = |memo: Memo| Memo {
            versions: self.by_versions(node, fresh == days.len()),
            ..memo
        };
        let memo = match fresh {
            0 => None,
            _ if self.unchanged.held[id] => state.memo,
            _ if fresh == held => state.memo.map(with_versions),
            _ => basis.memo(&days[..fresh], state).map(with_versions),
        };
        if let Some(memo) = memo
            && state.memo != Some(memo)
        {
            self.memos.push((key, memo));
        }
        self.nodes[id].targets = targets;
        if !differ.is_empty() {
            self.to_explain.push((id, differ));
        }
        if let Some(output) = &node.output
            && read_by_planned
        {
            let column = internal_column(node, output, &self.nodes[id], state, output_column);
            self.columns.insert(internal_key(output), column);
        }
        Ok(())
    }

    /// The memo by versions to store beside a node's memo: when the memo
    /// covers all its targets (`all`), the producers it reads (planned
    /// before it) are all fresh too, and its output has no partition before
    /// its start (which a plan that does not list it would not see).
    fn by_versions(&self, node: &Node, all: bool) -> Option<Hash> {
        let fresh = |p: NodeId| {
            let targets = &self.nodes[p].targets;
            targets.iter().all(|t| t.status == Status::Fresh)
        };
        let keep = all
            && node.producers_read().all(fresh)
            && orphan(self.ctx, node, self.probed).is_none();
        self.unchanged.digests[node.id].filter(|_| keep)
    }

    /// Loaded lazily: what the memo does not settle (the days after those
    /// it holds for, `held`), what dependents read (their input columns)
    /// unless the node's probed output shows it, and streaming deploys
    /// (their keys are checked against the running job): `all`.
    fn load_targets(
        &self,
        key: &NodeKey,
        state: &mut NodeState,
        days: &[Option<Day>],
        held: usize,
        all: bool,
    ) -> Result<(), Error> {
        let Some(store) = self.ctx.store else {
            return Ok(());
        };
        if !self.opts.lazily || !self.built.contains(key) {
            return Ok(());
        }
        if all || held < days.len() {
            let from = match held {
                _ if all || held == 0 => NO_PARTITION,
                held => day_column(days[held - 1]) + 1,
            };
            state.built = store.load_targets(key, from..=i64::MAX)?;
        }
        Ok(())
    }

    /// Targets that read a table an invalid config writes are blocked on
    /// it; the others, and the indexes of those whose reason is to be
    /// looked up.
    fn blocked_by_invalid(
        &self,
        node: &Node,
        decided: Vec<Decision>,
    ) -> (Vec<TargetPlan>, Vec<usize>) {
        let mut targets = Vec::with_capacity(decided.len());
        let mut differ = Vec::new();
        let invalid = invalid_input(node, &self.invalid_tables)
            .map(|(table, config)| (Arc::<str>::from(table), config));
        for (i, Decision { mut target, detail }) in decided.into_iter().enumerate() {
            if let Some((table, config)) = &invalid {
                target.status = Status::Blocked {
                    input: Arc::new(Missing {
                        table: table.clone(),
                        partition: target.day.unwrap_or(self.opts.until),
                        invalid_config: Some(config.to_string()),
                    }),
                };
            } else if detail {
                differ.push(i);
            }
            targets.push(target);
        }
        (targets, differ)
    }

    /// The reasons of targets whose hashes differ from their recorded
    /// builds: the stored slice and input versions are read to name the
    /// changed field or partition.
    fn explain(&mut self, state: &HashMap<NodeKey, NodeState>) -> Result<(), Error> {
        let graph = self.ctx.graph;
        let mut explainer = Explainer::new(self.ctx);
        for (id, differ) in std::mem::take(&mut self.to_explain) {
            let node = &graph.nodes[id];
            let Some(built) = state.get(&node_key(node)).map(|s| &s.built) else {
                continue;
            };
            let inputs = input_columns(&self.columns, graph, node);
            for i in differ {
                let day = self.nodes[id].targets[i].day;
                let Some(recorded) = built.get(&day_column(day)) else {
                    continue;
                };
                let at = day.unwrap_or(self.opts.until);
                let reason = explainer.reason(node, at, day, recorded, &inputs)?;
                self.nodes[id].targets[i].status = Status::Stale(reason);
            }
        }
        Ok(())
    }

    /// What was decided, with the notes: configs with no target up to
    /// `--until` say why.
    fn finish(self, mut state: HashMap<NodeKey, NodeState>) -> Decided {
        let (ctx, opts) = (self.ctx, self.opts);
        let graph = ctx.graph;
        let orphans = orphans(ctx, self.planned, self.probed);
        let mut notes = ctx.repo.notes.clone();
        notes.extend(graph.notes.iter().cloned());
        for node in graph.nodes.iter().filter(|n| opts.selected[n.id]) {
            if !self.nodes[node.id].targets.is_empty() {
                continue;
            }
            if let Schedule::Daily { start } = &node.schedule {
                notes.push(no_targets_note(node, start, opts, self.probed));
            }
        }
        let state = graph
            .nodes
            .iter()
            .map(|n| state.remove(&node_key(n)).unwrap_or_default())
            .collect();
        Decided {
            nodes: self.nodes,
            notes,
            columns: self.columns,
            state,
            orphans,
            memos: self.memos,
        }
    }
}

/// Streaming keep-alive: a deploy recorded as built is still stale when the
/// status command says no job runs, or one runs with another config hash.
fn check_streaming(ctx: &Context, nodes: &mut [NodePlan], planned: &[bool]) -> Result<(), Error> {
    let streaming = &ctx.settings.streaming;
    if streaming.status_command.is_empty() {
        return Ok(());
    }
    for node in ctx.graph.nodes.iter().filter(|n| planned[n.id]) {
        if node.step != Step::GroupByStreaming {
            continue;
        }
        for target in &mut nodes[node.id].targets {
            let (Status::Fresh, Some(key)) = (&target.status, target.key) else {
                continue;
            };
            let reason = match streaming_status(streaming, &node.name)? {
                Some(running) if running == key.to_string() => continue,
                Some(running) => StaleReason::StreamingOutdated { running },
                None => StaleReason::StreamingNotRunning,
            };
            target.status = Status::Stale(Arc::new(reason));
        }
    }
    Ok(())
}

/// Runs the status command: `Some(hash)` when it prints `running HASH`.
fn streaming_status(
    streaming: &crate::settings::StreamingSettings,
    config: &str,
) -> Result<Option<String>, Error> {
    let command = CommandLine::filled(
        &streaming.status_command,
        &[("config", config)],
        Path::new("."),
    );
    let argv = &command.argv;
    let output = command::run_captured(&command, b"", streaming.status_timeout)
        .map_err(|e| Error::Io(format!("streaming.status_command {argv:?}: {e}")))?;
    if !output.status.success() {
        return Err(Error::Io(format!(
            "streaming.status_command {argv:?} failed ({}): {}",
            output.status,
            output.stderr_text()
        )));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    Ok(stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("running "))
        .map(|h| h.trim().to_string()))
}

/// Internal tables are keyed apart from probed ones, so a producer's output
/// column (recorded fingerprints) never mixes with the same table as probed.
pub fn internal_key(table: &str) -> String {
    format!("internal:{table}")
}

fn internal_or_external(graph: &Graph, input: &Input) -> String {
    match input.producer {
        Some(p) => internal_key(graph.nodes[p].output.as_deref().unwrap_or_default()),
        None => input.table.to_string(),
    }
}

/// What dependents see of a node's output: recorded output fingerprints of
/// fresh targets, and pending marks for the rest.
pub fn internal_column(
    node: &Node,
    table: &str,
    plan: &NodePlan,
    state: &NodeState,
    output: Option<&Column>,
) -> Column {
    let days: Vec<Day> = plan.targets.iter().filter_map(|t| t.day).collect();
    let (Some(first), Some(last)) = (days.first(), days.last()) else {
        return Column::new(table, Day(0), Vec::new());
    };
    let mut entries = vec![Entry::Absent; (last.0 - first.0 + 1) as usize];
    let label = node.label().into();
    for target in &plan.targets {
        let Some(day) = target.day else { continue };
        entries[(day.0 - first.0) as usize] = internal_entry(node, &label, target, state, output);
    }
    Column::new(table, *first, entries)
}

/// A node's output column when its partitions are probed (`Node::probed_table`),
/// `None` when its recorded output is its key. A fresh target's partition
/// there is as recorded (`decide`), so dependents can see its fresh targets
/// in it, their records left unloaded; and the node's memo digests it.
fn probed_column<'c>(node: &Node, output: Option<&'c Column>) -> Option<&'c Column> {
    output.filter(|_| node.probed_output)
}

/// What dependents see of one target of a node: a fresh one's recorded
/// output (from the node's `probed_column` when its targets were not
/// loaded). `label` is the node's, made once for all its targets: a
/// waiting dependent holds it, not a name of its own.
pub fn internal_entry(
    node: &Node,
    label: &Arc<str>,
    target: &TargetPlan,
    state: &NodeState,
    output: Option<&Column>,
) -> Entry {
    match &target.status {
        Status::Fresh => match (state.built.get(&day_column(target.day)), target.day) {
            (Some(recorded), _) => Entry::Present(recorded.output),
            (None, Some(day)) => {
                probed_column(node, output).map_or(Entry::Absent, |column| column.get(day).clone())
            }
            (None, None) => Entry::Absent,
        },
        Status::Blocked { input } => Entry::Pending(Status::Blocked {
            input: input.clone(),
        }),
        _ => Entry::Pending(Status::Waiting {
            upstream: Upstream {
                node: label.clone(),
                day: target.day,
            },
        }),
    }
}
