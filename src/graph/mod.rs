//! The target graph.
//!
//! A `Node` is one (step, config[, join part]); its targets are its
//! partitions. Each node lists its `Input`s: a table, how far back from the
//! target's day it reads (`Lookback`), shifts (`lag`, snapshot offsets),
//! cutoffs (`startPartition`/`endPartition`) and, when another node writes
//! that table, the `producer`. Producer edges make keys chain: a staging
//! query feeding a group-by, a join feeding a `joinSource`.
//!
//! Which steps exist, and which partitions are wanted, follows DESIGN.md
//! section 2; inputs and lookback follow section 3.

pub mod archive;
pub mod render;
pub mod tables;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::config::{
    Accuracy, Body, Config, ConfigErrors, GroupBy, Join, Problem, Query, Repo, Source,
    StagingQuery, TableRef,
};
use crate::hash::{self, Hash};
use crate::partition::{Day, DayRange};
use crate::settings::Settings;

pub use crate::step::Step;
pub use tables::Naming;

pub type NodeId = usize;

/// How far back from the target's day an input reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Lookback {
    /// Days `D-n ..= D`.
    Days(u32),
    /// Everything from the table's first partition (or the start cutoff) to D.
    AllHistory,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Input {
    /// The table as probed: with its sub-partition, e.g. `ns.t/hr=00:00`.
    pub table: String,
    #[serde(skip)]
    pub producer: Option<NodeId>,
    pub lookback: Lookback,
    /// Days every read is shifted back (`lag`, snapshot offsets); negative
    /// reads ahead (a label join's `leftEndOffset` of 0).
    pub shift: i32,
    /// `startPartition` / `endPartition` of the reading query.
    pub cutoff_from: Option<Day>,
    pub cutoff_to: Option<Day>,
    /// The newest partition read must exist, or the target is blocked.
    pub required: bool,
    /// Orders the work but does not enter the key (streaming after KV upload).
    pub ordering_only: bool,
    /// The JSON path in the config this input comes from.
    pub origin: String,
    /// The reading query's `partitionColumn` / `partitionFormat`, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition_column: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition_format: Option<crate::partition::DayFormat>,
}

impl Input {
    fn new(
        table: String,
        lookback: Lookback,
        shift: u32,
        query: Option<&Query>,
        origin: String,
    ) -> Input {
        Input {
            table,
            producer: None,
            lookback,
            shift: shift as i32,
            cutoff_from: query.and_then(|q| q.start_partition),
            cutoff_to: query.and_then(|q| q.end_partition),
            required: true,
            ordering_only: false,
            origin,
            partition_column: query.and_then(|q| q.partition_column.clone()),
            partition_format: query.and_then(|q| q.partition_format.clone()),
        }
    }

    /// The table without its sub-partition.
    pub fn base_table(&self) -> &str {
        TableRef::split(&self.table).0
    }

    /// The days a target at `day` reads, clipped by the cutoffs; `first` is
    /// the table's first known partition, for all-history reads.
    pub fn range(&self, day: Day, first: Option<Day>) -> DayRange {
        let to = day.minus(self.shift);
        let from = match self.lookback {
            Lookback::Days(n) => to.minus(n as i32),
            Lookback::AllHistory => self.cutoff_from.or(first).unwrap_or(to),
        };
        let mut range = DayRange::new(from, to);
        if let Some(cut) = self.cutoff_from {
            range.from = range.from.max(cut);
        }
        if let Some(cut) = self.cutoff_to {
            range.to = range.to.min(cut);
        }
        range
    }

    /// The partition that must exist for a target at `day`, if any: the
    /// newest one read, unless a cutoff excludes it.
    pub fn anchor(&self, day: Day) -> Option<Day> {
        let anchor = day.minus(self.shift);
        let inside = self.cutoff_from.is_none_or(|c| anchor >= c)
            && self.cutoff_to.is_none_or(|c| anchor <= c);
        (self.required && inside).then_some(anchor)
    }
}

