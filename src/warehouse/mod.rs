//! The embedded warehouse: a folder with one SQLite file per namespace
//! (`ROOT/<ns>.sqlite`). A connection attaches each file under its
//! namespace's name, so `ns.table` resolves as in Hive. Tables carry their
//! partition column (`ds` by default).
//!
//! Each namespace file keeps a partition catalog, `_partitions`: per table
//! and partition, the row count, a fingerprint of the rows, and when it was
//! written. Every write goes through `write_partitions`, which replaces the
//! partitions it writes and updates the catalog in the same transaction, so
//! the `sqlite` probe reads fingerprints that always match the data.
//! Triggers in the file give a table a new random version whenever a row of
//! its partitions changes, whoever writes (`_table_versions`): a warm plan
//! compares versions instead of listing partitions (`plan::unchanged`).
//!
//! A partition's fingerprint is a sum, in four 64-bit lanes, of one hash per
//! row, and the row count. A row hashes its non-null values with their column
//! names, sorted by name. So the fingerprint does not depend on row order,
//! column order, or columns added later (null in old rows), and it changes
//! when a row is added, removed or changed.
//!
//! Files: the warehouse, its namespace files, connections and partition
//! reads, table names, rows and errors here; `catalog.rs` the
//! `_partitions`/`_tables`/`_table_versions` catalog and reading it; `write.rs` writing
//! partitions and the fingerprint; `types.rs` each column's declared type,
//! the same whatever order the partitions were written in; `import.rs` reading CSV and JSON-lines
//! files, value conversions and `[warehouse.seed]`; `verify.rs` checking
//! files and catalogs against the rows; `gc.rs` removing partitions.

use std::path::{Path, PathBuf};

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};

use crate::config::TableRef;
use crate::partition::Day;

mod catalog;
mod gc;
mod import;
mod types;
mod verify;
mod write;

pub use catalog::{Catalog, PartitionEntry, Versions};
pub use import::{from_json, json, read_file, seed, seed_preview, text};

/// What can go wrong in the embedded warehouse; each names the file,
/// table or setting it is about.
#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error("{text:?}: expected a table name like ns.table (letters, digits and _)")]
    TableName { text: String },
    #[error("{table}: no such table in {root}")]
    NoTable { table: String, root: String },
    #[error("{namespace}: no such namespace in {root}")]
    NoNamespace { namespace: String, root: String },
    #[error("{path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    /// A file or folder the warehouse could not use: `doing` says how.
    #[error("{path}: {doing}: {source}")]
    Io {
        path: String,
        doing: &'static str,
        source: std::io::Error,
    },
    #[error(
        "{path}: the file is damaged ({check}); restore it from a copy, or delete it \
         and rebuild what wrote it (`chronon-build invalidate` its steps, then run)"
    )]
    Damaged { path: String, check: String },
    /// Rows that do not fit the table: columns, partition values.
    #[error("{table}: {message}")]
    Rows { table: String, message: String },
    /// A file to import that is not rows: `at` is the path, or path:line.
    #[error("{at}: {message}")]
    File { at: String, message: String },
    /// An error importing a file.
    #[error("{path}: {source}")]
    Import {
        path: String,
        source: Box<WarehouseError>,
    },
    /// An error in a `warehouse.seed` entry.
    #[error("warehouse.seed.{table}: {source}")]
    Seed {
        table: String,
        source: Box<WarehouseError>,
    },
}

fn sqlite_error(path: &Path, e: rusqlite::Error) -> WarehouseError {
    WarehouseError::Sqlite {
        path: path.display().to_string(),
        source: e,
    }
}

fn io_error(path: &Path, doing: &'static str) -> impl FnOnce(std::io::Error) -> WarehouseError {
    let path = path.display().to_string();
    move |source| WarehouseError::Io {
        path,
        doing,
        source,
    }
}

/// A table name as configs write it: `ns.t`, `t` (in `default`), or with a
/// sub-partition, `ns.t/hr=00:00` (the warehouse keeps whole days).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TableName {
    pub namespace: String,
    pub table: String,
}

impl TableName {
    pub fn parse(text: &str) -> Result<TableName, WarehouseError> {
        let base = TableRef::split(text).0;
        let (namespace, table) = base.split_once('.').unwrap_or(("default", base));
        let valid =
            |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid(namespace) || !valid(table) {
            return Err(WarehouseError::TableName {
                text: text.to_string(),
            });
        }
        Ok(TableName {
            namespace: namespace.to_string(),
            table: table.to_string(),
        })
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.namespace, self.table)
    }
}

