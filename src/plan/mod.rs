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

pub mod live;
pub mod memo;
pub mod reason;
pub mod render;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use rayon::prelude::*;
use serde::Serialize;
use serde_json::Value;

use crate::config::Repo;
use crate::error::Error;
use crate::graph::{Graph, Input, Node, NodeId, Schedule, Start, Step};
use crate::hash::{self, Hash, KEY_VERSION, Lanes};
use crate::partition::{Day, DayRange};
use crate::probe::{Partitions, Probe};
use crate::settings::Settings;
use crate::store::{NodeKey, NodeState, Recorded, StateStore, day_column};

pub use reason::{FieldChange, Missing, StaleReason, Status, StatusKind};

/// The document a key hashes. Stored beside nothing: every part of it can be
/// rebuilt from the config, the probe and the state, which `explain` does.
#[derive(Serialize)]
pub struct KeyDoc<'a> {
    pub key_version: u32,
    pub step: Step,
    pub slice: Hash,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<Day>,
    pub inputs: &'a [InputDigest],
}

impl<'a> KeyDoc<'a> {
    /// The one way a target's key document is made: `evaluate` hashes it,
    /// `explain` shows it.
    pub fn new(node: &Node, day: Option<Day>, inputs: &'a [InputDigest]) -> KeyDoc<'a> {
        KeyDoc {
            key_version: KEY_VERSION,
            step: node.step,
            slice: node.slice_hash,
            partition: day,
            inputs,
        }
    }

    pub fn key(&self) -> Hash {
        Hash::of_json(self)
    }

    /// The hash of the inputs' JSON and the key, serializing the inputs
    /// once: the key document's JSON is its fields before `inputs`, then the
    /// inputs' JSON, then `}` (`key_document_json_is_built_as_serde_writes_it`
    /// checks the bytes are serde's).
    pub fn hashes(&self) -> (Hash, Hash) {
        let inputs = inputs_json(self.inputs);
        let mut head = Vec::with_capacity(160);
        head.extend_from_slice(b"{\"key_version\":");
        head.extend_from_slice(self.key_version.to_string().as_bytes());
        head.extend_from_slice(b",\"step\":");
        serde_json::to_writer(&mut head, &self.step).expect("serializing to memory cannot fail");
        head.extend_from_slice(b",\"slice\":");
        serde_json::to_writer(&mut head, &self.slice).expect("serializing to memory cannot fail");
        if let Some(day) = self.partition {
            head.extend_from_slice(b",\"partition\":");
            serde_json::to_writer(&mut head, &day).expect("serializing to memory cannot fail");
        }
        head.extend_from_slice(b",\"inputs\":");
        let mut key = blake3::Hasher::new();
        key.update(&head);
        key.update(&inputs);
        key.update(b"}");
        (Hash::of(&inputs), Hash(*key.finalize().as_bytes()))
    }
}

/// The inputs' JSON, byte for byte as serde writes it (field order, string
/// escapes), without serde's per-field work: a plan writes one per target.
fn inputs_json(inputs: &[InputDigest]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + inputs.len() * (160 + 2 * 32));
    out.push(b'[');
    for (i, input) in inputs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"table\":");
        serde_json::to_writer(&mut out, &input.table).expect("serializing to memory cannot fail");
        out.extend_from_slice(b",\"from\":\"");
        out.extend_from_slice(&input.from.text_bytes());
        out.extend_from_slice(b"\",\"to\":\"");
        out.extend_from_slice(&input.to.text_bytes());
        out.extend_from_slice(b"\",\"present\":");
        out.extend_from_slice(input.present.to_string().as_bytes());
        out.extend_from_slice(b",\"digest\":\"");
        out.extend_from_slice(&input.digest.hex_bytes());
        out.extend_from_slice(b"\"}");
    }
    out.push(b']');
    out
}

/// What a target reads of one table: the range, how many partitions are
/// present in it, and the digest of their fingerprints.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct InputDigest {
    pub table: String,
    pub from: Day,
    pub to: Day,
    pub present: u32,
    pub digest: Hash,
}

/// A day of a column.
#[derive(Clone, Debug)]
pub enum Entry {
    Absent,
    Present(Hash),
    /// The producer's target is not fresh: the reader must wait, or is
    /// blocked with it.
    Pending(Status),
}

/// One table's partitions by day, with prefix sums for range digests.
pub struct Column {
    pub table: String,
    first: Day,
    entries: Vec<Entry>,
    sums: Vec<Lanes>,
    present: Vec<u32>,
    pending: Vec<u32>,
}

