//! Removing partitions, or whole tables: their rows and their catalog
//! entries together.

use rusqlite::Connection;

use super::{TableName, Warehouse, WarehouseError, quote, sqlite_error, table_exists};
use crate::partition::Day;

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

    /// Drops a table with its catalog entries, in one transaction; returns
    /// how many partitions it had. A table that does not exist is no error.
    pub fn drop_table(&self, table: &TableName) -> Result<usize, WarehouseError> {
        let path = self.namespace_file(&table.namespace);
        if !path.exists() {
            return Ok(0);
        }
        let err = |e| sqlite_error(&path, e);
        let mut conn = self.open_write(&table.namespace)?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let partitions = tx
            .execute("DELETE FROM _partitions WHERE tbl = ?1", [&table.table])
            .map_err(err)?;
        tx.execute("DELETE FROM _tables WHERE tbl = ?1", [&table.table])
            .map_err(err)?;
        tx.execute_batch(&format!("DROP TABLE IF EXISTS {}", quote(&table.table)))
            .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(partitions)
    }
}

/// Deletes one partition's rows and its catalog entry.
pub(super) fn drop_partition(
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
    super::types::forget(conn, table, day)
}
