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
//!
//! A partition's fingerprint is a sum, in four 64-bit lanes, of one hash per
//! row, and the row count. A row hashes its non-null values with their column
//! names, sorted by name. So the fingerprint does not depend on row order,
//! column order, or columns added later (null in old rows), and it changes
//! when a row is added, removed or changed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OptionalExtension, params};

use crate::config::TableRef;
use crate::hash::{Hash, Lanes};
use crate::partition::Day;

/// The catalog table in every namespace file.
pub const CATALOG: &str = "_partitions";

const CATALOG_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS _partitions (
    tbl TEXT NOT NULL,
    partition TEXT NOT NULL,
    row_count INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    written_at INTEGER NOT NULL,
    PRIMARY KEY (tbl, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _tables (
    tbl TEXT PRIMARY KEY,
    partition_column TEXT NOT NULL
) WITHOUT ROWID;";

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

/// Why reading catalogs stopped: the warehouse, or the caller's `each`.
#[derive(Debug)]
pub enum Catalog<E> {
    Read(WarehouseError),
    Entry(E),
}

/// One partition in the catalog.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PartitionEntry {
    pub table: String,
    pub partition: String,
    pub rows: u64,
    pub fingerprint: String,
    pub written_at: i64,
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
        conn.execute_batch(CATALOG_SCHEMA)
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

    /// The catalog entries of a table, by partition; empty when the table or
    /// its namespace does not exist.
    pub fn partitions(&self, table: &TableName) -> Result<Vec<PartitionEntry>, WarehouseError> {
        let Some(conn) = self.open_read(&table.namespace)? else {
            return Ok(Vec::new());
        };
        let path = self.namespace_file(&table.namespace);
        read_catalog(&conn, Some(&table.table)).map_err(|e| sqlite_error(&path, e))
    }

    /// The catalog entries of tables of one namespace, through one
    /// connection: `each(index into tables, partition, fingerprint)`. A
    /// namespace or table that does not exist has no entries.
    pub fn read_catalogs<E>(
        &self,
        namespace: &str,
        tables: &[&str],
        mut each: impl FnMut(usize, &str, &str) -> Result<(), E>,
    ) -> Result<(), Catalog<E>> {
        let Some(conn) = self.open_read(namespace).map_err(Catalog::Read)? else {
            return Ok(());
        };
        let path = self.namespace_file(namespace);
        let err = |e| Catalog::Read(sqlite_error(&path, e));
        if !table_exists(&conn, CATALOG).map_err(err)? {
            return Ok(());
        }
        let mut stmt = conn
            .prepare(
                "SELECT partition, fingerprint FROM _partitions WHERE tbl = ?1 ORDER BY partition",
            )
            .map_err(err)?;
        for (i, table) in tables.iter().enumerate() {
            let mut rows = stmt.query([table]).map_err(err)?;
            while let Some(row) = rows.next().map_err(err)? {
                let text = |c: usize| -> Result<&str, Catalog<E>> {
                    row.get_ref(c)
                        .and_then(|v| Ok(v.as_str()?))
                        .map_err(|e| Catalog::Read(sqlite_error(&path, e)))
                };
                each(i, text(0)?, text(1)?).map_err(Catalog::Entry)?;
            }
        }
        Ok(())
    }

    /// Every table's catalog entries, by namespace, table and partition.
    pub fn all_partitions(&self) -> Result<Vec<(String, Vec<PartitionEntry>)>, WarehouseError> {
        let mut out = Vec::new();
        for namespace in self.namespaces()? {
            let Some(conn) = self.open_read(&namespace)? else {
                continue;
            };
            let path = self.namespace_file(&namespace);
            out.push((
                namespace,
                read_catalog(&conn, None).map_err(|e| sqlite_error(&path, e))?,
            ));
        }
        Ok(out)
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

    /// Replaces the partitions present in `rows` (and only those) and
    /// updates the catalog, in one transaction. Returns the catalog entries
    /// written. `partition_column` overrides the warehouse's for this table.
    pub fn write_partitions(
        &self,
        table: &TableName,
        rows: &Rows,
        partition_column: Option<&str>,
    ) -> Result<Vec<PartitionEntry>, WarehouseError> {
        self.write(table, rows, partition_column, Scope::InRows)
    }

    /// Makes the table exactly the rows given: their partitions replaced,
    /// and every other partition removed (rows and catalog entry), as a
    /// clean import of the same file would leave it. How seeds import.
    /// Returns the partitions written.
    pub fn replace_table(
        &self,
        table: &TableName,
        rows: &Rows,
    ) -> Result<Vec<PartitionEntry>, WarehouseError> {
        self.write(table, rows, None, Scope::WholeTable)
    }

    /// Replaces exactly the partitions `days`, with the rows given (which
    /// must fall on those days): a day with no rows becomes an empty
    /// partition in the catalog. This is how the engine writes a range.
    /// `partition_column` overrides the warehouse's (a label table's
    /// `label_ds`).
    pub fn replace_days(
        &self,
        table: &TableName,
        rows: &Rows,
        partition_column: Option<&str>,
        days: &[Day],
    ) -> Result<Vec<PartitionEntry>, WarehouseError> {
        self.write(table, rows, partition_column, Scope::Days(days))
    }

    fn write(
        &self,
        table: &TableName,
        rows: &Rows,
        partition_column: Option<&str>,
        days: Scope<'_>,
    ) -> Result<Vec<PartitionEntry>, WarehouseError> {
        let partition_column = partition_column.unwrap_or(&self.partition_column);
        let path = self.namespace_file(&table.namespace);
        let existed = path.exists();
        let result = self.write_new(table, rows, partition_column, days);
        if result.is_err() && !existed {
            // Refused input leaves no trace, not even an empty namespace.
            for suffix in ["", "-wal", "-shm", ".init"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
        }
        result
    }

    fn write_new(
        &self,
        table: &TableName,
        rows: &Rows,
        partition_column: &str,
        days: Scope<'_>,
    ) -> Result<Vec<PartitionEntry>, WarehouseError> {
        let path = self.namespace_file(&table.namespace);
        let mut conn = self.open_write(&table.namespace)?;
        let err = |e| sqlite_error(&path, e);
        // Immediate: take the write lock first, so a concurrent writer makes
        // this one wait rather than fail on upgrading a read.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let written =
            write_in(&tx, &table.table, partition_column, rows, days).map_err(|e| match e {
                WriteError::Sqlite(e) => sqlite_error(&path, e),
                WriteError::Input(message) => WarehouseError::Rows {
                    table: table.to_string(),
                    message,
                },
            })?;
        tx.commit().map_err(err)?;
        Ok(written)
    }
}

impl Warehouse {
    /// Removes partitions (their rows and catalog entries) in one
    /// transaction; a table or day that does not exist is no error.
    pub fn remove_partitions(&self, table: &TableName, days: &[Day]) -> Result<(), WarehouseError> {
        let path = self.namespace_file(&table.namespace);
        if !path.exists() {
            return Ok(());
        }
        let err = |e| sqlite_error(&path, e);
        let mut conn = self.open_write(&table.namespace)?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        if table_exists(&tx, &table.table).map_err(err)? {
            let column = self.partition_column_of(&tx, &table.table).map_err(err)?;
            for day in days {
                drop_partition(&tx, &table.table, &column, &day.to_string()).map_err(err)?;
            }
        }
        tx.commit().map_err(err)
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

/// A partition whose rows no longer match its catalog entry, as
/// `Warehouse::verify` found and corrected it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Mismatch {
    pub table: String,
    pub partition: String,
    /// The catalog's, or `None` for rows the catalog did not list.
    pub catalog_rows: Option<u64>,
    pub catalog_fingerprint: Option<String>,
    pub rows: u64,
    pub fingerprint: String,
}

impl Warehouse {
    /// Checks every namespace file (SQLite's integrity check) and
    /// recomputes every partition's fingerprint from its rows, for `only`
    /// tables or all; corrects the catalog where rows changed behind it
    /// (edited, deleted or added by hand) and returns those partitions.
    /// A damaged file is an error naming it.
    pub fn verify(&self, only: &[TableName]) -> Result<Vec<Mismatch>, WarehouseError> {
        let mut found = Vec::new();
        let namespaces: Vec<String> = if only.is_empty() {
            self.namespaces()?
        } else {
            let mut ns: Vec<String> = only.iter().map(|t| t.namespace.clone()).collect();
            ns.sort();
            ns.dedup();
            ns
        };
        for namespace in namespaces {
            let path = self.namespace_file(&namespace);
            if !path.exists() {
                return Err(WarehouseError::NoNamespace {
                    namespace,
                    root: self.root.display().to_string(),
                });
            }
            let mut conn = self.open_write(&namespace)?;
            let err = |e| sqlite_error(&path, e);
            let check: String = conn
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .map_err(err)?;
            if check != "ok" {
                return Err(WarehouseError::Damaged {
                    path: path.display().to_string(),
                    check,
                });
            }
            let tx = conn.transaction().map_err(err)?;
            let tables: Vec<(String, String)> = {
                let mut stmt = tx
                    .prepare("SELECT tbl, partition_column FROM _tables ORDER BY tbl")
                    .map_err(err)?;
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .and_then(|rows| rows.collect())
                    .map_err(err)?
            };
            for (table, partition_column) in tables {
                if !only.is_empty()
                    && !only
                        .iter()
                        .any(|t| t.namespace == namespace && t.table == table)
                {
                    continue;
                }
                let catalog: BTreeMap<String, PartitionEntry> = read_catalog(&tx, Some(&table))
                    .map_err(err)?
                    .into_iter()
                    .map(|e| (e.partition.clone(), e))
                    .collect();
                let mut partitions: BTreeSet<String> = catalog.keys().cloned().collect();
                if table_exists(&tx, &table).map_err(err)? {
                    let mut stmt = tx
                        .prepare(&format!(
                            "SELECT DISTINCT {} FROM {}",
                            quote(&partition_column),
                            quote(&table)
                        ))
                        .map_err(err)?;
                    let present: Vec<Option<String>> = stmt
                        .query_map([], |r| r.get(0))
                        .and_then(|rows| rows.collect())
                        .map_err(err)?;
                    partitions.extend(present.into_iter().flatten());
                }
                for partition in partitions {
                    let entry = catalog.get(&partition);
                    let (rows, fingerprint) =
                        fingerprint(&tx, &table, &partition_column, &partition).map_err(err)?;
                    let fingerprint = fingerprint.hex();
                    if entry.is_some_and(|e| e.fingerprint == fingerprint && e.rows == rows) {
                        continue;
                    }
                    tx.execute(
                        "INSERT OR REPLACE INTO _partitions (tbl, partition, row_count, fingerprint, written_at)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![table, partition, rows as i64, fingerprint, crate::clock::unix_now()],
                    )
                    .map_err(err)?;
                    found.push(Mismatch {
                        table: format!("{namespace}.{table}"),
                        partition,
                        catalog_rows: entry.map(|e| e.rows),
                        catalog_fingerprint: entry.map(|e| e.fingerprint.clone()),
                        rows,
                        fingerprint,
                    });
                }
            }
            tx.commit().map_err(err)?;
        }
        Ok(found)
    }
}

/// Deletes one partition's rows and its catalog entry.
fn drop_partition(
    conn: &Connection,
    table: &str,
    partition_column: &str,
    day: &str,
) -> rusqlite::Result<()> {
    conn.execute(
        &format!(
            "DELETE FROM {} WHERE {} = ?1",
            quote(table),
            quote(partition_column)
        ),
        [day],
    )?;
    conn.execute(
        "DELETE FROM _partitions WHERE tbl = ?1 AND partition = ?2",
        [table, day],
    )?;
    Ok(())
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

fn read_catalog(conn: &Connection, table: Option<&str>) -> rusqlite::Result<Vec<PartitionEntry>> {
    if !table_exists(conn, CATALOG)? {
        return Ok(Vec::new());
    }
    // Two statements: `?1 IS NULL OR tbl = ?1` cannot use the primary key,
    // and would scan every table's partitions to list one.
    let columns = "SELECT tbl, partition, row_count, fingerprint, written_at FROM _partitions";
    let mut stmt = match table {
        Some(_) => conn.prepare_cached(&format!("{columns} WHERE tbl = ?1 ORDER BY partition"))?,
        None => conn.prepare_cached(&format!("{columns} ORDER BY tbl, partition"))?,
    };
    let params: &[&dyn rusqlite::ToSql] = match &table {
        Some(table) => &[table],
        None => &[],
    };
    stmt.query_map(params, |row| {
        Ok(PartitionEntry {
            table: row.get(0)?,
            partition: row.get(1)?,
            rows: row.get::<_, i64>(2)? as u64,
            fingerprint: row.get(3)?,
            written_at: row.get(4)?,
        })
    })?
    .collect()
}

enum WriteError {
    Sqlite(rusqlite::Error),
    Input(String),
}

impl From<rusqlite::Error> for WriteError {
    fn from(e: rusqlite::Error) -> Self {
        WriteError::Sqlite(e)
    }
}

/// The columns a table has, in order, with their declared types.
fn table_columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare(&format!("PRAGMA table_info({})", quote(table)))?;
    stmt.query_map([], |row| {
        Ok((row.get::<_, String>(1)?, row.get::<_, String>(2)?))
    })?
    .collect()
}

/// Which partitions a write replaces.
#[derive(Clone, Copy)]
enum Scope<'d> {
    /// Those the rows fall on.
    InRows,
    /// Exactly these days (a day without rows becomes an empty partition).
    Days(&'d [Day]),
    /// The whole table: those the rows fall on, and every other one goes.
    WholeTable,
}

fn write_in(
    conn: &Connection,
    table: &str,
    partition_column: &str,
    rows: &Rows,
    scope: Scope<'_>,
) -> Result<Vec<PartitionEntry>, WriteError> {
    let only = match scope {
        Scope::Days(days) => Some(days),
        Scope::InRows | Scope::WholeTable => None,
    };
    let Some(part_index) = rows.columns.iter().position(|c| c == partition_column) else {
        return Err(WriteError::Input(format!(
            "no partition column {partition_column:?} among the columns {:?}",
            rows.columns
        )));
    };
    let recorded: Option<String> = conn
        .query_row(
            "SELECT partition_column FROM _tables WHERE tbl = ?1",
            [table],
            |row| row.get(0),
        )
        .optional()?;
    if let Some(recorded) = recorded.filter(|r| r != partition_column) {
        return Err(WriteError::Input(format!(
            "the table is partitioned by {recorded:?}, not {partition_column:?}"
        )));
    }
    conn.execute(
        "INSERT OR IGNORE INTO _tables (tbl, partition_column) VALUES (?1, ?2)",
        [table, partition_column],
    )?;
    let mut days: BTreeSet<String> = only
        .unwrap_or_default()
        .iter()
        .map(Day::to_string)
        .collect();
    for (i, row) in rows.rows.iter().enumerate() {
        let day = match &row[part_index] {
            Value::Text(text) => Day::parse(text).map(|_| text.clone()),
            _ => None,
        };
        match day {
            Some(day) if only.is_some() && !days.contains(&day) => {
                return Err(WriteError::Input(format!(
                    "row {}: {partition_column} {day} is outside the partitions written",
                    i + 1
                )));
            }
            Some(day) => {
                days.insert(day);
            }
            None => {
                return Err(WriteError::Input(format!(
                    "row {}: {partition_column}: expected a yyyy-MM-dd date, got {}",
                    i + 1,
                    describe(&row[part_index])
                )));
            }
        }
    }

    let existing = table_columns(conn, table)?;
    let mut schema_changed = false;
    if existing.is_empty() {
        let columns: Vec<String> = rows
            .columns
            .iter()
            .zip(&rows.types)
            .map(|(c, t)| {
                let t = if c == partition_column { "TEXT" } else { t };
                format!("{} {t}", quote(c))
            })
            .collect();
        conn.execute_batch(&format!(
            "CREATE TABLE {} ({});
             CREATE INDEX {} ON {} ({});",
            quote(table),
            columns.join(", "),
            quote(&format!("{table}__{partition_column}")),
            quote(table),
            quote(partition_column)
        ))?;
    } else {
        for (column, kind) in rows.columns.iter().zip(&rows.types) {
            if !existing.iter().any(|(c, _)| c == column) {
                conn.execute_batch(&format!(
                    "ALTER TABLE {} ADD COLUMN {} {kind}",
                    quote(table),
                    quote(column)
                ))?;
                schema_changed = true;
            }
        }
        // A step's output is exactly its current columns: one it no longer
        // writes goes from the table (every partition of a changed step
        // restates). An import replaces only the partitions it has, so it
        // keeps the others' columns.
        if !matches!(scope, Scope::InRows) {
            for (column, _) in &existing {
                if column != partition_column && !rows.columns.contains(column) {
                    conn.execute_batch(&format!(
                        "ALTER TABLE {} DROP COLUMN {}",
                        quote(table),
                        quote(column)
                    ))?;
                    schema_changed = true;
                }
            }
        }
    }

    let delete = format!(
        "DELETE FROM {} WHERE {} = ?1",
        quote(table),
        quote(partition_column)
    );
    for day in &days {
        conn.execute(&delete, [day])?;
    }
    let placeholders: Vec<String> = (1..=rows.columns.len()).map(|i| format!("?{i}")).collect();
    let insert = format!(
        "INSERT INTO {} ({}) VALUES ({})",
        quote(table),
        quote_list(&rows.columns),
        placeholders.join(", ")
    );
    let mut stmt = conn.prepare(&insert)?;
    for row in &rows.rows {
        stmt.execute(rusqlite::params_from_iter(row.iter()))?;
    }
    drop(stmt);

    if matches!(scope, Scope::WholeTable) {
        let stale: Vec<String> = read_catalog(conn, Some(table))?
            .into_iter()
            .map(|e| e.partition)
            .filter(|p| !days.contains(p))
            .collect();
        for day in &stale {
            drop_partition(conn, table, partition_column, day)?;
        }
    }

    let now = crate::clock::unix_now();
    if schema_changed {
        // The other partitions' rows now read differently (a column more
        // or less): their catalog fingerprints follow.
        for entry in read_catalog(conn, Some(table))? {
            if days.contains(&entry.partition) {
                continue;
            }
            let (count, fingerprint) =
                fingerprint(conn, table, partition_column, &entry.partition)?;
            conn.execute(
                "UPDATE _partitions SET row_count = ?3, fingerprint = ?4 WHERE tbl = ?1 AND partition = ?2",
                params![table, entry.partition, count as i64, fingerprint.hex()],
            )?;
        }
    }
    let mut written = Vec::new();
    for day in &days {
        let (count, fingerprint) = fingerprint(conn, table, partition_column, day)?;
        conn.execute(
            "INSERT OR REPLACE INTO _partitions (tbl, partition, row_count, fingerprint, written_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![table, day, count as i64, fingerprint.hex(), now],
        )?;
        written.push(PartitionEntry {
            table: table.to_string(),
            partition: day.clone(),
            rows: count,
            fingerprint: fingerprint.hex(),
            written_at: now,
        });
    }
    Ok(written)
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing".into(),
        Value::Integer(i) => i.to_string(),
        Value::Real(r) => r.to_string(),
        Value::Text(t) => format!("{t:?}"),
        Value::Blob(_) => "a blob".into(),
    }
}

/// The row count and fingerprint of one partition, as stored.
pub fn fingerprint(
    conn: &Connection,
    table: &str,
    partition_column: &str,
    day: &str,
) -> rusqlite::Result<(u64, Hash)> {
    let mut stmt = conn.prepare(&format!(
        "SELECT * FROM {} WHERE {} = ?1",
        quote(table),
        quote(partition_column)
    ))?;
    let mut order: Vec<(String, usize)> = stmt
        .column_names()
        .enumerate()
        .filter(|(_, c)| *c != partition_column)
        .map(|(i, c)| (c.to_string(), i))
        .collect();
    order.sort();
    // The schema counts: a column every row leaves NULL still changes the
    // fingerprint (rows skip NULLs, so this is where it shows).
    let mut schema = Vec::new();
    for (name, _) in &order {
        schema.extend_from_slice(&(name.len() as u32).to_le_bytes());
        schema.extend_from_slice(name.as_bytes());
    }
    let mut sum = Lanes::default();
    let mut count = 0u64;
    let mut rows = stmt.query([day])?;
    let mut buffer = Vec::new();
    while let Some(row) = rows.next()? {
        buffer.clear();
        for (name, i) in &order {
            let value = row.get_ref(*i)?;
            if value == ValueRef::Null {
                continue;
            }
            buffer.extend_from_slice(&(name.len() as u32).to_le_bytes());
            buffer.extend_from_slice(name.as_bytes());
            encode(value, &mut buffer);
        }
        sum = sum.plus(Lanes::of(&Hash::of(&buffer)));
        count += 1;
    }
    let rows = sum.digest(count as u32);
    let mut both = schema;
    both.extend_from_slice(&rows.0);
    Ok((count, Hash::of(&both)))
}

/// A value's bytes for hashing, tagged by type so `1` and `'1'` differ.
fn encode(value: ValueRef, out: &mut Vec<u8>) {
    match value {
        ValueRef::Null => out.push(0),
        ValueRef::Integer(i) => {
            out.push(1);
            out.extend_from_slice(&i.to_le_bytes());
        }
        ValueRef::Real(r) => {
            out.push(2);
            out.extend_from_slice(&r.to_bits().to_le_bytes());
        }
        ValueRef::Text(t) => {
            out.push(3);
            out.extend_from_slice(&(t.len() as u32).to_le_bytes());
            out.extend_from_slice(t);
        }
        ValueRef::Blob(b) => {
            out.push(4);
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(b);
        }
    }
}

// ---------------------------------------------------------------------------
// Reading files to import

/// Reads CSV (with a header row) or JSON lines, by the file's extension.
pub fn read_file(path: &Path) -> Result<Rows, WarehouseError> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    match extension.as_str() {
        "csv" => read_csv(path),
        "jsonl" | "ndjson" | "json" => read_json_lines(path),
        _ => Err(WarehouseError::File {
            at: path.display().to_string(),
            message: "expected a .csv file (with a header row) or a .jsonl file \
                      (one JSON object per line)"
                .into(),
        }),
    }
}

fn read_csv(path: &Path) -> Result<Rows, WarehouseError> {
    let fail = |message: String| WarehouseError::File {
        at: path.display().to_string(),
        message,
    };
    let mut reader = csv::Reader::from_path(path).map_err(|e| fail(e.to_string()))?;
    let columns: Vec<String> = reader
        .headers()
        .map_err(|e| fail(e.to_string()))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    check_columns(&columns).map_err(fail)?;
    let mut text_rows: Vec<Vec<String>> = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| fail(e.to_string()))?;
        text_rows.push(record.iter().map(str::to_string).collect());
    }
    // A column is INTEGER when every value is an integer, REAL when every
    // value is a number, TEXT otherwise; an empty field is null.
    let types: Vec<&'static str> = (0..columns.len())
        .map(|i| {
            let values = text_rows
                .iter()
                .map(|r| r[i].as_str())
                .filter(|v| !v.is_empty());
            if values.clone().all(|v| v.parse::<i64>().is_ok()) {
                "INTEGER"
            } else if values.clone().all(|v| v.parse::<f64>().is_ok()) {
                "REAL"
            } else {
                "TEXT"
            }
        })
        .collect();
    let rows = text_rows
        .into_iter()
        .map(|row| {
            row.into_iter()
                .zip(&types)
                .map(|(v, t)| match (*t, v.is_empty()) {
                    (_, true) => Value::Null,
                    ("INTEGER", false) => Value::Integer(v.parse().expect("checked above")),
                    ("REAL", false) => Value::Real(v.parse().expect("checked above")),
                    _ => Value::Text(v),
                })
                .collect()
        })
        .collect();
    Ok(Rows {
        columns,
        types,
        rows,
    })
}

