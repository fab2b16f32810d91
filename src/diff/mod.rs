//! `diff`: what a change to the configs invalidates and what it will cost,
//! with no warehouse and no cluster.
//!
//! Two config sets, base and head, are loaded and turned into graphs. Then:
//! - configs are matched by kind and name: added, removed, renamed (the same
//!   canonical content under a new name) and modified, with every changed
//!   field path classed by the one classification table (`hash::classify`);
//! - each head node is compared with the base node of the same step, config
//!   and part. Every target of a node changes key when the node is new or
//!   its slice hash changed; only the days whose input ranges changed when a
//!   cutoff moved; and downstream, the days that read an invalidated day of
//!   a producer, since keys form a Merkle chain;
//! - the invalidated days are counted against the partitions that exist:
//!   with a state file, those recorded built; without one, every wanted day
//!   from the config's start to `--until`. New targets (new configs, renames,
//!   an earlier start) count their wanted days either way: they are work too.
//!
//! Downstream counts are an upper bound: early cutoff keeps a dependent
//! fresh when its producer's output turns out unchanged.
//!
//! Metadata uploads hash the whole config, so any edit to an online config
//! re-uploads its metadata. They move no data, so they are listed apart and
//! do not count as invalidated.

pub mod render;
pub mod source;

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;
use serde_json::Value;

use crate::config::{Config, ConfigKind, Repo};
use crate::graph::{Graph, Input, Node, Schedule, Start, Step};
use crate::hash::{self, FieldClass, Hash};
use crate::partition::{Day, DayRange};
use crate::settings::Settings;
use crate::store::{NodeKey, StateStore};

/// One side of the comparison.
pub struct Side {
    /// How the user named it: a revision with its commit, or a folder.
    pub label: String,
    pub repo: Repo,
    pub settings: Settings,
    pub graph: Graph,
}

pub struct Options {
    pub until: Day,
    pub from: Option<Day>,
}

/// What a state file tells `diff`: which partitions exist, and how long
/// jobs took.
#[derive(Default)]
pub struct History {
    built: HashMap<NodeKey, Vec<Option<Day>>>,
    /// Median seconds per partition of successful attempts, per node: step,
    /// config and join part.
    per_node: HashMap<NodeKey, f64>,
    /// The same, per step across configs: the estimate for a config with no
    /// history yet.
    per_step: HashMap<Step, f64>,
}

impl History {
    pub fn from_store(store: &StateStore) -> Result<History, crate::store::StoreError> {
        let mut by_node: HashMap<NodeKey, Vec<f64>> = HashMap::new();
        let mut by_step: HashMap<Step, Vec<f64>> = HashMap::new();
        for (node, partitions, duration) in store.job_durations()? {
            let each = duration.as_secs_f64() / f64::from(partitions);
            by_step.entry(node.step).or_default().push(each);
            by_node.entry(node).or_default().push(each);
        }
        Ok(History {
            built: store.built_days()?,
            per_node: by_node.into_iter().map(|(k, v)| (k, median(v))).collect(),
            per_step: by_step.into_iter().map(|(k, v)| (k, median(v))).collect(),
        })
    }

    /// `partitions` of a node at the median pace of its own history (under
    /// any of `names`: a renamed config keeps its old name's), else of its
    /// step's.
    fn estimate(&self, node: &Node, names: &[&str], partitions: usize) -> Option<Estimate> {
        let (each, basis) = names
            .iter()
            .find_map(|name| {
                self.per_node
                    .get(&NodeKey::new(node.step, name, node.part.as_deref()))
            })
            .map(|each| (*each, Basis::Config))
            .or_else(|| {
                self.per_step
                    .get(&node.step)
                    .map(|each| (*each, Basis::Step))
            })?;
        Some(Estimate {
            seconds: each * partitions as f64,
            per_partition_seconds: each,
            basis,
        })
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[mid],
        _ => (values[mid - 1] + values[mid]) / 2.0,
    }
}

#[derive(Debug, Serialize)]
pub struct ConfigRef {
    pub kind: &'static str,
    pub name: String,
    pub path: String,
}

