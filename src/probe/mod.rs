//! Warehouse probes: list a table's partitions with fingerprints, in one
//! call per table (never one per partition).
//!
//! - `hive-dir`: `ROOT/<ns>.db/<table>/<col>=YYYY-MM-DD/...`. A sub-partitioned
//!   reference such as `ns.t/hr=00:00` finds a day present when
//!   `<col>=D/hr=00:00` exists; the fingerprint covers the whole day, since
//!   the job reads it all.
//! - `command`: a user program given the table that prints
//!   `partition<TAB>fingerprint` lines (GCS, BigQuery, a Hive metastore).
//!
//! - `sqlite` (the default): the embedded warehouse's partition catalog,
//!   one query per table. A sub-partition reference finds its day present
//!   when the day is: the warehouse keeps whole days.
//!
//! Each table is listed by its own partition column and format (`Layouts`,
//! from `exec::partitioning`): what the Driver writes and reads, from the
//! job environment's `PARTITION_COLUMN`/`PARTITION_FORMAT` and the reading
//! query's `partitionColumn`/`partitionFormat`.
//!
//! Files: the `Probe` trait, its errors, layouts and `from_settings` here;
//! one file per probe kind: `sqlite.rs` (`SqliteProbe`), `hive_dir.rs`
//! (`HiveDir`, its fingerprint modes and rustix-based listing) and
//! `command.rs` (`CommandProbe`); `seeded.rs` (`Seeded`: changed seed
//! files read in place, for `plan` and `run -n`).

use std::path::Path;

use crate::partition::Day;
use crate::settings::{Settings, WarehouseKind};
pub use crate::table::{Layouts, Partitions, TableLayout};

mod command;
mod delta;
mod hive_dir;
mod iceberg;
mod memory;
mod progress;
mod seeded;
mod sqlite;
mod table_format;

pub use command::CommandProbe;
pub use hive_dir::{HiveDir, fingerprint_dir};
pub use seeded::Seeded;
pub use sqlite::SqliteProbe;

/// A table that could not be listed; each names the table and what was
/// read or run.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{table}: cannot list {path}: {message}")]
    Listing {
        table: String,
        path: String,
        message: String,
    },
    #[error("{table}: command {argv:?} failed: {message}")]
    Command {
        table: String,
        argv: Vec<String>,
        message: String,
    },
    #[error("{table}: command {argv:?} printed a bad line {line}: {message}")]
    BadLine {
        table: String,
        argv: Vec<String>,
        line: usize,
        message: String,
    },
    /// An Iceberg or Delta table whose metadata could not be read.
    #[error("{0}")]
    Format(#[from] crate::formats::FormatError),
    /// Settings the probe cannot work with.
    #[error("{0}")]
    Settings(String),
}

pub trait Probe: Sync {
    /// Lists `table` (as in configs: `ns.t`, `t`, or `ns.t/hr=00:00`). A table
    /// that does not exist has no partitions; that is not an error.
    fn list(&self, table: &str) -> Result<Partitions, ProbeError>;

    /// The given days of `table` that exist, with fingerprints: what a job
    /// just wrote. Probes that can look at one partition override this.
    fn list_days(&self, table: &str, days: &[Day]) -> Result<Partitions, ProbeError> {
        Ok(only_days(self.list(table)?, days))
    }

    /// Whether `table` has any partition: what a hint needs, without the
    /// fingerprints. Probes that can tell more cheaply than by listing
    /// override this.
    fn has_partitions(&self, table: &str) -> Result<bool, ProbeError> {
        Ok(!self.list(table)?.is_empty())
    }

    /// A version of each of `tables` that any change of its listing
    /// changes: what lets a plan leave the tables nothing changed unlisted
    /// (`plan::unchanged`). Tables left out have none the probe can tell;
    /// probes that keep no versions leave out every table.
    fn versions(&self, tables: &[String]) -> Result<Versions, ProbeError> {
        let _ = tables;
        Ok(Versions::new())
    }

    /// Lists many tables, in parallel. Probes that can share work between
    /// tables (one connection for a namespace) override this.
    fn list_all(&self, tables: Vec<String>) -> Result<Vec<(String, Partitions)>, ProbeError> {
        use rayon::prelude::*;
        tables
            .into_par_iter()
            .map(|t| self.list(&t).map(|p| (t, p)))
            .collect()
    }
}

/// Tables' versions (`Probe::versions`), by table as asked for.
pub type Versions = std::collections::HashMap<String, crate::hash::Hash>;

