//! `chronon-build graph`: the node graph as DOT, JSON or Mermaid.

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

/// What both drawings show: the selected nodes in build order, the external
/// tables they read, and one edge per input (`dashed` for ordering only).
struct Drawing<'g> {
    nodes: Vec<&'g Node>,
    external: BTreeSet<&'g str>,
    /// Producers outside the selection that selected nodes read.
    upstream: BTreeSet<String>,
    edges: Vec<(String, String, bool)>,
}

fn drawing<'g>(graph: &'g Graph, selected: &[bool]) -> Drawing<'g> {
    let mut drawing = Drawing {
        nodes: Vec::new(),
        external: BTreeSet::new(),
        upstream: BTreeSet::new(),
        edges: Vec::new(),
    };
    for node in graph.order.iter().map(|id| &graph.nodes[*id]) {
        if !selected[node.id] {
            continue;
        }
        drawing.nodes.push(node);
        for input in &node.inputs {
            let from = match input.producer {
                Some(p) if selected[p] => graph.nodes[p].label(),
                Some(p) => {
                    drawing.upstream.insert(graph.nodes[p].label());
                    graph.nodes[p].label()
                }
                None => {
                    drawing.external.insert(&input.table);
                    input.table.to_string()
                }
            };
            drawing
                .edges
                .push((from, node.label(), input.ordering_only));
        }
    }
    drawing
}

pub fn to_dot(graph: &Graph, selected: &[bool]) -> String {
    let drawing = drawing(graph, selected);
    let mut out = String::from(
        "digraph chronon {\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];\n",
    );
    for node in &drawing.nodes {
        out.push_str(&dot_node(node));
    }
    for table in &drawing.external {
        let _ = writeln!(out, "  {} [shape=cylinder];", quote(table));
    }
    for (from, to, dashed) in &drawing.edges {
        let style = if *dashed { " [style=dashed]" } else { "" };
        let _ = writeln!(out, "  {} -> {}{style};", quote(from), quote(to));
    }
    out.push_str("}\n");
    out
}

/// A Mermaid flowchart, for pull requests and wikis that render Mermaid.
/// Node ids are generated (`n0`; `t0` for external tables, `u0` for
/// producers outside the selection); every label is escaped with
/// Mermaid's `#code;` entities, so a config name cannot break the chart.
pub fn to_mermaid(graph: &Graph, selected: &[bool]) -> String {
    let drawing = drawing(graph, selected);
    let mut out = String::from("flowchart LR\n");
    let mut ids: std::collections::HashMap<String, String> = Default::default();
    for (i, node) in drawing.nodes.iter().enumerate() {
        let id = format!("n{i}");
        let mut label = format!(
            "{}<br/>{}",
            mermaid_text(node.step.name()),
            mermaid_text(&node.name)
        );
        if let Some(part) = &node.part {
            let _ = write!(label, "<br/>#35;{}", mermaid_text(part));
        }
        let _ = writeln!(out, "  {id}[\"{label}\"]");
        ids.insert(node.label(), id);
    }
    for (i, table) in drawing.external.iter().enumerate() {
        let id = format!("t{i}");
        let _ = writeln!(out, "  {id}[(\"{}\")]", mermaid_text(table));
        ids.insert(table.to_string(), id);
    }
    for (i, label) in drawing.upstream.iter().enumerate() {
        let id = format!("u{i}");
        let _ = writeln!(out, "  {id}([\"{}\"])", mermaid_text(label));
        ids.insert(label.clone(), id);
    }
    for (from, to, dashed) in &drawing.edges {
        let arrow = if *dashed { "-.->" } else { "-->" };
        let _ = writeln!(out, "  {} {arrow} {}", ids[from], ids[to]);
    }
    out
}

/// Text inside a quoted Mermaid label: letters, digits and `._-/` as they
/// are, anything else as a `#code;` entity.
fn mermaid_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || "._-/ ".contains(c) {
            out.push(c);
        } else {
            let _ = write!(out, "#{};", c as u32);
        }
    }
    out
}
