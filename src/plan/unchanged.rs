//! Nodes nothing touched, found before any table is listed: a node whose
//! stored memo covers all its wanted days, and was stored with the same
//! digest by versions (`memo::by_versions`: every table it reads or probes
//! as its version in the warehouse's catalog, every producer as its own
//! such digest), is fresh as the memo says, and so are its producers. Its
//! tables are listed only when a node that is not held reads its output.
//! A warm plan then costs one read of the state's memos and one of each
//! namespace's versions, plus what changed.
//!
//! The versions are read before any partition, so a table written after
//! has a version the memo's never equals: a memo stored by this plan can
//! only be older than the partitions it was decided from, never newer.

use std::collections::{BTreeSet, HashMap};

use super::{Context, PlanOptions, memo, node_key, wanted_days};
use crate::error::Error;
use crate::graph::{Graph, Step};
use crate::hash::Hash;
use crate::probe::{Partitions, Versions};
use crate::store::{NodeKey, NodeState, day_column};

/// Per node id, its memo by versions over all its wanted days, and whether
/// the stored memo holds by it.
pub(super) struct Unchanged {
    /// `None` where a version is unknown, or the node is not planned or
    /// has no wanted day.
    pub digests: Vec<Option<Hash>>,
    /// The stored memo was stored with the same digest, covers every
    /// wanted day, and the producers the node reads are held too.
    pub held: Vec<bool>,
}

impl Unchanged {
    /// Nothing held (no state, a probe that keeps no versions, or a plan
    /// that loads every recorded target).
    pub fn none(nodes: usize) -> Unchanged {
        Unchanged {
            digests: vec![None; nodes],
            held: vec![false; nodes],
        }
    }

    /// Whether a planned node that is not held reads the output of `id`:
    /// then its column is made, from its probed output or its records.
    pub fn read_by_unheld(&self, graph: &Graph, planned: &[bool], id: usize) -> bool {
        graph.dependents[id]
            .iter()
            .any(|&d| planned[d] && !self.held[d])
    }
}

/// Every table the planned nodes read (not from another node) or probe as
/// their output: those whose versions are asked for.
pub(super) fn tables(graph: &Graph, planned: &[bool]) -> Vec<String> {
    let mut tables = BTreeSet::new();
    for node in graph.nodes.iter().filter(|n| planned[n.id]) {
        tables.extend(node.external_inputs().map(|i| i.table.to_string()));
        tables.extend(node.probed_table().map(str::to_string));
    }
    tables.into_iter().collect()
}

/// The planned nodes' digests by versions, producers first, and which of
/// them hold. `starts` has the tables whose first partition starts a node.
pub(super) fn find(
    ctx: &Context,
    opts: &PlanOptions,
    planned: &[bool],
    state: &HashMap<NodeKey, NodeState>,
    versions: &Versions,
    starts: &HashMap<String, Partitions>,
) -> Result<Unchanged, Error> {
    let graph = ctx.graph;
    let mut found = Unchanged::none(graph.nodes.len());
    if versions.is_empty() {
        return Ok(found);
    }
    for &id in graph.order.iter().filter(|&&id| planned[id]) {
        let node = &graph.nodes[id];
        let days = wanted_days(node, opts.until, opts.from, ctx.settings, starts)?;
        let Some(last) = days.last() else { continue };
        let digest = memo::by_versions(node, opts.until, &days, versions, &found.digests);
        found.digests[id] = digest;
        let Some(state) = state.get(&node_key(node)) else {
            continue;
        };
        let producers_held = node.producers_read().all(|p| found.held[p]);
        found.held[id] = digest.is_some()
            && node.step != Step::GroupByStreaming
            && state.failed.is_empty()
            && state.forced.is_empty()
            && producers_held
            && state
                .memo
                .is_some_and(|m| m.versions == digest && m.last == day_column(*last));
    }
    Ok(found)
}
