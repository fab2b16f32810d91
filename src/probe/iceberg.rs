//! The `iceberg` probe: an Iceberg table's days from its metadata
//! (`formats::iceberg`), its current metadata file named by a catalog
//! (`warehouse.catalog_uri`) or found by path (`ROOT/<ns>.db/<table>/
//! metadata/`).
//!
//! The SQL catalog is the JDBC catalog's `iceberg_tables` table, which
//! pyiceberg's `SqlCatalog` shares (apache/iceberg `core/src/main/java/org/
//! apache/iceberg/jdbc/JdbcUtil.java`: `catalog_name`, `table_namespace`,
//! `table_name`, `metadata_location`), in a SQLite file or a PostgreSQL
//! database: read whole once per listing, one query for every table. The REST catalog (`rest`) is asked per table,
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
use crate::store::PgLocation;

pub enum Catalog {
    /// Tables found by path.
    None,
    /// A SQL catalog in a SQLite file, and the catalog name.
    Sqlite(PathBuf, String),
    /// A SQL catalog in a PostgreSQL database, and the catalog name.
    Postgres(PgLocation, String),
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
    type Memory = iceberg::TableMemory;

    fn kind(&self) -> &'static str {
        "iceberg"
    }

    fn namespace_folders(&self) -> bool {
        true
    }

    fn catalog(&self) -> Result<Pointers, FormatError> {
        match &self.catalog {
            Catalog::None => Ok(Pointers::ByPath),
            Catalog::Sqlite(path, name) => {
                iceberg::sql_catalog_pointers(path, name).map(Pointers::Read)
            }
            Catalog::Postgres(location, name) => {
                iceberg::pg_catalog_pointers(location, name).map(Pointers::Read)
            }
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
        memory: Option<&iceberg::TableMemory>,
    ) -> Result<(Partitions, iceberg::TableMemory), FormatError> {
        let table = match self.catalog {
            Catalog::None => IcebergTable::Location(&located.target),
            _ => IcebergTable::MetadataFile(&located.target),
        };
        iceberg::read(storage, table, layout, memory)
    }
}
