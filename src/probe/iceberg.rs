//! The `iceberg` probe: an Iceberg table's days from its metadata
//! (`formats::iceberg`), its current metadata file named by a catalog
//! (`warehouse.catalog_uri`) or found by path (`ROOT/<ns>.db/<table>/
//! metadata/`).
//!
//! The SQL catalog is the JDBC catalog's `iceberg_tables` table, which
//! pyiceberg's `SqlCatalog` shares (apache/iceberg `core/src/main/java/org/
//! apache/iceberg/jdbc/JdbcUtil.java`: `catalog_name`, `table_namespace`,
//! `table_name`, `metadata_location`): read whole once per listing, one
//! query for every table. The REST catalog (`rest`) is asked per table,
//! several tables at once.

mod rest;

use std::collections::HashMap;
use std::path::PathBuf;

pub use rest::RestCatalog;

use super::table_format::{Located, TableReader};
use super::{Partitions, TableLayout};
use crate::formats::FormatError;
use crate::formats::iceberg::{self, IcebergTable};
use crate::formats::storage::Storage;

pub enum Catalog {
    /// Tables found by path.
    None,
    /// A SQL catalog in a SQLite file, and the catalog name.
    Sqlite(PathBuf, String),
    /// A REST catalog.
    Rest(RestCatalog),
}

pub struct IcebergReader {
    pub catalog: Catalog,
}

/// Where a listing finds each table's current metadata file.
pub enum Pointers {
    /// By path, no catalog.
    ByPath,
    /// Per (namespace, table), read whole from a SQL catalog.
    Read(HashMap<(String, String), String>),
    /// Asked per table.
    Rest(rest::Session),
}

impl TableReader for IcebergReader {
    type Catalog = Pointers;

    fn kind(&self) -> &'static str {
        "iceberg"
    }

    fn namespace_folders(&self) -> bool {
        true
    }

    fn catalog(&self) -> Result<Pointers, FormatError> {
        match &self.catalog {
            Catalog::None => Ok(Pointers::ByPath),
            Catalog::Sqlite(path, name) => sqlite_pointers(path, name).map(Pointers::Read),
            Catalog::Rest(catalog) => catalog.connect().map(Pointers::Rest),
        }
    }

    fn locate(
        &self,
        pointers: &Pointers,
        table: &str,
        default: String,
    ) -> Result<Option<Located>, FormatError> {
        let (namespace, name) = table.rsplit_once('.').unwrap_or(("default", table));
        let metadata = match pointers {
            Pointers::ByPath => {
                return Ok(Some(Located {
                    key: default.clone(),
                    target: default,
                }));
            }
            Pointers::Read(read) => read
                .get(&(namespace.to_string(), name.to_string()))
                .cloned(),
            Pointers::Rest(session) => session.metadata_location(namespace, name)?,
        };
        Ok(metadata.map(|metadata| Located {
            key: format!("catalog:{table}"),
            target: metadata,
        }))
    }

    fn read(
        &self,
        storage: &dyn Storage,
        located: &Located,
        layout: &TableLayout,
        memory: Option<&str>,
    ) -> Result<(Partitions, String), FormatError> {
        let table = match self.catalog {
            Catalog::None => IcebergTable::Location(&located.target),
            _ => IcebergTable::MetadataFile(&located.target),
        };
        let memory: Option<iceberg::TableMemory> =
            memory.and_then(|m| serde_json::from_str(m).ok());
        let (partitions, next) = iceberg::read(storage, table, layout, memory.as_ref())?;
        Ok((partitions, serde_json::to_string(&next).unwrap_or_default()))
    }
}

/// Every table's metadata file in a SQLite catalog, under `name`.
fn sqlite_pointers(
    path: &std::path::Path,
    name: &str,
) -> Result<HashMap<(String, String), String>, FormatError> {
    let fail = |message: String| FormatError::Catalog {
        catalog: path.display().to_string(),
        message,
    };
    if !path.is_file() {
        return Err(fail("no catalog file there".into()));
    }
    let conn = crate::sqlite::open_read_only(path)
        .map_err(|e| fail(format!("cannot open the catalog: {e}")))?;
    let mut stmt = conn
        .prepare(
            "SELECT table_namespace, table_name, metadata_location FROM iceberg_tables
             WHERE catalog_name = ?1 AND metadata_location IS NOT NULL",
        )
        .map_err(|e| fail(format!("not an Iceberg SQL catalog: {e}")))?;
    let rows = stmt
        .query_map([name], |row| {
            Ok(((row.get(0)?, row.get(1)?), row.get::<_, String>(2)?))
        })
        .and_then(|rows| rows.collect::<Result<HashMap<_, _>, _>>())
        .map_err(|e| fail(e.to_string()))?;
    Ok(rows)
}
