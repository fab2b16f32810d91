//! `chronon-build graph`: the node graph as DOT or JSON.

use std::collections::BTreeSet;
use std::fmt::Write;

use serde::Serialize;

use super::{Graph, Input, Node, Schedule};
use crate::config::Repo;

#[derive(Serialize)]
pub struct GraphJson<'g> {
    pub nodes: Vec<NodeJson<'g>>,
    pub notes: &'g [String],
}

#[derive(Serialize)]
pub struct NodeJson<'g> {
    pub id: String,
    pub step: super::Step,
    pub config: &'g str,
    pub file: &'g str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part: Option<&'g str>,
    pub team: &'g str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<&'g str>,
    pub schedule: &'g Schedule,
    pub slice_hash: String,
    pub inputs: Vec<InputJson<'g>>,
}

#[derive(Serialize)]
pub struct InputJson<'g> {
    #[serde(flatten)]
    pub input: &'g Input,
    /// The node that writes this table; absent for external tables.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub producer: Option<String>,
}

pub fn to_json<'g>(graph: &'g Graph, repo: &'g Repo, selected: &[bool]) -> GraphJson<'g> {
    let nodes = graph
        .order
        .iter()
        .map(|id| &graph.nodes[*id])
        .filter(|n| selected[n.id])
        .map(|n| NodeJson {
            id: n.label(),
            step: n.step,
            config: &n.name,
            file: &repo.configs[n.config].path,
            part: n.part.as_deref(),
            team: &n.team,
            output: n.output.as_deref(),
            schedule: &n.schedule,
            slice_hash: n.slice_hash.hex(),
            inputs: n
                .inputs
                .iter()
                .map(|i| InputJson {
                    input: i,
                    producer: i.producer.map(|p| graph.nodes[p].label()),
                })
                .collect(),
        })
        .collect();
    GraphJson {
        nodes,
        notes: &graph.notes,
    }
}

fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn dot_node(node: &Node) -> String {
    let mut label = format!("{}\\n{}", node.step, node.name);
    if let Some(part) = &node.part {
        let _ = write!(label, "\\n{part}");
    }
    format!(
        "  {} [label={}];\n",
        quote(&node.label()),
        quote(&label).replace("\\\\n", "\\n")
    )
}

pub fn to_dot(graph: &Graph, selected: &[bool]) -> String {
    let mut out = String::from(
        "digraph chronon {\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];\n",
    );
    let mut external = BTreeSet::new();
    let mut edges = String::new();
    for id in &graph.order {
        let node = &graph.nodes[*id];
        if !selected[*id] {
            continue;
        }
        out.push_str(&dot_node(node));
        for input in &node.inputs {
            let from = match input.producer {
                Some(p) => graph.nodes[p].label(),
                None => {
                    external.insert(input.table.clone());
                    input.table.clone()
                }
            };
            let style = if input.ordering_only {
                " [style=dashed]"
            } else {
                ""
            };
            let _ = writeln!(
                edges,
                "  {} -> {}{style};",
                quote(&from),
                quote(&node.label())
            );
        }
    }
    for table in external {
        let _ = writeln!(out, "  {} [shape=cylinder];", quote(&table));
    }
    out.push_str(&edges);
    out.push_str("}\n");
    out
}