impl Column {
    pub fn new(table: &str, first: Day, entries: Vec<Entry>) -> Column {
        let mut sums = Vec::with_capacity(entries.len() + 1);
        let mut present = Vec::with_capacity(entries.len() + 1);
        let mut pending = Vec::with_capacity(entries.len() + 1);
        let (mut s, mut p, mut w) = (Lanes::default(), 0u32, 0u32);
        sums.push(s);
        present.push(p);
        pending.push(w);
        for (i, entry) in entries.iter().enumerate() {
            match entry {
                Entry::Present(fp) => {
                    s = s.plus(Lanes::of(&hash::partition_hash(
                        table,
                        first.plus(i as i32),
                        fp,
                    )));
                    p += 1;
                }
                Entry::Pending(_) => w += 1,
                Entry::Absent => {}
            }
            sums.push(s);
            present.push(p);
            pending.push(w);
        }
        Column {
            table: table.to_string(),
            first,
            entries,
            sums,
            present,
            pending,
        }
    }

    pub fn from_partitions(table: &str, partitions: &Partitions) -> Column {
        let (Some(first), Some(last)) = (partitions.keys().next(), partitions.keys().next_back())
        else {
            return Column::new(table, Day(0), Vec::new());
        };
        let mut entries = vec![Entry::Absent; (last.0 - first.0 + 1) as usize];
        for (day, fp) in partitions {
            entries[(day.0 - first.0) as usize] = Entry::Present(*fp);
        }
        Column::new(table, *first, entries)
    }

    /// Replaces the entry of a day inside the column's span, keeping the
    /// prefix sums right: O(days after it), with one hash for the new entry.
    pub fn set(&mut self, day: Day, entry: Entry) {
        let i = day.0 - self.first.0;
        if i < 0 || i as usize >= self.entries.len() {
            return;
        }
        let i = i as usize;
        let weigh = |e: &Entry| match e {
            Entry::Present(fp) => (
                Lanes::of(&hash::partition_hash(&self.table, day, fp)),
                1u32,
                0u32,
            ),
            Entry::Pending(_) => (Lanes::default(), 0, 1),
            Entry::Absent => (Lanes::default(), 0, 0),
        };
        let (old_lanes, old_present, old_pending) = weigh(&self.entries[i]);
        let (new_lanes, new_present, new_pending) = weigh(&entry);
        self.entries[i] = entry;
        for k in i + 1..self.sums.len() {
            self.sums[k] = self.sums[k].minus(old_lanes).plus(new_lanes);
            self.present[k] = self.present[k] - old_present + new_present;
            self.pending[k] = self.pending[k] - old_pending + new_pending;
        }
    }

    pub fn get(&self, day: Day) -> &Entry {
        let i = day.0 - self.first.0;
        if i < 0 {
            &Entry::Absent
        } else {
            self.entries.get(i as usize).unwrap_or(&Entry::Absent)
        }
    }

    pub fn first_present(&self) -> Option<Day> {
        self.entries
            .iter()
            .position(|e| matches!(e, Entry::Present(_)))
            .map(|i| self.first.plus(i as i32))
    }

    /// Index bounds of `range` within the column, as `lo..hi`.
    fn span(&self, range: DayRange) -> (usize, usize) {
        let len = self.entries.len() as i32;
        let lo = (range.from.0 - self.first.0).clamp(0, len);
        let hi = (range.to.0 - self.first.0 + 1).clamp(0, len);
        (lo as usize, hi.max(lo) as usize)
    }

    pub fn digest(&self, range: DayRange) -> (u32, Hash) {
        let (lo, hi) = self.span(range);
        let present = self.present[hi] - self.present[lo];
        (present, self.sums[hi].minus(self.sums[lo]).digest(present))
    }

    /// The first pending entry in range, if any.
    pub fn first_pending(&self, range: DayRange) -> Option<&Status> {
        let (lo, hi) = self.span(range);
        if self.pending[hi] == self.pending[lo] {
            return None;
        }
        self.entries[lo..hi].iter().find_map(|e| match e {
            Entry::Pending(status) => Some(status),
            _ => None,
        })
    }

    /// Present partitions in range with their fingerprints.
    pub fn present_in(&self, range: DayRange) -> Vec<(Day, Hash)> {
        let (lo, hi) = self.span(range);
        (lo..hi)
            .filter_map(|i| match &self.entries[i] {
                Entry::Present(fp) => Some((self.first.plus(i as i32), *fp)),
                _ => None,
            })
            .collect()
    }
}