/// The partitions of `all` at `days`.
fn only_days(mut all: Partitions, days: &[Day]) -> Partitions {
    let wanted: std::collections::BTreeSet<&Day> = days.iter().collect();
    all.retain(|d, _| wanted.contains(d));
    all
}

pub fn from_settings(
    settings: &Settings,
    repo_root: &Path,
    layouts: Layouts,
) -> Result<Box<dyn Probe>, ProbeError> {
    let warehouse = &settings.warehouse;
    Ok(match warehouse.kind {
        WarehouseKind::Sqlite => Box::new(SqliteProbe {
            warehouse: crate::warehouse::Warehouse::new(
                settings.resolve(repo_root, &warehouse.root()),
                &warehouse.partition_column,
            ),
        }),
        WarehouseKind::HiveDir => Box::new(HiveDir {
            root: settings.resolve(repo_root, &warehouse.root()),
            layouts,
            mode: warehouse.fingerprint,
        }),
        WarehouseKind::Command => Box::new(CommandProbe {
            argv: warehouse.command.clone(),
            layouts,
            timeout: warehouse.command_timeout,
            batch: warehouse.batch,
        }),
        WarehouseKind::Iceberg => {
            let catalog = iceberg_catalog(settings, repo_root)?;
            Box::new(table_format_probe(
                settings,
                repo_root,
                layouts,
                iceberg::IcebergReader { catalog },
            ))
        }
        WarehouseKind::Delta => Box::new(table_format_probe(
            settings,
            repo_root,
            layouts,
            delta::DeltaReader,
        )),
    })
}

fn table_format_probe<R: table_format::TableReader>(
    settings: &Settings,
    repo_root: &Path,
    layouts: Layouts,
    reader: R,
) -> table_format::TableFormatProbe<R> {
    let warehouse = &settings.warehouse;
    // Absolute, so what a read remembers is found again whichever folder
    // the command runs from (`--repo repo` or `--repo /abs/repo`).
    let location = |path: &Path| {
        let resolved = settings.resolve(repo_root, path);
        let text = resolved.to_string_lossy();
        if crate::settings::is_url(&text) {
            return text.into_owned();
        }
        std::path::absolute(&resolved)
            .unwrap_or(resolved)
            .to_string_lossy()
            .into_owned()
    };
    table_format::TableFormatProbe {
        reader,
        storage: Box::new(crate::formats::remote::Storages::default()),
        root: location(&warehouse.root()),
        tables: warehouse
            .tables
            .iter()
            .map(|(table, at)| (table.clone(), location(Path::new(at))))
            .collect(),
        layouts,
        memories: memory::Memories::new(settings.state_dir(repo_root).join("tables.sqlite")),
    }
}

/// The Iceberg catalog of `warehouse.catalog_uri`.
fn iceberg_catalog(settings: &Settings, repo_root: &Path) -> Result<iceberg::Catalog, ProbeError> {
    let warehouse = &settings.warehouse;
    let Some(uri) = &warehouse.catalog_uri else {
        return Ok(iceberg::Catalog::None);
    };
    if uri.starts_with("http://") || uri.starts_with("https://") {
        let name = &warehouse.catalog_name;
        return Ok(iceberg::Catalog::Rest(iceberg::RestCatalog {
            uri: uri.trim_end_matches('/').to_string(),
            // `default` is the setting's default: a catalog that needs no
            // warehouse is sent none.
            warehouse: (name != "default").then(|| name.clone()),
        }));
    }
    if uri.starts_with("postgresql://") || uri.starts_with("postgres://") {
        let location = crate::store::PgLocation::parse(uri).map_err(|e| {
            ProbeError::Settings(format!(
                "warehouse.catalog_uri: {}: {e}",
                crate::settings::redact_url(uri)
            ))
        })?;
        return Ok(iceberg::Catalog::Postgres(
            location,
            warehouse.catalog_name.clone(),
        ));
    }
    match uri.strip_prefix("sqlite:///") {
        Some(path) => {
            // `sqlite:///abs` is `/abs`; `sqlite:///rel` is relative to the repository.
            let path = Path::new(path);
            let path = if uri.starts_with("sqlite:////") {
                path.to_path_buf()
            } else {
                settings.resolve(repo_root, path)
            };
            Ok(iceberg::Catalog::Sqlite(
                path,
                warehouse.catalog_name.clone(),
            ))
        }
        None => Err(ProbeError::Settings(format!(
            "warehouse.catalog_uri: {}: expected sqlite:///PATH, postgresql://... or http(s)://...",
            crate::settings::redact_url(uri)
        ))),
    }
}
