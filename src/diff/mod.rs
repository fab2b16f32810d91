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
//!
//! Files:
//! - `mod.rs`: the two sides, the options, and `compute`, which puts the
//!   report together;
//! - `report.rs`: the report's types (what the JSON format serializes);
//! - `configs.rs`: configs matched across the sides (added, removed,
//!   renamed, modified) and the online configs whose served values change;
//! - `targets.rs`: which targets change key, and which of their partitions
//!   count;
//! - `history.rs`: a state file's built partitions and the median pace of
//!   past jobs, for the estimates;
//! - `totals.rs`: the totals, the headline, numbers and job time as text;
//! - `render.rs`: the report as text and as Markdown;
//! - `source.rs`: where a side comes from (a folder or a git revision).

mod configs;
mod history;
pub(crate) mod render;
mod report;
pub(crate) mod source;
mod targets;
mod totals;

pub use configs::next_version;
pub use history::History;
pub use report::{
    Basis, ConfigChanges, ConfigRef, Estimate, FieldDiff, Invalidated, Modified, Reason, Rename,
    Report, ServingChange, Totals,
};
pub use totals::{job_time, thousands};

use crate::config::Repo;
use crate::graph::Graph;
use crate::partition::Day;
use crate::settings::Settings;

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

pub fn compute(base: &Side, head: &Side, opts: &Options, history: Option<&History>) -> Report {
    let (configs, renamed_from) = configs::compare_configs(&base.repo, &head.repo);
    let serving = configs::serving_changes(&configs, &base.repo, &head.repo);
    let changes = targets::node_changes(base, head, opts);
    let (targets, metadata_uploads) =
        targets::invalidated(head, &changes, &renamed_from, opts, history);
    let totals = totals::totals(&configs, &targets, &serving, history.is_some());
    let notes = notes(base, head, &targets, &totals, history.is_some());
    Report {
        base: base.label.clone(),
        head: head.label.clone(),
        until: opts.until,
        from: opts.from,
        with_state: history.is_some(),
        headline: totals::headline(&configs, &totals),
        totals,
        configs,
        targets,
        metadata_uploads,
        serving,
        notes,
    }
}

fn notes(
    base: &Side,
    head: &Side,
    targets: &[Invalidated],
    totals: &Totals,
    with_state: bool,
) -> Vec<String> {
    // Notes the head brings: what was already true on the base is not news.
    // The loader's say which staging queries' SQL was not read (their
    // reads are not checked against their dependencies).
    let mut notes: Vec<String> = head
        .repo
        .notes
        .iter()
        .filter(|n| !base.repo.notes.contains(n))
        .chain(
            head.graph
                .notes
                .iter()
                .filter(|n| !base.graph.notes.contains(n)),
        )
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
    if !with_state && totals.partitions > 0 {
        notes.push(
            "without --state every wanted partition from each config's start to --until counts, and there is no run history to estimate cost".into(),
        );
    }
    notes
}