/// The outcome of looking at a target's inputs.
pub enum Evaluation {
    /// Cannot be keyed yet: blocked on a missing input or waiting on an
    /// upstream target.
    Pending(Status),
    Ready {
        inputs: Vec<InputDigest>,
        inputs_hash: Hash,
        key: Hash,
    },
}

/// The days of an input a target at `at` reads (its lookback from the
/// column's first partition).
fn read_range(input: &Input, column: &Column, at: Day) -> DayRange {
    input.range(at, column.first_present())
}

/// Looks at one target's inputs. `columns[i]` is the column of
/// `node.inputs[i]`; ordering-only inputs have none.
pub fn evaluate(node: &Node, day: Option<Day>, at: Day, columns: &[Option<&Column>]) -> Evaluation {
    let mut waiting: Option<&Status> = None;
    let mut inputs = Vec::with_capacity(node.inputs.len());
    for (input, column) in node.inputs.iter().zip(columns) {
        let Some(column) = column else { continue };
        if let Some(anchor) = input.anchor(at) {
            match column.get(anchor) {
                // Absent from a producer's table: the producer does not
                // build that day (it starts later, or stops earlier), so
                // no run will ever write it; reading on would race with
                // the producer creating its table.
                Entry::Absent => {
                    return Evaluation::Pending(Status::Blocked {
                        input: Arc::new(Missing {
                            table: input.table.clone(),
                            partition: anchor,
                            invalid_config: None,
                        }),
                    });
                }
                Entry::Pending(status @ Status::Blocked { .. }) => {
                    return Evaluation::Pending(status.clone());
                }
                _ => {}
            }
        }
        let range = read_range(input, column, at);
        if range.is_empty() {
            continue;
        }
        if let Some(status) = column.first_pending(range) {
            if matches!(status, Status::Blocked { .. }) {
                return Evaluation::Pending(status.clone());
            }
            waiting = waiting.or(Some(status));
            continue;
        }
        let (present, digest) = column.digest(range);
        inputs.push(InputDigest {
            table: input.table.clone(),
            from: range.from,
            to: range.to,
            present,
            digest,
        });
    }
    if let Some(status) = waiting {
        return Evaluation::Pending(status.clone());
    }
    inputs.sort();
    let (inputs_hash, key) = KeyDoc::new(node, day, &inputs).hashes();
    Evaluation::Ready {
        inputs,
        inputs_hash,
        key,
    }
}

