//! Writing partitions: every write replaces whole partitions and updates
//! their catalog entries in the same transaction; and the fingerprint of a
//! partition's rows (what it covers: the `warehouse` module's header).

use std::collections::BTreeSet;

use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OptionalExtension, params};

use super::catalog::{PartitionEntry, read_catalog};
use super::gc::drop_partition;
use super::types::{self, table_columns};
use super::{Rows, TableName, Warehouse, WarehouseError, quote, quote_list, sqlite_error};
use crate::hash::{Hash, Lanes};
use crate::partition::Day;

impl Warehouse {
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

enum WriteError {
    Sqlite(rusqlite::Error),
    Input(String),
}

impl From<rusqlite::Error> for WriteError {
    fn from(e: rusqlite::Error) -> Self {
        WriteError::Sqlite(e)
    }
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

/// Writes `rows` into `table` inside the caller's transaction: checks the
/// partition column, fits the table's columns to the rows, replaces the
/// partitions of `scope`, declares each column's type from every
/// partition's (`types`), and updates the catalog entries of the
/// partitions written (and the others' when the columns or their types
/// changed).
fn write_in(
    conn: &Connection,
    table: &str,
    partition_column: &str,
    rows: &Rows,
    scope: Scope<'_>,
) -> Result<Vec<PartitionEntry>, WriteError> {
    let part_index = partition_index(rows, partition_column)?;
    record_partition_column(conn, table, partition_column)?;
    let days = days_written(rows, part_index, partition_column, scope)?;
    let mut schema_changed = fit_columns(conn, table, partition_column, rows, scope)?;
    if matches!(scope, Scope::WholeTable) {
        drop_other_partitions(conn, table, partition_column, &days)?;
    }
    delete_days(conn, table, partition_column, &days)?;
    let (declared, retyped) = types::fit(conn, table, partition_column, rows, &days)?;
    schema_changed |= retyped;
    insert_rows(conn, table, rows, &declared)?;
    let now = crate::clock::unix_now();
    if schema_changed {
        refingerprint_others(conn, table, partition_column, &days)?;
    }
    Ok(record_written(conn, table, partition_column, &days, now)?)
}

/// Where the partition column is among the rows' columns.
fn partition_index(rows: &Rows, partition_column: &str) -> Result<usize, WriteError> {
    rows.columns
        .iter()
        .position(|c| c == partition_column)
        .ok_or_else(|| {
            WriteError::Input(format!(
                "no partition column {partition_column:?} among the columns {:?}",
                rows.columns
            ))
        })
}

/// Records the table's partition column in `_tables`, refusing another
/// than the one it was first written with.
fn record_partition_column(
    conn: &Connection,
    table: &str,
    partition_column: &str,
) -> Result<(), WriteError> {
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
    Ok(())
}

/// The partitions the write replaces: the scope's days, and the days the
/// rows fall on, each a `yyyy-MM-dd` date (within the scope's days, when it
/// names them).
fn days_written(
    rows: &Rows,
    part_index: usize,
    partition_column: &str,
    scope: Scope<'_>,
) -> Result<BTreeSet<String>, WriteError> {
    let only = match scope {
        Scope::Days(days) => Some(days),
        Scope::InRows | Scope::WholeTable => None,
    };
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
    Ok(days)
}

/// Creates the table for the rows, or adds the columns it lacks (and, but
/// for an import, drops those the rows no longer have). Returns whether an
/// existing table's columns changed.
fn fit_columns(
    conn: &Connection,
    table: &str,
    partition_column: &str,
    rows: &Rows,
    scope: Scope<'_>,
) -> rusqlite::Result<bool> {
    let existing = table_columns(conn, table)?;
    if existing.is_empty() {
        create_table(conn, table, partition_column, rows)?;
        return Ok(false);
    }
    let mut schema_changed = add_columns(conn, table, rows, &existing)?;
    // A step's output is exactly its current columns: one it no longer
    // writes goes from the table (every partition of a changed step
    // restates). An import replaces only the partitions it has, so it
    // keeps the others' columns.
    if !matches!(scope, Scope::InRows) {
        schema_changed |= drop_columns(conn, table, partition_column, rows, &existing)?;
    }
    Ok(schema_changed)
}

/// A new table with the rows' columns (the partition column as text) and an
/// index on the partition column.
fn create_table(
    conn: &Connection,
    table: &str,
    partition_column: &str,
    rows: &Rows,
) -> rusqlite::Result<()> {
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
    ))
}