/// Which partitions of a node are wanted up to `--until D`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Schedule {
    /// Every day from the start to D.
    Daily { start: Start },
    /// D only: serving needs the latest.
    Latest,
    /// One target with no partition.
    Unpartitioned,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Start {
    Day(Day),
    /// The first partition present in this table (the primary input).
    FirstPartitionOf(String),
    /// That many days after the first partition of this table: a label
    /// join's first `label_ds` whose window reaches the left's first day.
    FirstPartitionPlus {
        table: String,
        days: i32,
    },
    /// Nothing names a start: only `--from` or the `start` setting give one.
    Unknown,
}

impl Start {
    /// The table whose first partition decides the start, if any.
    pub fn probed_table(&self) -> Option<&str> {
        match self {
            Start::FirstPartitionOf(table) | Start::FirstPartitionPlus { table, .. } => Some(table),
            Start::Day(_) | Start::Unknown => None,
        }
    }

    /// The first day, given the probed tables' first partitions.
    pub fn day(&self, first_of: impl Fn(&str) -> Option<Day>) -> Option<Day> {
        match self {
            Start::Day(day) => Some(*day),
            Start::FirstPartitionOf(table) => first_of(table),
            Start::FirstPartitionPlus { table, days } => first_of(table).map(|d| d.plus(*days)),
            Start::Unknown => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Node {
    pub id: NodeId,
    pub step: Step,
    /// Index into `Repo::configs`.
    pub config: usize,
    pub name: String,
    /// The join part's label, for `join-part` nodes.
    pub part: Option<String>,
    pub team: String,
    /// The table this node writes, when it writes one.
    pub output: Option<String>,
    /// Whether the output is probed to record and check a build. When not
    /// (KV uploads, deploys, a whole join's left and parts), the recorded
    /// output is the key.
    pub probed_output: bool,
    pub schedule: Schedule,
    pub inputs: Vec<Input>,
    /// Canonical JSON of the fields of the config that this step's data
    /// depends on (see `crate::hash`).
    pub slice: Value,
    pub slice_hash: Hash,
}

impl Node {
    /// `step:config` or `step:config#part`: how targets are named on the
    /// command line.
    pub fn label(&self) -> String {
        crate::step::node_label(self.step, &self.name, self.part.as_deref())
    }

    /// The table this node writes whose partitions are probed to record
    /// and check a build (`probed_output`), if any.
    pub fn probed_table(&self) -> Option<&str> {
        self.output.as_deref().filter(|_| self.probed_output)
    }
}

#[derive(Debug)]
pub struct Graph {
    pub nodes: Vec<Node>,
    /// Producers before consumers.
    pub order: Vec<NodeId>,
    pub dependents: Vec<Vec<NodeId>>,
    pub notes: Vec<String>,
}

impl Graph {
    pub fn build(repo: &Repo, settings: &Settings) -> Result<Graph, ConfigErrors> {
        let mut builder = Builder {
            nodes: Vec::new(),
            settings,
            naming: Naming::new(repo.layout),
            notes: Vec::new(),
        };
        for (index, config) in repo.configs.iter().enumerate() {
            let before = builder.nodes.len();
            builder.add_config(index, config);
            if builder.nodes.len() == before {
                let note = no_targets_note(config);
                builder.notes.extend(note);
            }
        }
        let Builder {
            mut nodes,
            mut notes,
            ..
        } = builder;

        let mut problems = Vec::new();
        let mut producers: BTreeMap<&str, NodeId> = BTreeMap::new();
        for node in &nodes {
            if let Some(output) = node.output.as_deref()
                && let Some(other) = producers.insert(output, node.id)
            {
                let other = &nodes[other];
                problems.push(Problem {
                    file: repo.configs[node.config].path.clone(),
                    path: "metaData.name".into(),
                    message: format!("output table {output} is also written by {}", other.label()),
                });
            }
        }
        let producer_of: BTreeMap<String, NodeId> = producers
            .into_iter()
            .map(|(t, id)| (t.to_string(), id))
            .collect();
        for node in &mut nodes {
            let id = node.id;
            for input in node.inputs.iter_mut().filter(|i| !i.ordering_only) {
                input.producer = producer_of
                    .get(input.base_table())
                    .copied()
                    .filter(|p| *p != id);
            }
        }

        let mut dependents = vec![Vec::new(); nodes.len()];
        for node in &nodes {
            for input in &node.inputs {
                if let Some(p) = input.producer
                    && !dependents[p].contains(&node.id)
                {
                    dependents[p].push(node.id);
                }
            }
        }

        let order = match topological_order(&nodes, &dependents) {
            Ok(order) => order,
            Err(cycle) => {
                problems.push(cycle_problem(repo, &nodes, &cycle));
                Vec::new()
            }
        };

        if !problems.is_empty() {
            problems.sort();
            return Err(ConfigErrors(problems));
        }
        notes.extend(stale_inline_copies(repo));
        Ok(Graph {
            nodes,
            order,
            dependents,
            notes,
        })
    }

    pub fn find(&self, step: Step, name: &str, part: Option<&str>) -> Option<&Node> {
        self.nodes
            .iter()
            .find(|n| n.step == step && n.name == name && n.part.as_deref() == part)
    }

    /// Every node upstream of the given ones, and the given ones.
    pub fn with_upstream(&self, roots: &[NodeId]) -> Vec<bool> {
        let mut wanted = vec![false; self.nodes.len()];
        let mut stack: Vec<NodeId> = roots.to_vec();
        while let Some(id) = stack.pop() {
            if std::mem::replace(&mut wanted[id], true) {
                continue;
            }
            stack.extend(self.nodes[id].inputs.iter().filter_map(|i| i.producer));
        }
        wanted
    }
}

/// Names a cycle at the edge that closes it through a `joinSource`, when
/// there is one, since that is the edit that made it.
fn cycle_problem(repo: &Repo, nodes: &[Node], cycle: &[NodeId]) -> Problem {
    let edges: Vec<(NodeId, &Input)> = cycle
        .iter()
        .flat_map(|id| {
            nodes[*id]
                .inputs
                .iter()
                .filter(|i| i.producer.is_some_and(|p| cycle.contains(&p)))
                .map(move |i| (*id, i))
        })
        .collect();
    let (at, input) = edges
        .iter()
        .find(|(_, i)| i.origin.contains("joinSource"))
        .or(edges.first())
        .copied()
        .expect("a cycle has edges");
    let kind = if input.origin.contains("joinSource") {
        "joinSource cycle"
    } else {
        "dependency cycle"
    };
    let names: Vec<String> = cycle
        .iter()
        .chain(std::iter::once(&cycle[0]))
        .map(|id| nodes[*id].label())
        .collect();
    Problem {
        file: repo.configs[nodes[at].config].path.clone(),
        path: input.origin.clone(),
        message: format!("{kind}: {}", names.join(" -> ")),
    }
}

/// Kahn's algorithm; on a cycle, returns the nodes of one cycle in order.
fn topological_order(
    nodes: &[Node],
    dependents: &[Vec<NodeId>],
) -> Result<Vec<NodeId>, Vec<NodeId>> {
    let mut indegree = vec![0usize; nodes.len()];
    for deps in dependents {
        for d in deps {
            indegree[*d] += 1;
        }
    }
    let mut ready: Vec<NodeId> = (0..nodes.len())
        .filter(|n| indegree[*n] == 0)
        .rev()
        .collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(n) = ready.pop() {
        order.push(n);
        for d in dependents[n].iter().rev() {
            indegree[*d] -= 1;
            if indegree[*d] == 0 {
                ready.push(*d);
            }
        }
    }
    if order.len() == nodes.len() {
        return Ok(order);
    }
    // Walk producer edges among the leftover nodes until one repeats.
    let left: Vec<bool> = indegree.iter().map(|d| *d > 0).collect();
    let start = (0..nodes.len())
        .find(|n| left[*n])
        .expect("a leftover node");
    let mut seen = vec![usize::MAX; nodes.len()];
    let mut path = Vec::new();
    let mut at = start;
    while seen[at] == usize::MAX {
        seen[at] = path.len();
        path.push(at);
        at = nodes[at]
            .inputs
            .iter()
            .filter_map(|i| i.producer)
            .find(|p| left[*p])
            .expect("a cycle continues");
    }
    let mut cycle = path[seen[at]..].to_vec();
    cycle.reverse();
    Err(cycle)
}

/// Why a config has no target at all, and what to do; `None` when a note
/// already says (a join whose schedule is `@never`).
fn no_targets_note(config: &Config) -> Option<String> {
    let why = match &config.body {
        Body::GroupBy(_) => {
            "no targets: the group-by has no backfillStartDate and is not online, so nothing \
             builds it on its own (joins that embed it compute it as their part); set \
             backfillStartDate to backfill its table, or online to serve it"
        }
        Body::Join(join) if !join.scheduled() => return None,
        Body::Join(_) => "no targets: the join has nothing to build",
        Body::StagingQuery(_) => "no targets: the staging query has nothing to build",
    };
    Some(format!("{}: {why}", config.path))
}

/// Joins inline the group-bys they embed. When a top-level group-by of the
/// same name has different semantic content, the compiled join is stale:
/// the join part runs the inlined copy, so say so.
fn stale_inline_copies(repo: &Repo) -> Vec<String> {
    let mut notes = Vec::new();
    let top: BTreeMap<&str, &Config> = repo
        .configs
        .iter()
        .filter(|c| matches!(c.body, Body::GroupBy(_)))
        .map(|c| (c.name.as_str(), c))
        .collect();
    for config in &repo.configs {
        let Body::Join(join) = &config.body else {
            continue;
        };
        for (i, part) in join.join_parts.iter().enumerate() {
            let Some(standalone) = top.get(part.group_by.meta.name.as_str()) else {
                continue;
            };
            let inline = hash::canonical(&config.raw["joinParts"][i]["groupBy"]);
            let own = hash::canonical(&standalone.raw);
            // What the part computes: the batch slice, less where group-bys
            // write their own tables (chronon-ai's compiler sets
            // `outputNamespace` only on standalone group-bys, not on their
            // copies inside joins; a part's table is named from its join).
            let batch = |v: &Value| {
                let mut v = v.clone();
                without_part_namespaces(&mut v);
                hash::slice(&v, "", hash::SliceScope::Batch)
            };
            if batch(&inline) != batch(&own) {
                notes.push(format!(
                    "{}: joinParts[{i}].groupBy differs from {}: recompile the join so it runs the current group-by",
                    config.path, standalone.path
                ));
            }
        }
    }
    notes
}

/// Removes `metaData.outputNamespace` from a group-by and from every group-by
/// it embeds as a join part (in a `joinSource`'s join), keeping the joins'
/// own: a chained group-by reads its join's table.
fn without_part_namespaces(group_by: &mut Value) {
    if let Some(Value::Object(meta)) = group_by.get_mut("metaData") {
        meta.remove("outputNamespace");
    }
    let mut stack = vec![group_by];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(map) => {
                if let Some(Value::Array(parts)) = map.get_mut("joinParts") {
                    for part in parts {
                        if let Some(Value::Object(meta)) = part.pointer_mut("/groupBy/metaData") {
                            meta.remove("outputNamespace");
                        }
                    }
                }
                stack.extend(map.values_mut());
            }
            Value::Array(items) => stack.extend(items.iter_mut()),
            _ => {}
        }
    }
}

/// One node's step, and what it writes and reads.
struct Shape {
    step: Step,
    part: Option<String>,
    output: Option<String>,
    schedule: Schedule,
    inputs: Vec<Input>,
}

impl Shape {
    fn new(step: Step, schedule: Schedule) -> Shape {
        Shape {
            step,
            part: None,
            output: None,
            schedule,
            inputs: Vec::new(),
        }
    }