fn read_json_lines(path: &Path) -> Result<Rows, WarehouseError> {
    let text = std::fs::read_to_string(path).map_err(io_error(path, "cannot read"))?;
    let mut objects = Vec::new();
    let mut columns: Vec<String> = Vec::new();
    let mut kinds: BTreeMap<String, &'static str> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fail = |message: String| WarehouseError::File {
            at: format!("{}:{}", path.display(), n + 1),
            message,
        };
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| fail(format!("malformed JSON: {e}")))?;
        let serde_json::Value::Object(object) = value else {
            return Err(fail("expected a JSON object".into()));
        };
        for (key, value) in &object {
            if !columns.contains(key) {
                columns.push(key.clone());
            }
            let kind = match value {
                serde_json::Value::Null => continue,
                serde_json::Value::Bool(_) => "INTEGER",
                serde_json::Value::Number(n) if n.is_i64() => "INTEGER",
                serde_json::Value::Number(_) => "REAL",
                _ => "TEXT",
            };
            let merged = match (kinds.get(key).copied(), kind) {
                (None, k) => k,
                (Some(a), b) if a == b => a,
                (Some("INTEGER" | "REAL"), "INTEGER" | "REAL") => "REAL",
                _ => "TEXT",
            };
            kinds.insert(key.clone(), merged);
        }
        objects.push(object);
    }
    check_columns(&columns).map_err(|message| WarehouseError::File {
        at: path.display().to_string(),
        message,
    })?;
    let types: Vec<&'static str> = columns
        .iter()
        .map(|c| kinds.get(c).copied().unwrap_or("TEXT"))
        .collect();
    let rows = objects
        .into_iter()
        .map(|object| {
            columns
                .iter()
                .zip(&types)
                .map(|(c, t)| match object.get(c) {
                    // A column with reals holds its integers as reals too.
                    Some(serde_json::Value::Number(n)) if *t == "REAL" => {
                        Value::Real(n.as_f64().unwrap_or_default())
                    }
                    value => value.map_or(Value::Null, from_json),
                })
                .collect()
        })
        .collect();
    Ok(Rows {
        columns,
        types,
        rows,
    })
}

