//! Checking the warehouse: SQLite's integrity check of each namespace
//! file, and every partition's fingerprint recomputed from its rows.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{Connection, params};

use super::catalog::{PartitionEntry, read_catalog};
use super::write::fingerprint;
use super::{TableName, Warehouse, WarehouseError, quote, sqlite_error, table_exists};

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
            self.verify_namespace(namespace, only, &mut found)?;
        }
        Ok(found)
    }

    /// Verifies one namespace file, in one transaction.
    fn verify_namespace(
        &self,
        namespace: String,
        only: &[TableName],
        found: &mut Vec<Mismatch>,
    ) -> Result<(), WarehouseError> {
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
            verify_table(&tx, &namespace, &table, &partition_column, found).map_err(err)?;
        }
        tx.commit().map_err(err)
    }
}

/// Recomputes the fingerprint of each partition of `table`, those in the
/// catalog and those in the rows, and corrects the catalog entries that
/// differ, adding them to `found`.
fn verify_table(
    conn: &Connection,
    namespace: &str,
    table: &str,
    partition_column: &str,
    found: &mut Vec<Mismatch>,
) -> rusqlite::Result<()> {
    let catalog: BTreeMap<String, PartitionEntry> = read_catalog(conn, Some(table))?
        .into_iter()
        .map(|e| (e.partition.clone(), e))
        .collect();
    let mut partitions: BTreeSet<String> = catalog.keys().cloned().collect();
    if table_exists(conn, table)? {
        let mut stmt = conn.prepare(&format!(
            "SELECT DISTINCT {} FROM {}",
            quote(partition_column),
            quote(table)
        ))?;
        let present: Vec<Option<String>> = stmt
            .query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect())?;
        partitions.extend(present.into_iter().flatten());
    }
    for partition in partitions {
        let entry = catalog.get(&partition);
        let (rows, fingerprint) = fingerprint(conn, table, partition_column, &partition)?;
        let fingerprint = fingerprint.hex();
        if entry.is_some_and(|e| e.fingerprint == fingerprint && e.rows == rows) {
            continue;
        }
        conn.execute(
            "INSERT OR REPLACE INTO _partitions (tbl, partition, row_count, fingerprint, written_at)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
            params![table, partition, rows as i64, fingerprint, crate::clock::unix_now()],
        )?;
        found.push(Mismatch {
            table: format!("{namespace}.{table}"),
            partition,
            catalog_rows: entry.map(|e| e.rows),
            catalog_fingerprint: entry.map(|e| e.fingerprint.clone()),
            rows,
            fingerprint,
        });
    }
    Ok(())
}