#[derive(Clone, Debug)]
pub struct TargetPlan {
    pub day: Option<Day>,
    pub status: Status,
    /// The current key, when every input is known.
    pub key: Option<Hash>,
    /// The hash of the inputs' digests the key was made from, when it was
    /// made (recorded beside the key when the target is built).
    pub inputs_hash: Option<Hash>,
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
    /// Memos of nodes planned all fresh whose stored memo differs: `run`
    /// stores them (`memo`).
    pub memos: Vec<(NodeKey, Hash)>,
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

/// Columns for every table the planned nodes read or write that is not
/// written by another node: probed once each, in parallel.
fn probe_tables(
    graph: &Graph,
    probe: &dyn Probe,
    planned: &[bool],
    built: &HashSet<NodeKey>,
) -> Result<HashMap<String, Partitions>, Error> {
    let mut tables = BTreeSet::new();
    for node in graph.nodes.iter().filter(|n| planned[n.id]) {
        for input in node
            .inputs
            .iter()
            .filter(|i| i.producer.is_none() && !i.ordering_only)
        {
            tables.insert(input.table.clone());
        }
        if let Schedule::Daily { start } = &node.schedule
            && let Some(table) = start.probed_table()
        {
            tables.insert(table.to_string());
        }
        let built = built.contains(&node_key(node));
        if let Some(output) = node.output.as_ref().filter(|_| built && node.probed_output) {
            tables.insert(output.clone());
        }
    }
    Ok(probe
        .list_all(tables.into_iter().collect())?
        .into_iter()
        .collect())
}

/// Partitions of the planned daily nodes' probed outputs before their start
/// (the config's, bounded by the `start` setting; `--from` only narrows
/// the view and changes nothing here).
fn orphans(ctx: &Context, planned: &[bool], probed: &HashMap<String, Partitions>) -> Vec<Orphan> {
    let mut out = Vec::new();
    for node in ctx
        .graph
        .nodes
        .iter()
        .filter(|n| planned[n.id] && n.probed_output)
    {
        let (Schedule::Daily { start }, Some(table)) = (&node.schedule, &node.output) else {
            continue;
        };
        let Some(partitions) = probed.get(table) else {
            continue;
        };
        let Some(start) = [start_day(start, probed), ctx.settings.start]
            .into_iter()
            .flatten()
            .max()
        else {
            continue;
        };
        let before: Vec<Day> = partitions.range(..start).map(|(d, _)| *d).collect();
        if !before.is_empty() {
            out.push(Orphan {
                target: node.label(),
                table: table.clone(),
                start,
                partitions: before,
            });
        }
    }
    out
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
    node.inputs
        .iter()
        .filter(|i| i.producer.is_none() && !i.ordering_only)
        .find_map(|i| {
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

pub fn compute(ctx: &Context, opts: &PlanOptions) -> Result<Plan, Error> {
    let graph = ctx.graph;
    let roots: Vec<NodeId> = (0..graph.nodes.len())
        .filter(|id| opts.selected[*id])
        .collect();
    let planned = graph.with_upstream(&roots);
    // The warehouse is probed while the state loads: the outputs probed are
    // those of nodes with a build recorded, which one query finds.
    let built = match ctx.store {
        Some(store) => store.built_nodes()?,
        None => HashSet::new(),
    };
    let (mut state, probed) = match ctx.store {
        Some(store) => std::thread::scope(|s| {
            let probing = s.spawn(|| probe_tables(graph, ctx.probe, &planned, &built));
            let state = match opts.lazily {
                true => store.load_lazily(),
                false => store.load(),
            };
            let probed = probing.join().expect("probing does not panic");
            Ok::<_, Error>((state?, probed?))
        })?,
        None => (
            HashMap::new(),
            probe_tables(graph, ctx.probe, &planned, &built)?,
        ),
    };
    // Tables that invalid configs (left out of the graph) would write.
    let invalid_tables: HashMap<&str, &str> = ctx
        .repo
        .invalid
        .iter()
        .flat_map(|c| c.tables.iter().map(|t| (t.as_str(), c.path.as_str())))
        .collect();
    // One hash per probed partition: in parallel across tables.
    let mut columns: HashMap<String, Column> = probed
        .par_iter()
        .map(|(table, partitions)| (table.clone(), Column::from_partitions(table, partitions)))
        .collect();

    let mut nodes: Vec<NodePlan> = (0..graph.nodes.len())
        .map(|_| NodePlan::default())
        .collect();
    // Per node, the targets whose hashes differ from the recorded build.
    let mut to_explain: Vec<(NodeId, Vec<usize>)> = Vec::new();
    let mut memos = Vec::new();
    for &id in &graph.order {
        if !planned[id] {
            continue;
        }
        let node = &graph.nodes[id];
        let key = node_key(node);
        let read_by_planned = graph.dependents[id].iter().any(|d| planned[*d]);
        let state = state.entry(key).or_default();
        let days = wanted_days(node, opts.until, opts.from, ctx.settings, &probed)?;
        let output_column = node.output.as_ref().and_then(|t| columns.get(t));
        let inputs = input_columns(&columns, graph, node);
        let memo = memo::memo(node, &days, opts.until, &inputs, output_column, state);
        let held = memo.filter(|m| state.memo == Some(*m));
        // Loaded lazily: what the memo does not settle, what dependents
        // read (their input columns), and streaming deploys (their keys are
        // checked against the running job).
        if let Some(store) = ctx.store
            && opts.lazily
            && built.contains(&node_key(node))
            && (held.is_none() || read_by_planned || node.step == Step::GroupByStreaming)
        {
            state.built = store.load_targets(&node_key(node))?;
        }
        let state = &*state;
        let decided: Vec<(TargetPlan, bool)> = match held {
            // Nothing that decides this node changed since it was all
            // fresh: each target is fresh with its recorded key.
            Some(_) => days
                .iter()
                .map(|day| {
                    let key = state.built.get(&day_column(*day)).map(|r| r.key);
                    let target = TargetPlan {
                        day: *day,
                        status: Status::Fresh,
                        key,
                        inputs_hash: None,
                    };
                    (target, false)
                })
                .collect(),
            None => days
                .par_iter()
                .map(|day| {
                    let at = day.unwrap_or(opts.until);
                    let recorded = state.built.get(&day_column(*day));
                    let evaluation = evaluate(node, *day, at, &inputs);
                    decide(node, *day, evaluation, recorded, state, output_column)
                })
                .collect(),
        };
        let mut targets = Vec::with_capacity(decided.len());
        let mut differ = Vec::new();
        let invalid = invalid_input(node, &invalid_tables);
        for (i, (mut target, needs_reason)) in decided.into_iter().enumerate() {
            if let Some((table, config)) = invalid {
                target.status = Status::Blocked {
                    input: Arc::new(Missing {
                        table: table.to_string(),
                        partition: target.day.unwrap_or(opts.until),
                        invalid_config: Some(config.to_string()),
                    }),
                };
            } else if needs_reason {
                differ.push(i);
            }
            targets.push(target);
        }
        if let Some(memo) = memo
            && state.memo != Some(memo)
            && targets.iter().all(|t| t.status == Status::Fresh)
        {
            memos.push((node_key(node), memo));
        }
        nodes[id].targets = targets;
        if !differ.is_empty() {
            to_explain.push((id, differ));
        }

        if let Some(output) = &node.output
            && read_by_planned
        {
            let column = internal_column(node, output, &nodes[id], state);
            columns.insert(internal_key(output), column);
        }
    }

    let mut explainer = Explainer::new(ctx);
    for (id, differ) in to_explain {
        let node = &graph.nodes[id];
        let Some(built) = state.get(&node_key(node)).map(|s| &s.built) else {
            continue;
        };
        let inputs = input_columns(&columns, graph, node);
        for i in differ {
            let day = nodes[id].targets[i].day;
            let Some(recorded) = built.get(&day_column(day)) else {
                continue;
            };
            let reason =
                explainer.reason(node, day.unwrap_or(opts.until), day, recorded, &inputs)?;
            nodes[id].targets[i].status = Status::Stale(reason);
        }
    }

    check_streaming(ctx, &mut nodes, &planned)?;

    let orphans = orphans(ctx, &planned, &probed);
    let mut notes = ctx.repo.notes.clone();
    notes.extend(graph.notes.iter().cloned());
    for node in graph.nodes.iter().filter(|n| opts.selected[n.id]) {
        if !nodes[node.id].targets.is_empty() {
            continue;
        }
        if let Schedule::Daily { start } = &node.schedule {
            notes.push(no_targets_note(node, start, opts, &probed));
        }
    }
    let state = graph
        .nodes
        .iter()
        .map(|n| state.remove(&node_key(n)).unwrap_or_default())
        .collect();
    Ok(Plan {
        until: opts.until,
        nodes,
        shown: opts.selected.clone(),
        notes,
        columns,
        planned,
        state,
        orphans,
        probed,
        memos,
    })
}

/// Streaming keep-alive: a deploy recorded as built is still stale when the
/// status command says no job runs, or one runs with another config hash.
fn check_streaming(ctx: &Context, nodes: &mut [NodePlan], planned: &[bool]) -> Result<(), Error> {
    let argv = &ctx.settings.streaming.status_command;
    if argv.is_empty() {
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
            let reason = match streaming_status(argv, &node.name)? {
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
fn streaming_status(argv: &[String], config: &str) -> Result<Option<String>, Error> {
    let argv: Vec<String> = argv.iter().map(|a| a.replace("{config}", config)).collect();
    let output = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| Error::Io(format!("streaming.status_command {argv:?}: {e}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(Error::Io(format!(
            "streaming.status_command {argv:?} failed ({}): {}",
            output.status,
            stderr.trim()
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
        None => input.table.clone(),
    }
}

/// What dependents see of a node's output: recorded output fingerprints of
/// fresh targets, and pending marks for the rest.
pub fn internal_column(node: &Node, output: &str, plan: &NodePlan, state: &NodeState) -> Column {
    let days: Vec<Day> = plan.targets.iter().filter_map(|t| t.day).collect();
    let (Some(first), Some(last)) = (days.first(), days.last()) else {
        return Column::new(output, Day(0), Vec::new());
    };
    let mut entries = vec![Entry::Absent; (last.0 - first.0 + 1) as usize];
    for target in &plan.targets {
        let Some(day) = target.day else { continue };
        entries[(day.0 - first.0) as usize] = internal_entry(node, target, state);
    }
    Column::new(output, *first, entries)
}

/// What dependents see of one target of a node.
pub fn internal_entry(node: &Node, target: &TargetPlan, state: &NodeState) -> Entry {
    match &target.status {
        Status::Fresh => match state.built.get(&day_column(target.day)) {
            Some(recorded) => Entry::Present(recorded.output),
            None => Entry::Absent,
        },
        Status::Blocked { input } => Entry::Pending(Status::Blocked {
            input: input.clone(),
        }),
        _ => Entry::Pending(Status::Waiting {
            upstream: match target.day {
                Some(day) => format!("{}@{day}", node.label()).into(),
                None => node.label().into(),
            },
        }),
    }
}

static NEVER_BUILT: std::sync::LazyLock<Arc<StaleReason>> =
    std::sync::LazyLock::new(|| Arc::new(StaleReason::NeverBuilt));
static FORCED: std::sync::LazyLock<Arc<StaleReason>> =
    std::sync::LazyLock::new(|| Arc::new(StaleReason::Forced));

/// The status of one target from hashes alone. The flag asks for a reason to
/// be looked up in the state (config or input differences).
pub fn decide(
    node: &Node,
    day: Option<Day>,
    evaluation: Evaluation,
    recorded: Option<&Recorded>,
    state: &NodeState,
    output: Option<&Column>,
) -> (TargetPlan, bool) {
    let column = day_column(day);
    let (key, inputs_hash) = match &evaluation {
        Evaluation::Ready {
            key, inputs_hash, ..
        } => (Some(*key), Some(*inputs_hash)),
        Evaluation::Pending(_) => (None, None),
    };
    let plan = |status: Status| TargetPlan {
        day,
        status,
        key,
        inputs_hash,
    };
    if let Evaluation::Pending(status @ Status::Blocked { .. }) = &evaluation {
        return (plan(status.clone()), false);
    }
    if state.forced.contains(&column) {
        return (plan(Status::Stale(FORCED.clone())), false);
    }
    if let Some(run) = state.failed.get(&column) {
        return (
            plan(Status::Stale(Arc::new(StaleReason::PreviousRunFailed {
                run: *run,
            }))),
            false,
        );
    }
    let Some(recorded) = recorded else {
        return (plan(Status::Stale(NEVER_BUILT.clone())), false);
    };
    if recorded.slice != node.slice_hash {
        return (plan(Status::Stale(NEVER_BUILT.clone())), true);
    }
    let (inputs_hash, key) = match evaluation {
        Evaluation::Pending(status) => return (plan(status), false),
        Evaluation::Ready {
            inputs_hash, key, ..
        } => (inputs_hash, key),
    };
    if key != recorded.key {
        if inputs_hash == recorded.inputs {
            return (
                plan(Status::Stale(Arc::new(StaleReason::KeyVersionChanged))),
                false,
            );
        }
        return (plan(Status::Stale(NEVER_BUILT.clone())), true);
    }
    if let (Some(table), Some(day), Some(output)) = (node.output.as_ref(), day, output)
        && node.probed_output
    {
        match output.get(day) {
            Entry::Present(fp) if *fp == recorded.output => {}
            Entry::Present(fp) => {
                let reason = StaleReason::OutputModified {
                    table: table.clone(),
                    partition: day,
                    old: recorded.output,
                    new: *fp,
                };
                return (plan(Status::Stale(Arc::new(reason))), false);
            }
            _ => {
                return (
                    plan(Status::Stale(Arc::new(StaleReason::OutputMissing {
                        table: table.clone(),
                        partition: day,
                    }))),
                    false,
                );
            }
        }
    }
    (plan(Status::Fresh), false)
}

/// Names what changed for targets whose hashes differ from the recorded
/// ones, reading stored slices and input versions with caching.
pub struct Explainer<'c, 'a> {
    ctx: &'c Context<'a>,
    cache: HashMap<(String, i64), HashMap<Day, Hash>>,
    slices: HashMap<(NodeId, Hash), Arc<StaleReason>>,
}

impl<'c, 'a> Explainer<'c, 'a> {
    pub fn new(ctx: &'c Context<'a>) -> Self {
        Explainer {
            ctx,
            cache: HashMap::new(),
            slices: HashMap::new(),
        }
    }

    fn reason(
        &mut self,
        node: &Node,
        at: Day,
        day: Option<Day>,
        recorded: &Recorded,
        columns: &[Option<&Column>],
    ) -> Result<Arc<StaleReason>, Error> {
        if recorded.slice != node.slice_hash {
            if let Some(reason) = self.slices.get(&(node.id, recorded.slice)) {
                return Ok(reason.clone());
            }
            let fields = self.config_changes(node, &recorded.slice)?;
            let reason = Arc::new(StaleReason::ConfigChanged { fields });
            self.slices
                .insert((node.id, recorded.slice), reason.clone());
            return Ok(reason);
        }
        let changes = self.input_changes(node, at, day, recorded, columns, true)?;
        Ok(Arc::new(
            changes
                .into_iter()
                .next()
                .unwrap_or(StaleReason::KeyVersionChanged),
        ))
    }

    /// Field paths of the node's slice that differ from the recorded slice.
    pub fn config_changes(&self, node: &Node, old: &Hash) -> Result<Vec<FieldChange>, Error> {
        let Some(store) = self.ctx.store else {
            return Ok(Vec::new());
        };
        let Some(text) = store.slice_json(old)? else {
            return Ok(vec![FieldChange {
                path: "(recorded slice not in the state)".into(),
                old: None,
                new: None,
            }]);
        };
        let old: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let part_index = self.part_index(node);
        Ok(hash::diff(&old, &node.slice)
            .into_iter()
            .map(|(path, old, new)| {
                let path = match (path.strip_prefix("joinPart"), part_index) {
                    (Some(rest), Some(i)) => format!("joinParts[{i}]{rest}"),
                    _ => path,
                };
                FieldChange { path, old, new }
            })
            .collect())
    }

    fn part_index(&self, node: &Node) -> Option<usize> {
        let part = node.part.as_deref()?;
        match &self.ctx.repo.configs[node.config].body {
            crate::config::Body::Join(join) => {
                join.join_parts.iter().position(|p| p.label() == part)
            }
            _ => None,
        }
    }

    /// Every input partition that differs from what the recorded build
    /// read, in table and day order; with `first_only`, stops at the first.
    pub fn input_changes(
        &mut self,
        node: &Node,
        at: Day,
        day: Option<Day>,
        recorded: &Recorded,
        columns: &[Option<&Column>],
        first_only: bool,
    ) -> Result<Vec<StaleReason>, Error> {
        let Some(store) = self.ctx.store else {
            return Ok(Vec::new());
        };
        let old_ranges = store.ranges_read(&node_key(node), day)?;
        // Per table: its column, the ranges read then, the ranges read now.
        type Reads<'c> = (Option<&'c Column>, Vec<DayRange>, Vec<DayRange>);
        let mut tables: BTreeMap<&str, Reads> = BTreeMap::new();
        for (input, column) in node.inputs.iter().zip(columns) {
            let Some(column) = column else { continue };
            let range = input.range(at, column.first_present());
            let entry = tables.entry(input.table.as_str()).or_insert((
                Some(column),
                Vec::new(),
                Vec::new(),
            ));
            if !range.is_empty() {
                entry.2.push(range);
            }
        }
        for (table, from, to) in &old_ranges {
            if let Some(entry) = tables.get_mut(table.as_str()) {
                entry.1.push(DayRange::new(*from, *to));
            }
        }
        let mut out = Vec::new();
        for (table, (column, old, new)) in tables {
            let Some(column) = column else { continue };
            let seen = self.seen(store, table, recorded.seq)?;
            let mut days: BTreeSet<Day> = BTreeSet::new();
            for range in old.iter().chain(&new) {
                days.extend(range.days());
            }
            for d in days {
                let before = old
                    .iter()
                    .any(|r| r.contains(d))
                    .then(|| seen.get(&d).copied())
                    .flatten();
                let now = match (new.iter().any(|r| r.contains(d)), column.get(d)) {
                    (true, Entry::Present(fp)) => Some(*fp),
                    _ => None,
                };
                let change = match (before, now) {
                    (Some(old), Some(new)) if old != new => Some(StaleReason::InputChanged {
                        table: table.to_string(),
                        partition: d,
                        old,
                        new,
                    }),
                    (None, Some(_)) => Some(StaleReason::InputAdded {
                        table: table.to_string(),
                        partition: d,
                    }),
                    (Some(_), None) => Some(StaleReason::InputRemoved {
                        table: table.to_string(),
                        partition: d,
                    }),
                    _ => None,
                };
                if let Some(change) = change {
                    out.push(change);
                    if first_only {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    fn seen(
        &mut self,
        store: &StateStore,
        table: &str,
        seq: i64,
    ) -> Result<&HashMap<Day, Hash>, Error> {
        let key = (table.to_string(), seq);
        if !self.cache.contains_key(&key) {
            let seen = store.seen_at(table, Day(i32::MIN / 2), Day(i32::MAX / 2), seq)?;
            self.cache.insert(key.clone(), seen);
        }
        Ok(&self.cache[&key])
    }
}

/// What recording one target as built writes, apart from its output
/// fingerprint (probed after the job, by the caller).
pub struct BuildRecord {
    pub node: NodeKey,
    pub day: Option<Day>,
    pub key: Hash,
    pub slice: Hash,
    pub slice_json: Arc<str>,
    pub inputs_hash: Hash,
    pub ranges: Vec<(String, Day, Day)>,
    /// The output holds one version only (a KV dataset, an unpartitioned
    /// upload table): building this day replaces what any other day built.
    pub sole: bool,
}

impl BuildRecord {
    /// For a target whose key is known (its inputs all are); `None` while
    /// it is blocked or waiting. The key and inputs hash are the plan's:
    /// only the ranges read are worked out again, in the order `evaluate`
    /// sorts them. `slice_json` is the node's slice as JSON, shared by all
    /// its targets.
    pub fn for_target(
        plan: &Plan,
        graph: &Graph,
        node: &Node,
        target: &TargetPlan,
        slice_json: &Arc<str>,
    ) -> Option<BuildRecord> {
        let (key, inputs_hash) = (target.key?, target.inputs_hash?);
        let at = target.day.unwrap_or(plan.until);
        let mut ranges: Vec<(String, Day, Day)> = node
            .inputs
            .iter()
            .zip(plan.input_columns(graph, node))
            .filter_map(|(input, column)| {
                let range = read_range(input, column?, at);
                (!range.is_empty()).then(|| (input.table.clone(), range.from, range.to))
            })
            .collect();
        ranges.sort();
        Some(BuildRecord {
            node: node_key(node),
            day: target.day,
            key,
            slice: node.slice_hash,
            slice_json: slice_json.clone(),
            inputs_hash,
            ranges,
            sole: node.schedule == Schedule::Latest && !node.probed_output,
        })
    }

    /// The store's view, with the probed output fingerprint (or the key, for
    /// steps whose output cannot be probed).
    pub fn built(&self, output: Hash) -> crate::store::Built<'_> {
        crate::store::Built {
            node: &self.node,
            day: self.day,
            key: self.key,
            slice: self.slice,
            slice_json: &self.slice_json,
            inputs: self.inputs_hash,
            output,
            ranges: &self.ranges,
            sole: self.sole,
        }
    }
}

/// The node's slice as stored: canonical JSON.
pub fn slice_json(node: &Node) -> Arc<str> {
    serde_json::to_string(&node.slice)
        .expect("slice serializes")
        .into()
}

/// Every input partition that targets of `node` at `days` read, once each:
/// per input, the union of the targets' ranges.
pub fn reads(
    node: &Node,
    columns: &[Option<&Column>],
    days: &[Option<Day>],
    until: Day,
) -> Vec<(String, Day, Hash)> {
    let mut out: BTreeMap<(&str, Day), Hash> = BTreeMap::new();
    for (input, column) in node.inputs.iter().zip(columns) {
        let Some(column) = column else { continue };
        let first = column.first_present();
        let mut ranges: Vec<DayRange> = days
            .iter()
            .map(|d| input.range(d.unwrap_or(until), first))
            .filter(|r| !r.is_empty())
            .collect();
        ranges.sort_by_key(|r| (r.from, r.to));
        let mut merged: Vec<DayRange> = Vec::new();
        for range in ranges {
            match merged.last_mut() {
                Some(last) if range.from.0 <= last.to.0 + 1 => last.to = last.to.max(range.to),
                _ => merged.push(range),
            }
        }
        for range in merged {
            for (day, fp) in column.present_in(range) {
                out.insert((input.table.as_str(), day), fp);
            }
        }
    }
    out.into_iter()
        .map(|((t, d), fp)| (t.to_string(), d, fp))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_document_json_is_built_as_serde_writes_it() {
        let inputs = [
            InputDigest {
                table: "raw.\"quoted\" table".into(),
                from: Day(20_000),
                to: Day(20_030),
                present: 31,
                digest: Hash::of(b"a"),
            },
            InputDigest {
                table: "internal:out.t".into(),
                from: Day(-3),
                to: Day(5),
                present: 0,
                digest: Hash::of(b"b"),
            },
            InputDigest {
                table: "ns.t\u{1}\n\\é/".into(),
                from: Day(2_932_896),
                to: Day(2_932_896),
                present: u32::MAX,
                digest: Hash::of(b"c"),
            },
        ];
        for partition in [Some(Day(20_031)), None] {
            for inputs in [&inputs[..], &[]] {
                let doc = KeyDoc {
                    key_version: KEY_VERSION,
                    step: Step::JoinPart,
                    slice: Hash::of(b"slice"),
                    partition,
                    inputs,
                };
                assert_eq!(doc.hashes(), (Hash::of_json(&inputs), doc.key()));
            }
        }
    }
}
