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
//!
//! Files:
//! - `node`: `Node`, its `Input`s (`Lookback`, shifts, cutoffs) and
//!   `Schedule`;
//! - `builder`: configs to nodes, one file per config kind (group-bys,
//!   joins, label joins, staging queries) and what sources read;
//! - `order`: producer edges, dependents, topological order and cycles;
//! - `notes`: configs without targets, stale inlined group-bys;
//! - `tables`: derived table names as the Drivers write them (`Naming`);
//! - `archive`: what makes a real Driver archive a join's tables;
//! - `render`: DOT, Mermaid and JSON output.

pub(crate) mod archive;
mod builder;
mod node;
mod notes;
mod order;
pub(crate) mod render;
pub(crate) mod tables;

use crate::config::{ConfigErrors, Repo};
use crate::settings::Settings;

pub use crate::step::Step;
pub use node::{Input, Lookback, Node, NodeId, Schedule, Start};
pub use tables::Naming;

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
        let (mut nodes, mut notes) = builder::nodes(repo, settings);
        let mut problems = order::link_producers(repo, &mut nodes);
        let dependents = order::dependents(&nodes);
        let order = match order::topological_order(&nodes, &dependents) {
            Ok(order) => order,
            Err(cycle) => {
                problems.push(order::cycle_problem(repo, &nodes, &cycle));
                Vec::new()
            }
        };
        if !problems.is_empty() {
            problems.sort();
            return Err(ConfigErrors(problems));
        }
        notes.extend(notes::stale_inline_copies(repo));
        Ok(Graph {
            nodes,
            order,
            dependents,
            notes,
        })
    }

    /// Adds to a node's slice, and so to its key, a value its job acts on
    /// that is resolved outside the config (the partition layout from the
    /// job environment or the Spark conf: `exec::partitioning`).
    pub fn resolve(&mut self, id: NodeId, field: &str, value: serde_json::Value) {
        let node = &mut self.nodes[id];
        builder::add_resolved(&mut node.slice, field, value);
        node.slice_hash = crate::hash::Hash::of_json(&node.slice);
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
