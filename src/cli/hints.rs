//! Hints where a user is stuck, added to a plan's notes: source tables of
//! which the warehouse holds nothing (where it looked, how to load them),
//! and nothing recorded as built while output tables exist (`adopt`).

use std::collections::BTreeSet;

use super::Workspace;
use crate::plan::{Plan, StaleReason, Status};
use crate::probe::Probe;
use crate::settings::WarehouseKind;

/// How many output tables the `adopt` hint probes, at most.
const OUTPUTS_PROBED: usize = 20;

/// The hints for this plan, as notes (`SUBJECT: message`).
pub fn for_plan(ws: &Workspace, plan: &Plan, probe: &dyn Probe) -> Vec<String> {
    let mut hints = Vec::new();
    if let Some(hint) = empty_sources(ws, plan) {
        hints.push(hint);
    }
    if let Some(hint) = adopt(ws, plan, probe) {
        hints.push(hint);
    }
    hints
}

/// Tables targets are blocked on, of which the warehouse holds no
/// partition at all: said once, with where the tool looked and how to
/// load data.
fn empty_sources(ws: &Workspace, plan: &Plan) -> Option<String> {
    let mut missing: BTreeSet<&str> = BTreeSet::new();
    for (id, node) in plan.nodes.iter().enumerate() {
        if !plan.planned[id] {
            continue;
        }
        for target in &node.targets {
            if let Status::Blocked { input } = &target.status
                && input.invalid_config.is_none()
                && plan.probed.get(&*input.table).is_none_or(|p| p.is_empty())
            {
                missing.insert(&input.table);
            }
        }
    }
    let first = *missing.iter().next()?;
    let tables = match missing.len() {
        1 => first.to_string(),
        n => format!("{first} and {} more source table(s)", n - 1),
    };
    let settings = &ws.settings.warehouse;
    let root = super::absolute(&ws.settings.resolve(&ws.repo.root, &settings.root()));
    let root = root.display();
    Some(match settings.kind {
        WarehouseKind::Sqlite => {
            let namespaces = crate::warehouse::Warehouse::new(
                ws.settings.resolve(&ws.repo.root, &settings.root()),
                &settings.partition_column,
            )
            .namespaces()
            .map_or(0, |n| n.len());
            let held = match namespaces {
                0 => "it holds no table".to_string(),
                n => format!("it holds {n} namespace file(s), none with these tables' partitions"),
            };
            format!(
                "warehouse: no partition of {tables} in the embedded warehouse at {root} \
                 ({held}): load them with `chronon-build warehouse import TABLE FILE`, list \
                 their files under [warehouse.seed] in chronon-build.toml, or read them where \
                 they are with [warehouse] kind = \"iceberg\", \"delta\", \"hive-dir\" or \
                 \"command\" (docs/warehouse.md)"
            )
        }
        WarehouseKind::Command => format!(
            "warehouse: warehouse.command lists no partition of {tables}: check the command in \
             chronon-build.toml (docs/warehouse.md)"
        ),
        kind => format!(
            "warehouse: no partition of {tables} in the {} warehouse at {root}: check \
             [warehouse] root, catalog or [warehouse.tables] in chronon-build.toml \
             (docs/warehouse.md)",
            kind_name(kind)
        ),
    })
}

fn kind_name(kind: WarehouseKind) -> &'static str {
    match kind {
        WarehouseKind::Sqlite => "sqlite",
        WarehouseKind::HiveDir => "hive-dir",
        WarehouseKind::Command => "command",
        WarehouseKind::Iceberg => "iceberg",
        WarehouseKind::Delta => "delta",
    }
}

/// Nothing recorded as built anywhere, every stale target never built, and
/// yet output tables hold partitions: a lost (or new) state, which `adopt`
/// fills from what is there.
fn adopt(ws: &Workspace, plan: &Plan, probe: &dyn Probe) -> Option<String> {
    let planned = || (0..plan.nodes.len()).filter(|&id| plan.planned[id]);
    // Node memos leave records unloaded: a fresh target is a record too.
    if planned().any(|id| {
        !plan.state[id].built.is_empty()
            || plan.nodes[id]
                .targets
                .iter()
                .any(|t| matches!(t.status, Status::Fresh))
    }) {
        return None;
    }
    let never_built: Vec<usize> = planned()
        .filter(|&id| {
            plan.nodes[id].targets.iter().any(
                |t| matches!(&t.status, Status::Stale(r) if matches!(**r, StaleReason::NeverBuilt)),
            )
        })
        .collect();
    let outputs: BTreeSet<&str> = never_built
        .iter()
        .filter_map(|&id| ws.graph.nodes[id].output.as_deref())
        .take(OUTPUTS_PROBED)
        .collect();
    // A user's probe command is run once per plan: only what it listed.
    let may_probe = ws.settings.warehouse.kind != WarehouseKind::Command;
    let held: Vec<&str> = outputs
        .into_iter()
        .filter(|table| match plan.probed.get(*table) {
            Some(partitions) => !partitions.is_empty(),
            None => may_probe && probe.has_partitions(table).unwrap_or(false),
        })
        .collect();
    let first = held.first()?;
    let tables = match held.len() {
        1 => first.to_string(),
        n => format!("{first} and {} more", n - 1),
    };
    Some(format!(
        "state: nothing is recorded as built in {}, yet the warehouse holds partitions of \
         output table(s) {tables}: if they are current, `chronon-build adopt --until {}` \
         records them as built without running anything",
        ws.state_location().name(),
        plan.until
    ))
}
