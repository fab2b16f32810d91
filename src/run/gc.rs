//! Orphans: partitions of a table a node writes that lie before the node's
//! start (its start moved later). No build wants them and a clean build
//! would not have them, so they go: from the embedded warehouse directly
//! (`run` does this before it starts jobs), from others through
//! `warehouse.delete_command`, one call per partition (`gc`), like
//! `ninja -t cleandead`.

use crate::error::Error;
use crate::exec::command::{self, CommandLine};
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
