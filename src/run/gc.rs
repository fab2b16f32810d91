//! Orphans: partitions of a table a node writes that lie before the node's
//! start (its start moved later). No build wants them and a clean build
//! would not have them, so they go: from the embedded warehouse directly
//! (`run` does this before it starts jobs), from others through
//! `warehouse.delete_command`, one call per partition (`gc`), like
//! `ninja -t cleandead`.
//!
//! And what nodes no config makes any more left behind (`Leftover`: a
//! config renamed, a join part removed): the table each wrote, the local
//! KV entries, the state's rows. Online services may still read them while
//! they move to the new version, so they stay until `gc --orphans` is
//! asked to remove them.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::error::Error;
use crate::exec::command::{self, CommandLine};
use crate::graph::{Graph, Step};
use crate::plan::Orphan;
use crate::probe::{Layouts, Probe};
use crate::settings::{ExecutorKind, Settings, WarehouseKind};
use crate::store::{NodeKey, RecordedNode, StateStore};
use crate::warehouse::{TableName, Warehouse};

/// Removes the orphans (or, with `dry_run`, only says what it would);
/// returns one line per table for the run log.
pub fn remove(
    settings: &Settings,
    repo_root: &std::path::Path,
    layouts: &Layouts,
    orphans: &[Orphan],
    dry_run: bool,
) -> Result<Vec<String>, Error> {
    let warehouse = Warehouse::new(
        settings.resolve(repo_root, &settings.warehouse.root()),
        &settings.warehouse.partition_column,
    );
    let mut said = Vec::new();
    for orphan in orphans {
        let verb = if dry_run { "would remove" } else { "removed" };
        said.push(format!(
            "{verb} {} partition(s) of {} before {}'s start {}",
            orphan.partitions.len(),
            orphan.table,
            orphan.target,
            orphan.start
        ));
        if dry_run {
            continue;
        }
        match settings.warehouse.kind {
            WarehouseKind::Sqlite => {
                let name = TableName::parse(&orphan.table)?;
                warehouse.remove_partitions(&name, &orphan.partitions)?;
            }
            _ => delete_each(settings, repo_root, layouts, orphan)?,
        }
    }
    Ok(said)
}

/// Runs `warehouse.delete_command` once per partition.
fn delete_each(
    settings: &Settings,
    repo_root: &std::path::Path,
    layouts: &Layouts,
    orphan: &Orphan,
) -> Result<(), Error> {
    let argv = &settings.warehouse.delete_command;
    if argv.is_empty() {
        return Err(Error::Settings(format!(
            "warehouse.delete_command: expected an argv such as [\"drop-partition\", \"{{table}}\", \
             \"{{partition}}\"] to remove {} partition(s) of {} (or leave them: readers do not see them)",
            orphan.partitions.len(),
            orphan.table
        )));
    }
    let layout = layouts.of(&orphan.table);
    for day in &orphan.partitions {
        let value = layout.format.format(*day);
        let vars = [
            ("table", orphan.table.as_str()),
            ("partition_column", layout.column.as_str()),
            ("partition", value.as_str()),
        ];
        let command = CommandLine::filled(argv, &vars, repo_root);
        let shown = command::display(&command.argv);
        let output = command::run_captured(&command, b"", settings.warehouse.command_timeout)
            .map_err(|e| Error::Io(format!("{shown}: {e}")))?;
        if !output.status.success() {
            return Err(Error::Io(format!(
                "{shown}: {} deleting {} {}={value}: {}",
                output.status,
                orphan.table,
                layout.column,
                output.stderr_text()
            )));
        }
    }
    Ok(())
}

/// What a node that no config makes any more left behind.
#[derive(Clone, Debug, Serialize)]
pub struct Leftover {
    pub target: String,
    pub config: String,
    /// When its last target was recorded (seconds since the epoch).
    pub last_built: Option<i64>,
    /// The table it wrote, unless a node of the graph writes or reads it.
    pub table: Option<String>,
    /// The table's partitions, as probed.
    pub partitions: usize,
    /// The local KV store's entries it wrote: (dataset, key), the key
    /// `None` for the whole dataset.
    pub kv: Vec<(String, Option<String>)>,
    /// Its rows in the state: targets, failures, forced marks, memo.
    pub state_rows: usize,
    #[serde(skip)]
    key: NodeKey,
}

impl Leftover {
    /// What it left, in a few words.
    pub fn what(&self) -> String {
        let mut parts = Vec::new();
        if let Some(table) = &self.table {
            parts.push(format!("table {table} ({} partition(s))", self.partitions));
        }
        for (dataset, key) in &self.kv {
            parts.push(match key {
                Some(key) => format!("KV entry {dataset}/{key}"),
                None => format!("KV dataset {dataset}"),
            });
        }
        parts.push(format!("{} state row(s)", self.state_rows));
        parts.join(", ")
    }
}

