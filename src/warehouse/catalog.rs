//! The partition catalog every namespace file keeps: `_partitions` (per
//! table and partition, the row count, fingerprint and write time),
//! `_tables` (each table's partition column) and `_table_versions` (per
//! table, a version any change of its partitions replaces), and reading it.

use rusqlite::{Connection, OptionalExtension};

use super::{TableName, Warehouse, WarehouseError, sqlite_error, table_exists};

/// The catalog table in every namespace file.
pub const CATALOG: &str = "_partitions";

/// The catalog's tables, created when a namespace file is opened to write.
pub(super) const CATALOG_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS _partitions (
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
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _catalog_epoch (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    epoch BLOB NOT NULL
);
INSERT OR IGNORE INTO _catalog_epoch (id, epoch) VALUES (0, randomblob(16));
CREATE TABLE IF NOT EXISTS _table_versions (
    tbl TEXT PRIMARY KEY,
    version INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS _partitions_inserted AFTER INSERT ON _partitions BEGIN
    INSERT OR REPLACE INTO _table_versions (tbl, version) VALUES (NEW.tbl, random());
END;
CREATE TRIGGER IF NOT EXISTS _partitions_updated AFTER UPDATE ON _partitions BEGIN
    INSERT OR REPLACE INTO _table_versions (tbl, version) VALUES (OLD.tbl, random());
    INSERT OR REPLACE INTO _table_versions (tbl, version) VALUES (NEW.tbl, random());
END;
CREATE TRIGGER IF NOT EXISTS _partitions_deleted AFTER DELETE ON _partitions BEGIN
    INSERT OR REPLACE INTO _table_versions (tbl, version) VALUES (OLD.tbl, random());
END;";

/// What the catalog of one namespace file says of its tables' versions
/// (`Warehouse::table_versions`).
#[derive(Debug, PartialEq, Eq)]
pub enum Versions {
    /// The namespace has no file: none of its tables has a partition.
    NoFile,
    /// The file keeps no versions (written before they were kept, and not
    /// written since): they cannot be told.
    Unknown,
    /// The file's epoch (random, made when versions began to be kept) and
    /// each table's version, random at each change of its partitions. A
    /// table without one has not changed since the epoch began.
    Kept {
        epoch: Vec<u8>,
        tables: std::collections::HashMap<String, i64>,
    },
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

impl Warehouse {
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

    /// The versions of the tables of one namespace: whatever writes the
    /// file (this tool, an older one, `sqlite3`), triggers in the file
    /// replace a table's version with a random one whenever a row of its
    /// partitions is inserted, updated or deleted, so an equal version
    /// means equal partitions (with the same epoch: a file made again, or
    /// given versions later, has another). Random, not counted: a file
    /// restored from a copy never counts again to a version it had.
    pub fn table_versions(&self, namespace: &str) -> Result<Versions, WarehouseError> {
        let Some(conn) = self.open_read(namespace)? else {
            return Ok(Versions::NoFile);
        };
        let path = self.namespace_file(namespace);
        let err = |e| sqlite_error(&path, e);
        if !table_exists(&conn, "_catalog_epoch").map_err(err)?
            || !table_exists(&conn, "_table_versions").map_err(err)?
        {
            return Ok(Versions::Unknown);
        }
        // One read transaction: the epoch and the versions as of one moment.
        let tx = conn.unchecked_transaction().map_err(err)?;
        let epoch: Option<Vec<u8>> = tx
            .query_row("SELECT epoch FROM _catalog_epoch WHERE id = 0", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(err)?;
        let Some(epoch) = epoch else {
            return Ok(Versions::Unknown);
        };
        let mut stmt = tx
            .prepare("SELECT tbl, version FROM _table_versions")
            .map_err(err)?;
        let tables = stmt
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(err)?;
        Ok(Versions::Kept { epoch, tables })
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
}

pub(super) fn read_catalog(
    conn: &Connection,
    table: Option<&str>,
) -> rusqlite::Result<Vec<PartitionEntry>> {
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