    /// A join part's label.
    fn part(self, part: String) -> Shape {
        Shape {
            part: Some(part),
            ..self
        }
    }

    fn output(self, table: String) -> Shape {
        Shape {
            output: Some(table),
            ..self
        }
    }

    fn inputs(self, inputs: Vec<Input>) -> Shape {
        Shape { inputs, ..self }
    }
}

struct Builder<'s> {
    nodes: Vec<Node>,
    settings: &'s Settings,
    naming: Naming,
    notes: Vec<String>,
}

/// Picks top-level fields of a canonical config into a new object.
fn pick(canonical: &Value, keys: &[&str]) -> Value {
    let mut out = Map::new();
    for key in keys {
        if let Some(v) = canonical.get(*key) {
            out.insert((*key).to_string(), v.clone());
        }
    }
    Value::Object(out)
}

/// The canonical config without some top-level fields.
fn omit(canonical: &Value, keys: &[&str]) -> Value {
    let mut out = canonical.clone();
    if let Value::Object(map) = &mut out {
        for key in keys {
            map.remove(*key);
        }
    }
    out
}

impl Builder<'_> {
    /// Adds a node of `config` in `shape`, whose slice is taken from
    /// `slice_source` (the fields of the config its step depends on).
    fn node(
        &mut self,
        config_index: usize,
        config: &Config,
        shape: Shape,
        slice_source: &Value,
    ) -> NodeId {
        let Shape {
            step,
            part,
            output,
            schedule,
            inputs,
        } = shape;
        let slice = hash::slice(slice_source, "", step.scope()).unwrap_or(Value::Null);
        let slice_hash = Hash::of_json(&slice);
        let id = self.nodes.len();
        self.nodes.push(Node {
            id,
            step,
            config: config_index,
            name: config.name.clone(),
            part,
            team: config.team().to_string(),
            probed_output: output.is_some()
                && step.has_table_output()
                && !(self.settings.executor.joins == crate::settings::JoinMode::Whole
                    && matches!(step, Step::JoinLeft | Step::JoinPart))
                && (step != Step::GroupByUpload || self.naming.upload_is_partitioned()),
            output,
            schedule,
            inputs,
            slice,
            slice_hash,
        });
        id
    }

    /// For jobs a real Driver runs: adds to a join node's slice what makes
    /// that Driver archive its table (see `archive`).
    fn archive(&mut self, id: NodeId, canonical: &Value, table: archive::Table) {
        if self.settings.executor.kind == crate::settings::ExecutorKind::Local {
            return;
        }
        let node = &mut self.nodes[id];
        if let Value::Object(map) = &mut node.slice {
            map.insert(
                "driverArchive".into(),
                archive::components(canonical, table),
            );
            node.slice_hash = Hash::of_json(&node.slice);
        }
    }

    fn add_config(&mut self, index: usize, config: &Config) {
        let canonical = hash::canonical(&config.raw);
        match &config.body {
            Body::GroupBy(gb) => self.add_group_by(index, config, gb, &canonical),
            Body::Join(join) => self.add_join(index, config, join, &canonical),
            Body::StagingQuery(sq) => self.add_staging_query(index, config, sq, &canonical),
        }
        if config.meta().online && !matches!(config.body, Body::StagingQuery(_)) {
            self.node(
                index,
                config,
                Shape::new(Step::MetadataUpload, Schedule::Unpartitioned),
                &canonical,
            );
        }
    }

    fn add_group_by(&mut self, index: usize, config: &Config, gb: &GroupBy, canonical: &Value) {
        let table = gb.meta.output_table();
        let inputs = source_inputs(gb, "", gb.meta.lag as u32, None);
        if let Some(start) = gb.backfill_start_date {
            let schedule = Schedule::Daily {
                start: Start::Day(start),
            };
            self.node(
                index,
                config,
                Shape::new(Step::GroupByBackfill, schedule)
                    .output(table.clone())
                    .inputs(inputs.clone()),
                canonical,
            );
        }
        if gb.meta.online {
            let upload_table = self.naming.upload(&table);
            self.node(
                index,
                config,
                Shape::new(Step::GroupByUpload, Schedule::Latest)
                    .output(upload_table.clone())
                    .inputs(inputs),
                canonical,
            );
            let kv_input = Input::new(
                upload_table,
                Lookback::Days(0),
                0,
                None,
                "metaData.online".into(),
            );
            // The KV upload copies the upload table: its data depends on that
            // input and on the dataset name, not on the aggregations.
            let identity = pick(canonical, &["metaData"]);
            let kv = self.node(
                index,
                config,
                Shape::new(Step::UploadToKv, Schedule::Latest).inputs(vec![kv_input]),
                &identity,
            );
            if gb.has_streaming_source() {
                let mut after_kv = Input::new(
                    format!("upload-to-kv:{}", config.name),
                    Lookback::Days(0),
                    0,
                    None,
                    "metaData.online".into(),
                );
                after_kv.ordering_only = true;
                after_kv.producer = Some(kv);
                self.node(
                    index,
                    config,
                    Shape::new(Step::GroupByStreaming, Schedule::Unpartitioned)
                        .inputs(vec![after_kv]),
                    canonical,
                );
            }
        }
    }

    fn add_join(&mut self, index: usize, config: &Config, join: &Join, canonical: &Value) {
        if !join.scheduled() {
            self.notes.push(format!(
                "{}: offlineSchedule is @never: no join backfill targets",
                config.path
            ));
        }
        let table = join.meta.output_table();
        let lag = join.meta.lag as u32;
        let left_table = self.naming.left(&table);
        let start = match join.left.query().start_partition {
            Some(day) => Start::Day(day),
            None => Start::FirstPartitionOf(primary_table(&join.left)),
        };

        let mut final_node = None;
        if join.scheduled() {
            let left_inputs = left_inputs(&join.left, lag);
            let left_slice = pick(canonical, &["metaData", "left", "rowIds"]);
            let schedule = Schedule::Daily {
                start: start.clone(),
            };
            let left = self.node(
                index,
                config,
                Shape::new(Step::JoinLeft, schedule)
                    .output(left_table.clone())
                    .inputs(left_inputs),
                &left_slice,
            );
            self.archive(left, canonical, archive::Table::Left);

            let mut final_inputs = vec![Input::new(
                left_table.clone(),
                Lookback::Days(0),
                0,
                None,
                "left".into(),
            )];
            let left_is_events = matches!(join.left, Source::Events { .. });
            for (i, part) in join.join_parts.iter().enumerate() {
                let label = part.label();
                let part_table = self.naming.part(&table, part);
                let origin = format!("joinParts[{i}]");
                let mut inputs = vec![Input::new(
                    left_table.clone(),
                    Lookback::Days(0),
                    0,
                    None,
                    "left".into(),
                )];
                inputs.extend(source_inputs(
                    &part.group_by,
                    &format!("{origin}.groupBy"),
                    lag,
                    Some(left_is_events),
                ));
                let mut slice = pick(canonical, &["metaData"]);
                if let (Value::Object(map), Some(part_json)) = (
                    &mut slice,
                    canonical.get("joinParts").and_then(|p| p.get(i)),
                ) {
                    map.insert("joinPart".into(), part_json.clone());
                }
                let schedule = Schedule::Daily {
                    start: start.clone(),
                };
                let id = self.node(
                    index,
                    config,
                    Shape::new(Step::JoinPart, schedule)
                        .part(label)
                        .output(part_table.clone())
                        .inputs(inputs),
                    &slice,
                );
                self.archive(id, canonical, archive::Table::Part(i));
                final_inputs.push(Input::new(part_table, Lookback::Days(0), 0, None, origin));
            }
            for (i, bootstrap) in join.bootstrap_parts.iter().enumerate() {
                let mut input = Input::new(
                    bootstrap.table.key(),
                    Lookback::Days(0),
                    lag,
                    Some(&bootstrap.query),
                    format!("bootstrapParts[{i}].table"),
                );
                input.required = false;
                final_inputs.push(input);
            }
            let schedule = Schedule::Daily {
                start: start.clone(),
            };
            let id = self.node(
                index,
                config,
                Shape::new(Step::JoinFinal, schedule)
                    .output(table.clone())
                    .inputs(final_inputs),
                // Labels are the label join's: not in the join's own table.
                &omit(canonical, &["labelPart"]),
            );
            self.archive(id, canonical, archive::Table::Final);
            final_node = Some(id);
        }

        if let Some(label) = join
            .label_part
            .as_ref()
            .filter(|l| l.offline_schedule.as_deref() != Some("@never"))
        {
            self.add_label_join(index, config, join, label, canonical, final_node);
        }

        if join.meta.online && join.meta.sample_percent > 0.0 {
            // Flattening and metrics read only their input tables; the join's
            // features enter through the comparison table.
            let identity = pick(canonical, &["metaData"]);
            let log_table = self.settings.consistency.log_table.clone();
            let logged = self.naming.logged(&table);
            let schedule = || Schedule::Daily {
                start: Start::FirstPartitionOf(log_table.clone()),
            };
            let log_input = Input::new(
                log_table.clone(),
                Lookback::Days(0),
                0,
                None,
                "metaData.samplePercent".into(),
            );
            self.node(
                index,
                config,
                Shape::new(Step::LogFlattener, schedule())
                    .output(logged.clone())
                    .inputs(vec![log_input]),
                &identity,
            );
            if join.meta.check_consistency {
                let comparison = self.naming.comparison(&table);
                let mut inputs = vec![Input::new(
                    logged,
                    Lookback::Days(0),
                    0,
                    None,
                    "metaData.customJson.check_consistency".into(),
                )];
                inputs.extend(left_inputs(&join.left, lag));
                // Offline values are recomputed as the join part computes
                // them: entity snapshots shift as they do there.
                let left_is_events = !matches!(join.left, Source::Entities { .. });
                for (i, part) in join.join_parts.iter().enumerate() {
                    inputs.extend(source_inputs(
                        &part.group_by,
                        &format!("joinParts[{i}].groupBy"),
                        lag,
                        Some(left_is_events),
                    ));
                }
                self.node(
                    index,
                    config,
                    Shape::new(Step::BuildComparisonTable, schedule())
                        .output(comparison.clone())
                        .inputs(inputs),
                    canonical,
                );
                let metrics_input = Input::new(
                    comparison,
                    Lookback::Days(0),
                    0,
                    None,
                    "metaData.customJson.check_consistency".into(),
                );
                self.node(
                    index,
                    config,
                    Shape::new(Step::ConsistencyMetricsCompute, schedule())
                        .output(self.naming.consistency(&table))
                        .inputs(vec![metrics_input]),
                    &identity,
                );
            }
        }
    }

    /// A label join (airbnb/chronon `LabelJoin.scala`): one target per
    /// `label_ds` L, which rewrites the partitions `label_ds = L` of
    /// `{output}_labels` for the left days `labelPart.left_window()`. It reads
    /// the left source over those days and each label's group-by as of L
    /// (`GroupBy.from(..., PartitionRange(labelDS, labelDS))`, lines 236-241),
    /// and runs after the join's own days, whose table its views read.
    fn add_label_join(
        &mut self,
        index: usize,
        config: &Config,
        join: &Join,
        label: &crate::config::LabelPart,
        canonical: &Value,
        join_final: Option<NodeId>,
    ) {
        let table = join.meta.output_table();
        let (lookback, shift) = label.left_window();
        let mut left = left_inputs(&join.left, 0);
        for input in &mut left {
            input.lookback = Lookback::Days(lookback);
            input.shift = shift;
        }
        let mut inputs = left;
        for (i, part) in label.labels.iter().enumerate() {
            inputs.extend(source_inputs(
                &part.group_by,
                &format!("labelPart.labels[{i}].groupBy"),
                0,
                None,
            ));
        }
        if let Some(join_final) = join_final {
            let mut features = Input::new(
                table.clone(),
                Lookback::Days(lookback),
                0,
                None,
                "metaData.outputTable".into(),
            );
            features.shift = shift;
            features.required = false;
            features.ordering_only = true;
            features.producer = Some(join_final);
            inputs.push(features);
        }
        // The first label_ds whose window reaches the left's first day.
        let start = match join.left.query().start_partition {
            Some(day) => Start::Day(day.plus(shift)),
            None => Start::FirstPartitionPlus {
                table: primary_table(&join.left),
                days: shift,
            },
        };
        let slice = pick(canonical, &["metaData", "left", "labelPart", "rowIds"]);
        self.node(
            index,
            config,
            Shape::new(Step::LabelJoin, Schedule::Daily { start })
                .output(self.naming.labels(&table))
                .inputs(inputs),
            &slice,
        );
    }

    fn add_staging_query(
        &mut self,
        index: usize,
        config: &Config,
        sq: &StagingQuery,
        canonical: &Value,
    ) {
        let mut inputs = Vec::new();
        for (i, dep) in sq.meta.dependencies.iter().enumerate() {
            let mut input = Input::new(
                dep.table.key(),
                Lookback::Days(0),
                sq.meta.lag as u32,
                None,
                format!("metaData.dependencies[{i}]"),
            );
            input.cutoff_from = dep.start;
            input.cutoff_to = dep.end;
            inputs.push(input);
        }
        for (i, dep) in sq.meta.execution_info.table_dependencies.iter().enumerate() {
            let back = (dep.start_offset_days - dep.end_offset_days).max(0) as u32;
            let shift = (sq.meta.lag + dep.end_offset_days).max(0) as u32;
            let origin = format!("metaData.executionInfo.tableDependencies[{i}]");
            inputs.push(Input::new(
                dep.table.key(),
                Lookback::Days(back),
                shift,
                None,
                origin,
            ));
        }
        if inputs.is_empty() {
            self.notes.push(format!(
                "{}: the staging query declares no inputs (metaData.dependencies or \
                 executionInfo.tableDependencies): a change to what its SQL reads cannot \
                 restate it",
                config.path
            ));
        }
        let start = match (sq.start_partition, inputs.first()) {
            (Some(day), _) => Start::Day(day),
            (None, Some(first)) => Start::FirstPartitionOf(first.table.clone()),
            (None, None) => Start::Unknown,
        };
        let output = sq.meta.output_table();
        self.node(
            index,
            config,
            Shape::new(Step::StagingQuery, Schedule::Daily { start })
                .output(output)
                .inputs(inputs),
            canonical,
        );
    }
}