/// The recorded nodes the graph has no node for, with what they left: the
/// table each wrote (as the state recorded it) unless a node of the graph
/// writes or reads it, and the KV entries the local engine names after
/// the config, unless a node of the graph writes the same.
pub fn leftovers(graph: &Graph, recorded: Vec<RecordedNode>) -> Vec<Leftover> {
    let current: BTreeSet<NodeKey> = graph
        .nodes
        .iter()
        .map(|n| NodeKey::new(n.step, &n.name, n.part.as_deref()))
        .collect();
    let tables_in_use: BTreeSet<&str> = graph
        .nodes
        .iter()
        .flat_map(|n| {
            n.output
                .as_deref()
                .into_iter()
                .chain(n.inputs.iter().map(|i| &*i.table))
        })
        .map(|t| crate::config::TableRef::split(t).0)
        .collect();
    let kv_in_use: BTreeSet<(String, Option<String>)> = current
        .iter()
        .flat_map(|k| kv_entries_of(k.step, &k.config))
        .collect();
    recorded
        .into_iter()
        .filter(|r| !current.contains(&r.key))
        .map(|r| Leftover {
            target: r.key.label(),
            config: r.key.config.clone(),
            last_built: r.last_built,
            table: r.output.filter(|t| !tables_in_use.contains(t.as_str())),
            partitions: 0,
            kv: kv_entries_of(r.key.step, &r.key.config)
                .into_iter()
                .filter(|e| !kv_in_use.contains(e))
                .collect(),
            state_rows: r.rows,
            key: r.key,
        })
        .collect()
}

/// What the local engine writes to the KV store for one step of a config,
/// by the config's name alone: (dataset, key), the key `None` for the whole
/// dataset. `gc` removes them once no config makes the node.
fn kv_entries_of(step: Step, config: &str) -> Vec<(String, Option<String>)> {
    use crate::engine::kv::{METADATA, batch_dataset};
    use crate::engine::streaming::{DEPLOYED, streaming_dataset_of};
    match step {
        Step::UploadToKv => vec![(batch_dataset(config), None)],
        Step::GroupByStreaming => vec![
            (DEPLOYED.to_string(), Some(config.to_string())),
            (streaming_dataset_of(config), None),
        ],
        Step::MetadataUpload => vec![(METADATA.to_string(), Some(config.to_string()))],
        _ => Vec::new(),
    }
}

/// `leftovers` of the state at hand, their tables' partitions counted by
/// `probe`.
pub fn find_leftovers(
    graph: &Graph,
    store: &StateStore,
    probe: &dyn Probe,
) -> Result<Vec<Leftover>, Error> {
    let mut found = leftovers(graph, store.recorded_nodes()?);
    let tables: Vec<String> = found.iter().filter_map(|l| l.table.clone()).collect();
    let probed: std::collections::HashMap<String, usize> = probe
        .list_all(tables)?
        .into_iter()
        .map(|(table, partitions)| (table, partitions.len()))
        .collect();
    for leftover in &mut found {
        if let Some(table) = &leftover.table {
            leftover.partitions = probed.get(table).copied().unwrap_or(0);
        }
    }
    Ok(found)
}

/// Where `remove_leftovers` works.
pub struct Places<'a> {
    pub settings: &'a Settings,
    pub repo_root: &'a std::path::Path,
    pub layouts: &'a Layouts,
    pub probe: &'a dyn Probe,
}

/// Removes what the leftovers left: each table (from the embedded
/// warehouse directly, from others through `warehouse.delete_command` per
/// partition, or kept with a note when there is none), the local KV
/// entries, then their state rows. Returns notes on what was kept.
pub fn remove_leftovers(
    places: &Places,
    store: &mut StateStore,
    leftovers: &[Leftover],
) -> Result<Vec<String>, Error> {
    let mut notes = Vec::new();
    for leftover in leftovers {
        if let Some(table) = &leftover.table {
            notes.extend(remove_table(places, &leftover.target, table)?);
        }
        remove_kv(places.settings, places.repo_root, leftover, &mut notes)?;
    }
    let keys: Vec<NodeKey> = leftovers.iter().map(|l| l.key.clone()).collect();
    store.forget_nodes(&keys)?;
    Ok(notes)
}

/// Removes one leftover table; a note when it is kept.
fn remove_table(places: &Places, target: &str, table: &str) -> Result<Option<String>, Error> {
    let settings = places.settings;
    if settings.warehouse.kind == WarehouseKind::Sqlite {
        let warehouse = Warehouse::new(
            settings.resolve(places.repo_root, &settings.warehouse.root()),
            &settings.warehouse.partition_column,
        );
        warehouse.drop_table(&TableName::parse(table)?)?;
        return Ok(None);
    }
    if settings.warehouse.delete_command.is_empty() {
        return Ok(Some(format!(
            "kept table {table} of {target}: set warehouse.delete_command to remove its \
             partitions, or drop it yourself"
        )));
    }
    let partitions: Vec<_> = places.probe.list(table)?.keys().copied().collect();
    let orphan = Orphan {
        target: target.to_string(),
        table: table.to_string(),
        start: partitions
            .first()
            .copied()
            .unwrap_or(crate::partition::Day(0)),
        partitions,
    };
    delete_each(settings, places.repo_root, places.layouts, &orphan)?;
    Ok(None)
}

/// Removes a leftover's entries from the local KV store; with the zipline
/// executor they live in the online store, which chronon-build does not
/// write: a note says so.
fn remove_kv(
    settings: &Settings,
    repo_root: &std::path::Path,
    leftover: &Leftover,
    notes: &mut Vec<String>,
) -> Result<(), Error> {
    if leftover.kv.is_empty() {
        return Ok(());
    }
    if settings.executor.kind != ExecutorKind::Local {
        notes.push(format!(
            "kept what {} uploaded to the online store: chronon-build does not write it",
            leftover.target
        ));
        return Ok(());
    }
    let kv = settings.resolve(repo_root, &settings.executor.kv);
    for (dataset, key) in &leftover.kv {
        crate::engine::kv::remove(&kv, dataset, key.as_deref())
            .map_err(|e| Error::Io(e.to_string()))?;
    }
    Ok(())
}
