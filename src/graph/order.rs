//! Producer edges between nodes and the order they impose: which node
//! writes each table, who depends on whom, and a cycle named at the edit
//! that made it.

use std::collections::BTreeMap;

use crate::config::{Problem, Repo};

use super::{Input, Node, NodeId};

/// Points each input at the node that writes its table, if another node
/// does; a table written by two nodes is a problem.
pub(super) fn link_producers(repo: &Repo, nodes: &mut [Node]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut producers: BTreeMap<&str, NodeId> = BTreeMap::new();
    for node in nodes.iter() {
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
    for node in nodes.iter_mut() {
        let id = node.id;
        for input in node.inputs.iter_mut().filter(|i| !i.ordering_only) {
            input.producer = producer_of
                .get(input.base_table())
                .copied()
                .filter(|p| *p != id);
        }
    }
    problems
}

/// Per node, the nodes that read what it writes, each once.
pub(super) fn dependents(nodes: &[Node]) -> Vec<Vec<NodeId>> {
    let mut dependents = vec![Vec::new(); nodes.len()];
    for node in nodes {
        for input in &node.inputs {
            if let Some(p) = input.producer
                && !dependents[p].contains(&node.id)
            {
                dependents[p].push(node.id);
            }
        }
    }
    dependents
}

/// Names a cycle at the edge that closes it through a `joinSource`, when
/// there is one, since that is the edit that made it.
pub(super) fn cycle_problem(repo: &Repo, nodes: &[Node], cycle: &[NodeId]) -> Problem {
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
pub(super) fn topological_order(
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