impl ConfigRef {
    fn of(config: &Config) -> ConfigRef {
        ConfigRef {
            kind: config.kind.label(),
            name: config.name.clone(),
            path: config.path.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Rename {
    pub kind: &'static str,
    pub from: String,
    pub to: String,
    pub from_path: String,
    pub to_path: String,
}

#[derive(Debug, Serialize)]
pub struct FieldDiff {
    pub path: String,
    pub class: FieldClass,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

#[derive(Debug, Serialize)]
pub struct Modified {
    pub kind: &'static str,
    pub name: String,
    pub path: String,
    /// The classes of the changed fields, most consequential first.
    pub classes: Vec<FieldClass>,
    pub fields: Vec<FieldDiff>,
}

#[derive(Debug, Default, Serialize)]
pub struct ConfigChanges {
    pub added: Vec<ConfigRef>,
    pub removed: Vec<ConfigRef>,
    pub renamed: Vec<Rename>,
    pub modified: Vec<Modified>,
}

impl ConfigChanges {
    pub fn count(&self) -> usize {
        self.added.len() + self.removed.len() + self.renamed.len() + self.modified.len()
    }
}

/// Why a target's key changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Reason {
    /// The target did not exist on the base side: a new or renamed config, a
    /// config newly online or newly scheduled.
    New,
    /// A field this step hashes changed.
    ConfigChanged,
    /// The step reads other tables than before.
    InputsChanged,
    /// A cutoff moved: the days whose input ranges changed.
    InputRangesChanged,
    /// The schedule starts earlier: partitions wanted for the first time.
    NewlyWanted,
    /// Reads an invalidated partition of this target.
    Upstream { target: String },
}

impl Reason {
    pub fn text(&self) -> String {
        match self {
            Reason::New => "new target".into(),
            Reason::ConfigChanged => "config changed".into(),
            Reason::InputsChanged => "reads other tables".into(),
            Reason::InputRangesChanged => "input ranges changed (cutoff)".into(),
            Reason::NewlyWanted => "start moved earlier".into(),
            Reason::Upstream { target } => format!("upstream {target}"),
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Basis {
    /// The median of this step and config (and join part).
    Config,
    /// The median of this step across configs: this config has no history.
    Step,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Estimate {
    pub seconds: f64,
    pub per_partition_seconds: f64,
    pub basis: Basis,
}

/// The targets of one node whose keys change.
#[derive(Debug, Serialize)]
pub struct Invalidated {
    pub step: Step,
    pub config: String,
    pub part: Option<String>,
    pub label: String,
    pub reasons: Vec<Reason>,
    /// False for the one target of an unpartitioned step (a deploy).
    pub partitioned: bool,
    /// `None` when the count is unknown: no start date, no state.
    pub partitions: Option<usize>,
    pub ranges: Vec<DayRange>,
    pub estimate: Option<Estimate>,
}

#[derive(Debug, Serialize)]
pub struct ServingChange {
    pub kind: &'static str,
    pub name: String,
    pub path: String,
    /// The config was online before under the same name: what it serves
    /// changes under a name (and version) that stays the same.
    pub in_place: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct Totals {
    pub configs_changed: usize,
    /// (step, config[, part]) entries with invalidated targets.
    pub targets: usize,
    pub partitions: usize,
    /// Entries whose partitions cannot be counted: no start date, no state.
    pub uncounted: usize,
    /// Unpartitioned targets to run again (streaming deploys).
    pub redeploys: usize,
    /// Sum of the estimates; `None` without run history.
    pub job_seconds: Option<f64>,
    /// Entries with no estimate.
    pub unestimated: usize,
    pub online_group_bys_changing_serving: usize,
    pub online_joins_changing_serving: usize,
    pub in_place_online_changes: usize,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub base: String,
    pub head: String,
    pub until: Day,
    pub from: Option<Day>,
    /// Whether counts come from a state file (built partitions only).
    pub with_state: bool,
    pub headline: String,
    pub totals: Totals,
    pub configs: ConfigChanges,
    pub targets: Vec<Invalidated>,
    /// Online configs whose metadata upload runs again (any edit does it).
    pub metadata_uploads: Vec<String>,
    pub serving: Vec<ServingChange>,
    pub notes: Vec<String>,
}

impl Report {
    /// Whether anything must be recomputed or redeployed.
    pub fn invalidates(&self) -> bool {
        !self.targets.is_empty()
    }
}

pub fn compute(base: &Side, head: &Side, opts: &Options, history: Option<&History>) -> Report {
    let (configs, renamed_from) = compare_configs(&base.repo, &head.repo);
    let serving = serving_changes(&configs, &base.repo, &head.repo);
    let changes = node_changes(base, head, opts);

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
        targets.push(Invalidated {
            step: node.step,
            config: node.name.clone(),
            part: node.part.clone(),
            label: node.label(),
            reasons: change.reasons.clone(),
            partitioned: !matches!(node.schedule, Schedule::Unpartitioned),
            partitions,
            ranges,
            estimate,
        });
    }
    targets.sort_by(|a, b| (&a.config, a.step, &a.part).cmp(&(&b.config, b.step, &b.part)));

    let totals = totals(&configs, &targets, &serving, history.is_some());
    // Notes the head brings: what was already true on the base is not news.
    let mut notes: Vec<String> = head
        .graph
        .notes
        .iter()
        .filter(|n| !base.graph.notes.contains(n))
        .cloned()
        .collect();
    if targets.iter().any(|t| {
        t.reasons
            .iter()
            .any(|r| matches!(r, Reason::Upstream { .. }))
    }) {
        notes.push(
            "downstream counts are an upper bound: a dependent stays fresh (early cutoff) when its upstream output does not change".into(),
        );
    }
    if totals.uncounted > 0 {
        notes.push(format!(
            "{} invalidated step(s) have no start date to count from: pass --from, set `start` in chronon-build.toml, or pass --state",
            totals.uncounted
        ));
    }
    if history.is_none() && totals.partitions > 0 {
        notes.push(
            "without --state every wanted partition from each config's start to --until counts, and there is no run history to estimate cost".into(),
        );
    }
    Report {
        base: base.label.clone(),
        head: head.label.clone(),
        until: opts.until,
        from: opts.from,
        with_state: history.is_some(),
        headline: headline(&configs, &totals),
        totals,
        configs,
        targets,
        metadata_uploads,
        serving,
        notes,
    }
}

// ---------------------------------------------------------------------------
// Configs

/// Configs added, removed, renamed and modified; and, per renamed config's
/// new name, its old name (its run history estimates the new one's cost).
fn compare_configs<'a>(
    base: &'a Repo,
    head: &'a Repo,
) -> (ConfigChanges, HashMap<&'a str, &'a str>) {
    let key = |c: &'a Config| (c.kind, c.name.as_str());
    let base_by: HashMap<(ConfigKind, &str), &Config> =
        base.configs.iter().map(|c| (key(c), c)).collect();
    let head_by: HashMap<(ConfigKind, &str), &Config> =
        head.configs.iter().map(|c| (key(c), c)).collect();

    let mut changes = ConfigChanges::default();
    let mut added: Vec<&Config> = Vec::new();
    for config in &head.configs {
        let Some(old) = base_by.get(&key(config)) else {
            added.push(config);
            continue;
        };
        let (a, b) = (hash::canonical(&old.raw), hash::canonical(&config.raw));
        if a == b {
            continue;
        }
        let fields: Vec<FieldDiff> = hash::diff(&a, &b)
            .into_iter()
            .map(|(path, old, new)| FieldDiff {
                class: hash::classify(&path),
                path,
                old,
                new,
            })
            .collect();
        let mut classes: Vec<FieldClass> = fields.iter().map(|f| f.class).collect();
        classes.sort();
        classes.dedup();
        changes.modified.push(Modified {
            kind: config.kind.label(),
            name: config.name.clone(),
            path: config.path.clone(),
            classes,
            fields,
        });
    }
    let mut removed: Vec<&Config> = base
        .configs
        .iter()
        .filter(|c| !head_by.contains_key(&key(c)))
        .collect();

    // A rename keeps everything but the name: match on the content without it.
    let mut renamed_from = HashMap::new();
    let unnamed = |c: &Config| {
        let mut value = hash::canonical(&c.raw);
        if let Some(meta) = value.get_mut("metaData").and_then(Value::as_object_mut) {
            meta.remove("name");
        }
        (c.kind, Hash::of_json(&value))
    };
    let mut by_content: HashMap<(ConfigKind, Hash), Vec<usize>> = HashMap::new();
    for (i, config) in removed.iter().enumerate() {
        by_content.entry(unnamed(config)).or_default().push(i);
    }
    let mut taken = vec![false; removed.len()];
    added.retain(|config| {
        let found = by_content
            .get(&unnamed(config))
            .and_then(|candidates| candidates.iter().find(|i| !taken[**i]).copied());
        let Some(i) = found else {
            return true;
        };
        taken[i] = true;
        let old = removed[i];
        renamed_from.insert(config.name.as_str(), old.name.as_str());
        changes.renamed.push(Rename {
            kind: config.kind.label(),
            from: old.name.clone(),
            to: config.name.clone(),
            from_path: old.path.clone(),
            to_path: config.path.clone(),
        });
        false
    });
    let mut i = 0;
    removed.retain(|_| {
        i += 1;
        !taken[i - 1]
    });
    changes.added = added.into_iter().map(ConfigRef::of).collect();
    changes.removed = removed.into_iter().map(ConfigRef::of).collect();
    (changes, renamed_from)
}

/// Whether a changed field changes what a fetch returns. Sampling rates and
/// the online flag itself do not; nor, for a join, what only offline
/// backfills read (the left side, bootstraps, labels).
fn changes_served_values(kind: ConfigKind, field: &FieldDiff) -> bool {
    let last = field.path.rsplit('.').next().unwrap_or_default();
    let top = field.path.split(['.', '[']).next().unwrap_or_default();
    let served = match field.class {
        FieldClass::Semantic | FieldClass::Cutoff => true,
        FieldClass::ServingOnly => !matches!(
            last,
            "online" | "samplePercent" | "consistencySamplePercent"
        ),
        FieldClass::NonSemantic => false,
    };
    served
        && (kind != ConfigKind::Join
            || matches!(top, "joinParts" | "derivations" | "onlineExternalParts"))
}

fn serving_changes(changes: &ConfigChanges, base: &Repo, head: &Repo) -> Vec<ServingChange> {
    let online = |repo: &Repo, name: &str| repo.find(name).is_some_and(|c| c.meta().online);
    let mut out = Vec::new();
    for modified in &changes.modified {
        let Some(config) = head.find(&modified.name).filter(|c| c.meta().online) else {
            continue;
        };
        if modified
            .fields
            .iter()
            .any(|f| changes_served_values(config.kind, f))
        {
            out.push(ServingChange {
                kind: modified.kind,
                name: modified.name.clone(),
                path: modified.path.clone(),
                in_place: online(base, &modified.name),
            });
        }
    }
    for rename in &changes.renamed {
        if online(head, &rename.to) {
            out.push(ServingChange {
                kind: rename.kind,
                name: rename.to.clone(),
                path: rename.to_path.clone(),
                in_place: false,
            });
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Targets

/// How one head node's targets change.
#[derive(Default)]
struct Change {
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
fn node_changes(base: &Side, head: &Side, opts: &Options) -> Vec<Change> {
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
        let mut change = Change::default();
        match base_nodes.get(&(node.step, node.name.as_str(), node.part.as_deref())) {
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
            match upstream.changed_days() {
                None => {
                    change.all = true;
                    change.add_reason(reason);
                }
                Some(days) => {
                    let reading = reading_days(node, input, &days, opts.until);
                    match reading {
                        Reading::All => change.all = true,
                        Reading::Days(found) if found.is_empty() => continue,
                        Reading::Days(found) => change.days.extend(found),
                    }
                    change.add_reason(reason);
                }
            }
        }
        changes[*id] = change;
    }
    changes
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
        (Schedule::Daily { .. }, crate::graph::Lookback::Days(n)) => DayRange::new(
            first.plus(input.shift),
            last.plus(input.shift + n as i32).min(until),
        ),
        (Schedule::Daily { .. }, crate::graph::Lookback::AllHistory) => {
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
            crate::graph::Lookback::Days(n) => n as i32 + b.shift,
            crate::graph::Lookback::AllHistory => b.shift,
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

// ---------------------------------------------------------------------------
// Totals and the headline

fn totals(
    configs: &ConfigChanges,
    targets: &[Invalidated],
    serving: &[ServingChange],
    with_state: bool,
) -> Totals {
    let mut totals = Totals {
        configs_changed: configs.count(),
        targets: targets.len(),
        ..Totals::default()
    };
    let mut seconds = 0.0;
    for target in targets {
        match (target.partitioned, target.partitions) {
            (_, None) => totals.uncounted += 1,
            (true, Some(n)) => totals.partitions += n,
            (false, Some(n)) => totals.redeploys += n,
        }
        match target.estimate {
            Some(estimate) => seconds += estimate.seconds,
            None if with_state && target.partitions.is_some() => totals.unestimated += 1,
            None => {}
        }
    }
    totals.job_seconds = with_state.then_some(seconds);
    for change in serving {
        match change.kind {
            "join" => totals.online_joins_changing_serving += 1,
            _ => totals.online_group_bys_changing_serving += 1,
        }
        if change.in_place {
            totals.in_place_online_changes += 1;
        }
    }
    totals
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Job time as people say it: `14.2 h`, `25 min`, `40 s`.
pub fn job_time(seconds: f64) -> String {
    if seconds >= 3600.0 {
        format!("{:.1} h", seconds / 3600.0)
    } else if seconds >= 60.0 {
        format!("{:.0} min", seconds / 60.0)
    } else {
        format!("{seconds:.0} s")
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{} {}", thousands(n), if n == 1 { one } else { many })
}

fn headline(configs: &ConfigChanges, totals: &Totals) -> String {
    let mut out = match totals.configs_changed {
        0 => "no config changed".to_string(),
        n => format!("{} changed", plural(n, "config", "configs")),
    };
    let mut parts = Vec::new();
    if totals.partitions > 0 {
        let mut text = format!(
            "{} to recompute",
            plural(totals.partitions, "partition", "partitions")
        );
        if let Some(seconds) = totals.job_seconds {
            text.push_str(&format!(" (≈ {} of job time", job_time(seconds)));
            if totals.unestimated > 0 {
                text.push_str(&format!(
                    ", {} with no history",
                    thousands(totals.unestimated)
                ));
            }
            text.push(')');
        }
        parts.push(text);
    }
    if totals.uncounted > 0 {
        parts.push(format!(
            "{} with uncounted partitions",
            plural(totals.uncounted, "step", "steps")
        ));
    }
    if totals.redeploys > 0 {
        parts.push(format!(
            "{} to redeploy",
            plural(totals.redeploys, "streaming job", "streaming jobs")
        ));
    }
    if parts.is_empty() && totals.configs_changed > 0 {
        let only_non_semantic = configs.added.is_empty()
            && configs.renamed.is_empty()
            && configs
                .modified
                .iter()
                .all(|m| m.classes == [FieldClass::NonSemantic]);
        parts.push(if only_non_semantic {
            "nothing to recompute (non-semantic changes only)".to_string()
        } else {
            "nothing to recompute".to_string()
        });
    }
    let serving = [
        (
            totals.online_group_bys_changing_serving,
            "online group-by",
            "online group-bys",
        ),
        (
            totals.online_joins_changing_serving,
            "online join",
            "online joins",
        ),
    ];
    for (n, one, many) in serving {
        if n > 0 {
            parts.push(format!(
                "{} {} serving",
                plural(n, one, many),
                if n == 1 { "changes" } else { "change" }
            ));
        }
    }
    if !parts.is_empty() {
        out.push_str(": ");
        out.push_str(&parts.join(", "));
    }
    out
}

/// The name with its version suffix bumped: `team.gb.v1` becomes `team.gb.v2`.
pub fn next_version(name: &str) -> String {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let stem = &name[..name.len() - digits];
    match name[name.len() - digits..].parse::<u64>() {
        Ok(n) if stem.ends_with(".v") || stem.ends_with("_v") => format!("{stem}{}", n + 1),
        _ => format!("{name}_v2"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_bump_at_the_end_of_the_name() {
        assert_eq!(next_version("risk.purchases.v1"), "risk.purchases.v2");
        assert_eq!(next_version("team.gb_v9"), "team.gb_v10");
        assert_eq!(next_version("team.gb"), "team.gb_v2");
        assert_eq!(next_version("team.gb2"), "team.gb2_v2");
    }

    #[test]
    fn medians_and_numbers_read_as_people_write_them() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(thousands(1095), "1,095");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(12), "12");
        assert_eq!(job_time(14.2 * 3600.0), "14.2 h");
        assert_eq!(job_time(1500.0), "25 min");
    }
}