fn check_columns(columns: &[String]) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for column in columns {
        if column.is_empty() {
            return Err("a column has no name: expected a header row of column names".into());
        }
        if !seen.insert(column.to_ascii_lowercase()) {
            return Err(format!("column {column:?} appears twice"));
        }
    }
    if columns.is_empty() {
        return Err("no columns".into());
    }
    Ok(())
}

/// A value as text, for display and CSV export.
pub fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::Integer(i) => i.to_string(),
        Value::Real(r) => r.to_string(),
        Value::Text(t) => t.clone(),
        Value::Blob(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
    }
}

/// A JSON value as SQL stores it: booleans as 0 and 1, integers and reals
/// as numbers, lists and objects as their JSON text.
pub fn from_json(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Integer(i64::from(*b)),
        serde_json::Value::Number(n) => n
            .as_i64()
            .map(Value::Integer)
            .unwrap_or_else(|| Value::Real(n.as_f64().unwrap_or_default())),
        serde_json::Value::String(s) => Value::Text(s.clone()),
        other => Value::Text(other.to_string()),
    }
}

/// A value as JSON.
pub fn json(value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Integer(i) => (*i).into(),
        Value::Real(r) => {
            serde_json::Number::from_f64(*r).map_or(serde_json::Value::Null, Into::into)
        }
        Value::Text(t) => t.clone().into(),
        Value::Blob(_) => text(value).into(),
    }
}