fn primary_table(source: &Source) -> String {
    match source {
        Source::Events { table, .. } => table.key(),
        Source::Entities { snapshot_table, .. } => snapshot_table.key(),
        Source::JoinSource { join, .. } => join.meta.output_table(),
    }
}

/// The left side of a join at D: the left table at D only.
fn left_inputs(left: &Source, lag: u32) -> Vec<Input> {
    let (table, origin) = match left {
        Source::Events { table, .. } => (table.key(), "left.events.table"),
        Source::Entities { snapshot_table, .. } => {
            (snapshot_table.key(), "left.entities.snapshotTable")
        }
        Source::JoinSource { join, .. } => (join.meta.output_table(), "left.joinSource.join"),
    };
    vec![Input::new(
        table,
        Lookback::Days(0),
        lag,
        Some(left.query()),
        origin.into(),
    )]
}

/// What a group-by reads at D. `left_is_events` is set when the group-by is a
/// join part: entity snapshots then shift one day for SNAPSHOT accuracy on an
/// events left (the left row at D sees values as of the end of D-1).
fn source_inputs(gb: &GroupBy, base: &str, lag: u32, left_is_events: Option<bool>) -> Vec<Input> {
    let lookback = match gb.lookback_days() {
        None => Lookback::AllHistory,
        Some(0) => Lookback::Days(0),
        // One extra day for the hop tail of sawtooth windows.
        Some(days) => Lookback::Days(days as u32 + 1),
    };
    let accuracy = gb.effective_accuracy();
    let mut inputs = Vec::new();
    for (i, source) in gb.sources.iter().enumerate() {
        let at = if base.is_empty() {
            format!("sources[{i}]")
        } else {
            format!("{base}.sources[{i}]")
        };
        match source {
            Source::Events {
                table,
                is_cumulative,
                query,
                ..
            } => {
                let lookback = if *is_cumulative {
                    Lookback::Days(0)
                } else {
                    lookback
                };
                inputs.push(Input::new(
                    table.key(),
                    lookback,
                    lag,
                    Some(query),
                    format!("{at}.events.table"),
                ));
            }
            Source::Entities {
                snapshot_table,
                mutation_table,
                query,
                ..
            } => {
                let shift =
                    lag + u32::from(left_is_events == Some(true) && accuracy == Accuracy::Snapshot);
                inputs.push(Input::new(
                    snapshot_table.key(),
                    Lookback::Days(0),
                    shift,
                    Some(query),
                    format!("{at}.entities.snapshotTable"),
                ));
                if let Some(mutations) = mutation_table
                    .as_ref()
                    .filter(|_| accuracy == Accuracy::Temporal)
                {
                    inputs.push(Input::new(
                        mutations.key(),
                        Lookback::Days(0),
                        lag,
                        Some(query),
                        format!("{at}.entities.mutationTable"),
                    ));
                }
            }
            Source::JoinSource { join, query } => {
                inputs.push(Input::new(
                    join.meta.output_table(),
                    lookback,
                    lag,
                    Some(query),
                    format!("{at}.joinSource.join"),
                ));
            }
        }
    }
    inputs
}