/// Adds the rows' columns the table lacks; whether it added any.
fn add_columns(
    conn: &Connection,
    table: &str,
    rows: &Rows,
    existing: &[(String, String)],
) -> rusqlite::Result<bool> {
    let mut added = false;
    for (column, kind) in rows.columns.iter().zip(&rows.types) {
        if !existing.iter().any(|(c, _)| c == column) {
            conn.execute_batch(&format!(
                "ALTER TABLE {} ADD COLUMN {} {kind}",
                quote(table),
                quote(column)
            ))?;
            added = true;
        }
    }
    Ok(added)
}

/// Drops the table's columns the rows do not have (never the partition
/// column); whether it dropped any.
fn drop_columns(
    conn: &Connection,
    table: &str,
    partition_column: &str,
    rows: &Rows,
    existing: &[(String, String)],
) -> rusqlite::Result<bool> {
    let mut dropped = false;
    for (column, _) in existing {
        if column != partition_column && !rows.columns.contains(column) {
            conn.execute_batch(&format!(
                "ALTER TABLE {} DROP COLUMN {}",
                quote(table),
                quote(column)
            ))?;
            dropped = true;
        }
    }
    Ok(dropped)
}

/// Deletes the rows of `days`.
fn delete_days(
    conn: &Connection,
    table: &str,
    partition_column: &str,
    days: &BTreeSet<String>,
) -> rusqlite::Result<()> {
    let delete = format!(
        "DELETE FROM {} WHERE {} = ?1",
        quote(table),
        quote(partition_column)
    );
    for day in days {
        conn.execute(&delete, [day])?;
    }
    Ok(())
}

/// Inserts the rows given, each value as its column's `declared` type
/// stores it (`types::store`).
fn insert_rows(
    conn: &Connection,
    table: &str,
    rows: &Rows,
    declared: &[(String, String)],
) -> rusqlite::Result<()> {
    let kinds: Vec<&str> = rows
        .columns
        .iter()
        .map(|c| {
            declared
                .iter()
                .find(|(d, _)| d == c)
                .map_or("", |(_, t)| t.as_str())
        })
        .collect();
    let placeholders: Vec<String> = (1..=rows.columns.len()).map(|i| format!("?{i}")).collect();
    let insert = format!(
        "INSERT INTO {} ({}) VALUES ({})",
        quote(table),
        quote_list(&rows.columns),
        placeholders.join(", ")
    );
    let mut stmt = conn.prepare(&insert)?;
    for row in &rows.rows {
        let values = row.iter().zip(&kinds).map(|(v, t)| types::store(v, t));
        stmt.execute(rusqlite::params_from_iter(values))?;
    }
    Ok(())
}

/// Removes every partition in the catalog but `days` (rows and entries).
fn drop_other_partitions(
    conn: &Connection,
    table: &str,
    partition_column: &str,
    days: &BTreeSet<String>,
) -> rusqlite::Result<()> {
    let stale: Vec<String> = read_catalog(conn, Some(table))?
        .into_iter()
        .map(|e| e.partition)
        .filter(|p| !days.contains(p))
        .collect();
    for day in &stale {
        drop_partition(conn, table, partition_column, day)?;
    }
    Ok(())
}

/// The other partitions' rows now read differently (a column more or
/// less): their catalog fingerprints follow.
fn refingerprint_others(
    conn: &Connection,
    table: &str,
    partition_column: &str,
    days: &BTreeSet<String>,
) -> rusqlite::Result<()> {
    for entry in read_catalog(conn, Some(table))? {
        if days.contains(&entry.partition) {
            continue;
        }
        let (count, fingerprint) = fingerprint(conn, table, partition_column, &entry.partition)?;
        conn.execute(
            "UPDATE _partitions SET row_count = ?3, fingerprint = ?4 WHERE tbl = ?1 AND partition = ?2",
            params![table, entry.partition, count as i64, fingerprint.hex()],
        )?;
    }
    Ok(())
}

/// Fingerprints the partitions written and records them in the catalog.
fn record_written(
    conn: &Connection,
    table: &str,
    partition_column: &str,
    days: &BTreeSet<String>,
    now: i64,
) -> rusqlite::Result<Vec<PartitionEntry>> {
    let mut written = Vec::new();
    for day in days {
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
