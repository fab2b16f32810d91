//! Turning configs into nodes: one file per config kind, each adding the
//! nodes of its steps through `Builder::node`.
//!
//! - `group_by`: backfill, upload, KV upload, streaming;
//! - `join`: the join's left, parts and final table, and the online
//!   consistency checks;
//! - `label_join`: the label join of a join's `labelPart`;
//! - `staging_query`: a staging query and its declared dependencies;
//! - `sources`: what a source, a join's left or a group-by, reads at D.

mod group_by;
mod join;
mod label_join;
mod sources;
mod staging_query;

use serde_json::{Map, Value};

use crate::config::{Body, Config, Repo};
use crate::graph::notes::no_targets_note;
use crate::graph::{Input, Naming, Node, NodeId, Schedule, Step, archive};
use crate::hash::{self, Hash};
use crate::settings::Settings;

/// Every config's nodes, in config order, and the notes taken on the way.
pub(super) fn nodes(repo: &Repo, settings: &Settings) -> (Vec<Node>, Vec<String>) {
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
    (builder.nodes, builder.notes)
}

/// One node's step, and what it writes and reads.
struct Shape {
    step: Step,
    part: Option<String>,
    output: Option<String>,
    schedule: Schedule,
    inputs: Vec<Input>,
    /// What the job acts on as resolved from the config, beyond the
    /// output table (which every node's key carries): see `resolved`.
    resolved: Map<String, Value>,
}

impl Shape {
    fn new(step: Step, schedule: Schedule) -> Shape {
        Shape {
            step,
            part: None,
            output: None,
            schedule,
            inputs: Vec::new(),
            resolved: Map::new(),
        }
    }

    /// A resolved value the step's job acts on (see `resolved`).
    fn resolved(mut self, field: &str, value: impl Into<Value>) -> Shape {
        self.resolved.insert(field.to_string(), value.into());
        self
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

/// The nodes of the configs added so far, and the notes taken on the way.
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

/// The slice with the values the job acts on under `resolved` (see
/// `crate::hash`): the table it writes, and what `Shape::resolved` adds.
/// They are put beside the raw fields, not filtered by the step's scope:
/// a raw field classed as serving-only or non-semantic (`events.topic`,
/// `executionInfo.outputTableInfo.table`) can still change them, and then
/// `explain` names `resolved.<field>`.
fn with_resolved(slice: Value, output: Option<&str>, mut resolved: Map<String, Value>) -> Value {
    if let Some(table) = output {
        resolved.insert(OUTPUT_TABLE.into(), table.into());
    }
    if resolved.is_empty() {
        return slice;
    }
    let mut map = match slice {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    map.insert(RESOLVED.into(), Value::Object(resolved));
    Value::Object(map)
}

/// Adds one resolved value to a node's slice (see `with_resolved`).
pub(super) fn add_resolved(slice: &mut Value, field: &str, value: Value) {
    if !slice.is_object() {
        *slice = Value::Object(Map::new());
    }
    if let Value::Object(map) = slice {
        let resolved = map
            .entry(RESOLVED)
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(resolved) = resolved {
            resolved.insert(field.to_string(), value);
        }
    }
}

/// Where a slice keeps the resolved values.
pub(crate) const RESOLVED: &str = "resolved";

/// The resolved fields, as `explain` names them under `resolved.`.
const OUTPUT_TABLE: &str = "outputTable";
const ACCURACY: &str = "accuracy";
const LEFT_DATA_MODEL: &str = "leftDataModel";

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
            resolved,
        } = shape;
        let slice = hash::slice(slice_source, "", step.scope()).unwrap_or(Value::Null);
        let slice = with_resolved(slice, output.as_deref(), resolved);
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
}
