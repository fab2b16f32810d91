//! Orphans: partitions of a table a node writes that lie before the node's
//! start (its start moved later). No build wants them and a clean build
//! would not have them, so they go: from the embedded warehouse directly
//! (`run` does this before it starts jobs), from others through
//! `warehouse.delete_command`, one call per partition (`gc`), like
//! `ninja -t cleandead`.

use crate::error::Error;
use crate::plan::Orphan;
use crate::probe::Layouts;
use crate::settings::{Settings, WarehouseKind};
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
        let filled: Vec<String> = argv
            .iter()
            .map(|a| {
                a.replace("{table}", &orphan.table)
                    .replace("{partition_column}", &layout.column)
                    .replace("{partition}", &value)
            })
            .collect();
        let status = std::process::Command::new(&filled[0])
            .args(&filled[1..])
            .current_dir(repo_root)
            .status()
            .map_err(|e| Error::Io(format!("{}: cannot start: {e}", filled[0])))?;
        if !status.success() {
            return Err(Error::Io(format!(
                "{}: {status} deleting {} {}={value}",
                crate::exec::display(&filled),
                orphan.table,
                layout.column
            )));
        }
    }
    Ok(())
}