/// Quotes an identifier for SQL: namespaces such as `default` are keywords.
pub fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// Names quoted and separated by commas, for column lists.
pub fn quote_list(identifiers: &[String]) -> String {
    identifiers
        .iter()
        .map(|c| quote(c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rows to write: column names, then one value per column per row.
pub struct Rows {
    pub columns: Vec<String>,
    /// Declared SQLite types of the columns (`INTEGER`, `REAL`, `TEXT`).
    pub types: Vec<&'static str>,
    pub rows: Vec<Vec<Value>>,
}

pub struct Warehouse {
    pub root: PathBuf,
    pub partition_column: String,
}

impl Warehouse {
    pub fn new(root: PathBuf, partition_column: &str) -> Warehouse {
        Warehouse {
            root,
            partition_column: partition_column.to_string(),
        }
    }

    pub fn namespace_file(&self, namespace: &str) -> PathBuf {
        self.root.join(format!("{namespace}.sqlite"))
    }

    /// The namespaces present, sorted.
    pub fn namespaces(&self) -> Result<Vec<String>, WarehouseError> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(&self.root, "cannot list")(e)),
        };
        let mut out: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".sqlite"))
                    .map(str::to_string)
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Opens a namespace file for reading; `None` when it does not exist.
    fn open_read(&self, namespace: &str) -> Result<Option<Connection>, WarehouseError> {
        let path = self.namespace_file(namespace);
        if !path.exists() {
            return Ok(None);
        }
        let conn = crate::sqlite::open_read_only(&path).map_err(|e| sqlite_error(&path, e))?;
        Ok(Some(conn))
    }

    /// Opens (creating) a namespace file for writing.
    pub fn open_write(&self, namespace: &str) -> Result<Connection, WarehouseError> {
        std::fs::create_dir_all(&self.root).map_err(io_error(&self.root, "cannot create"))?;
        let path = self.namespace_file(namespace);
        let conn = crate::sqlite::open_write(&path).map_err(|e| sqlite_error(&path, e))?;
        // WAL lets jobs read a namespace while another writes it. The mode
        // is kept in the file, so it is set once, by one process: jobs that
        // start together on a new namespace would otherwise race to switch
        // it ("database is locked", "disk I/O error"), so the switch and
        // the catalog's creation hold an exclusive lock on a file beside it.
        let wal =
            |conn: &Connection| crate::sqlite::is_wal(conn).map_err(|e| sqlite_error(&path, e));
        let _held = if wal(&conn)? {
            None
        } else {
            let held = InitLock::take(&path)?;
            crate::sqlite::use_wal(&conn).map_err(|e| sqlite_error(&path, e))?;
            Some(held)
        };
        conn.execute_batch(catalog::CATALOG_SCHEMA)
            .and_then(|_| conn.execute_batch(types::SCHEMA))
            .map_err(|e| sqlite_error(&path, e))?;
        Ok(conn)
    }

    /// A connection with every namespace attached under its name, for
    /// queries across namespaces (`SELECT ... FROM raw.purchases`).
    pub fn attach_all(&self) -> Result<Connection, WarehouseError> {
        let conn = crate::sqlite::open_in_memory().map_err(|e| sqlite_error(&self.root, e))?;
        for namespace in self.namespaces()? {
            let path = self.namespace_file(&namespace);
            conn.execute(
                &format!("ATTACH DATABASE ?1 AS {}", quote(&namespace)),
                [path.to_string_lossy()],
            )
            .map_err(|e| sqlite_error(&path, e))?;
        }
        Ok(conn)
    }

    /// The columns and rows of one partition, at most `limit` rows.
    pub fn read(
        &self,
        table: &TableName,
        day: Day,
        limit: Option<usize>,
    ) -> Result<(Vec<String>, Vec<Vec<Value>>), WarehouseError> {
        let path = self.namespace_file(&table.namespace);
        let missing = || WarehouseError::NoTable {
            table: table.to_string(),
            root: self.root.display().to_string(),
        };
        let conn = self.open_read(&table.namespace)?.ok_or_else(missing)?;
        if !table_exists(&conn, &table.table).map_err(|e| sqlite_error(&path, e))? {
            return Err(missing());
        }
        let partition_column = self
            .partition_column_of(&conn, &table.table)
            .map_err(|e| sqlite_error(&path, e))?;
        let sql = format!(
            "SELECT * FROM {} WHERE {} = ?1 LIMIT ?2",
            quote(&table.table),
            quote(&partition_column)
        );
        let mut stmt = conn.prepare(&sql).map_err(|e| sqlite_error(&path, e))?;
        let columns: Vec<String> = stmt.column_names().map(str::to_string).collect();
        let limit = limit.map_or(-1, |l| l as i64);
        let rows = stmt
            .query_map(params![day.to_string(), limit], |row| {
                (0..columns.len()).map(|i| row.get::<_, Value>(i)).collect()
            })
            .map_err(|e| sqlite_error(&path, e))?
            .collect::<Result<Vec<Vec<Value>>, _>>()
            .map_err(|e| sqlite_error(&path, e))?;
        Ok((columns, rows))
    }

    /// The partition column a table was written with.
    fn partition_column_of(&self, conn: &Connection, table: &str) -> rusqlite::Result<String> {
        if !table_exists(conn, "_tables")? {
            return Ok(self.partition_column.clone());
        }
        Ok(conn
            .query_row(
                "SELECT partition_column FROM _tables WHERE tbl = ?1",
                [table],
                |row| row.get(0),
            )
            .optional()?
            .unwrap_or_else(|| self.partition_column.clone()))
    }
}

/// An exclusive `flock` on `<namespace>.sqlite.init`, held while a new
/// namespace file is set up; released when dropped (or when the process
/// ends, however it ends).
struct InitLock {
    _file: std::fs::File,
}

impl InitLock {
    fn take(namespace_file: &Path) -> Result<InitLock, WarehouseError> {
        use std::os::fd::AsRawFd;
        let path = PathBuf::from(format!("{}.init", namespace_file.display()));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_error(&path, "cannot open"))?;
        // SAFETY: flock on a descriptor this File owns, for its lifetime.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io_error(&path, "cannot lock")(
                std::io::Error::last_os_error(),
            ));
        }
        Ok(InitLock { _file: file })
    }
}

fn table_exists(conn: &Connection, table: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [table],
        |_| Ok(()),
    )
    .optional()
    .map(|found| found.is_some())
}