/// Imports the `[warehouse.seed]` files whose content changed since their
/// last import (or that were never imported). Returns the tables imported.
pub fn seed(
    settings: &crate::settings::Settings,
    repo_root: &Path,
) -> Result<Vec<String>, WarehouseError> {
    if settings.warehouse.seed.is_empty() {
        return Ok(Vec::new());
    }
    let warehouse = Warehouse::new(
        settings.resolve(repo_root, &settings.warehouse.root()),
        &settings.warehouse.partition_column,
    );
    let mut imported = Vec::new();
    for (table, file) in &settings.warehouse.seed {
        let in_seed = |e: WarehouseError| WarehouseError::Seed {
            table: table.clone(),
            source: Box::new(e),
        };
        let name = TableName::parse(table).map_err(in_seed)?;
        let path = settings.resolve(repo_root, file);
        let bytes = std::fs::read(&path)
            .map_err(io_error(&path, "cannot read"))
            .map_err(in_seed)?;
        let digest = blake3::hash(&bytes).to_hex().to_string();
        let recorded: Option<String> = match warehouse.open_read(&name.namespace)? {
            Some(conn) if table_exists(&conn, "_seeds").unwrap_or(false) => conn
                .query_row(
                    "SELECT digest FROM _seeds WHERE tbl = ?1",
                    [&name.table],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| sqlite_error(&path, e))?,
            _ => None,
        };
        if recorded.as_deref() == Some(digest.as_str()) {
            continue;
        }
        // The file is the whole truth of its table: a day it no longer has
        // is removed, as a clean import would leave it.
        let rows = read_file(&path)?;
        warehouse
            .replace_table(&name, &rows)
            .map_err(|e| WarehouseError::Import {
                path: path.display().to_string(),
                source: Box::new(e),
            })?;
        let conn = warehouse.open_write(&name.namespace)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS _seeds (tbl TEXT PRIMARY KEY, digest TEXT NOT NULL)",
        )
        .and_then(|_| {
            conn.execute(
                "INSERT OR REPLACE INTO _seeds (tbl, digest) VALUES (?1, ?2)",
                [&name.table, &digest],
            )
        })
        .map_err(|e| sqlite_error(&path, e))?;
        imported.push(name.to_string());
    }
    Ok(imported)
}
