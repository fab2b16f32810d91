//! Column types, decided so that a table is a function of the rows written
//! to it, not of the order they came in: each write records, per
//! partition, the type its rows declare for each column (`_column_types`;
//! an import infers it from the whole file), and a column is declared with
//! the join of its partitions' types (INTEGER and REAL make REAL, TEXT with
//! either makes TEXT; an untyped column stays untyped). When that changes
//! (a source's user ids gain `'guest'`, or its prices become whole numbers
//! and the REAL partitions are replaced), the table is rebuilt with the new
//! declarations, every other partition's values first restored to what
//! their own write gave, then stored as a fresh import of the same files
//! stores them; their fingerprints follow, so their readers rerun.
//!
//! Values stored in a TEXT column are converted here, not by SQLite, whose
//! text of a REAL keeps 15 digits: a REAL that went through a TEXT column
//! comes back exactly.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::types::Value;
use rusqlite::{Connection, params};

use super::{Rows, quote};

/// Created beside the catalog: per table, partition and column, the type
/// the partition's write declared.
pub(super) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS _column_types (
    tbl TEXT NOT NULL,
    partition TEXT NOT NULL,
    col TEXT NOT NULL,
    type TEXT NOT NULL,
    PRIMARY KEY (tbl, partition, col)
) WITHOUT ROWID;";

/// The type of a column holding values of types `a` and `b`.
pub fn join<'t>(a: &'t str, b: &'t str) -> &'t str {
    match (a, b) {
        _ if a == b => a,
        ("", _) | (_, "") => "",
        ("INTEGER" | "REAL", "INTEGER" | "REAL") => "REAL",
        _ => "TEXT",
    }
}

/// A value as a column of `declared` type stores it. TEXT columns get
/// numbers' exact text; the other conversions are SQLite's affinity, the
/// same whichever path a value comes by.
pub fn store(value: &Value, declared: &str) -> Value {
    match (declared, value) {
        ("TEXT", Value::Integer(i)) => Value::Text(i.to_string()),
        ("TEXT", Value::Real(r)) => Value::Text(format!("{r:?}")),
        _ => value.clone(),
    }
}

/// A stored value as the write that recorded `written` gave it, whatever
/// column type it was stored under since (a wider type never loses it).
fn restore(value: Value, written: &str) -> Value {
    match (written, value) {
        ("INTEGER", Value::Real(r)) if r.fract() == 0.0 && r.abs() < 9.0e15 => {
            Value::Integer(r as i64)
        }
        ("INTEGER", Value::Text(t)) => match t.parse::<i64>() {
            Ok(i) => Value::Integer(i),
            Err(_) => Value::Text(t),
        },
        ("REAL", Value::Integer(i)) => Value::Real(i as f64),
        ("REAL", Value::Text(t)) => match t.parse::<f64>() {
            Ok(r) => Value::Real(r),
            Err(_) => Value::Text(t),
        },
        (_, value) => value,
    }
}

/// The table's columns, in order, with their declared types.
pub(super) fn table_columns(
    conn: &Connection,
    table: &str,
) -> rusqlite::Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare(&format!("PRAGMA table_info({})", quote(table)))?;
    stmt.query_map([], |row| {
        Ok((row.get::<_, String>(1)?, row.get::<_, String>(2)?))
    })?
    .collect()
}

/// Records the types of the partitions `days` (their rows already
/// deleted), and re-declares the columns whose join changed, rebuilding the
/// table. Returns the declared types, in the table's column order, and
/// whether any changed.
pub(super) fn fit(
    conn: &Connection,
    table: &str,
    partition_column: &str,
    rows: &Rows,
    days: &BTreeSet<String>,
) -> rusqlite::Result<(Vec<(String, String)>, bool)> {
    record(conn, table, partition_column, rows, days)?;
    let existing = table_columns(conn, table)?;
    let legacy = has_unrecorded_partitions(conn, table)?;
    let mut recorded: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut stmt = conn.prepare_cached(
        "SELECT col, type FROM _column_types WHERE tbl = ?1 GROUP BY col, type ORDER BY col, type",
    )?;
    let mut found = stmt.query([table])?;
    while let Some(row) = found.next()? {
        recorded.entry(row.get(0)?).or_default().push(row.get(1)?);
    }
    let mut wanted = existing.clone();
    for (column, declared) in &mut wanted {
        if column == partition_column {
            continue;
        }
        // Partitions written before types were recorded keep the column's
        // declared type.
        let mut types = recorded
            .get(column.as_str())
            .into_iter()
            .flatten()
            .map(String::as_str);
        let first = if legacy {
            Some(declared.as_str())
        } else {
            types.next()
        };
        if let Some(first) = first {
            *declared = types.fold(first, join).to_string();
        }
    }
    let changed = wanted != existing;
    if changed {
        rebuild(conn, table, partition_column, &existing, &wanted)?;
    }
    Ok((wanted, changed))
}

/// Replaces the records of `days` with the rows' declared types.
fn record(
    conn: &Connection,
    table: &str,
    partition_column: &str,
    rows: &Rows,
    days: &BTreeSet<String>,
) -> rusqlite::Result<()> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO _column_types (tbl, partition, col, type) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for day in days {
        forget(conn, table, day)?;
        for (column, kind) in rows.columns.iter().zip(&rows.types) {
            if column != partition_column {
                insert.execute(params![table, day, column, kind])?;
            }
        }
    }
    Ok(())
}

/// Forgets the recorded types of one partition (removed or rewritten).
pub(super) fn forget(conn: &Connection, table: &str, day: &str) -> rusqlite::Result<()> {
    conn.execute(
        "DELETE FROM _column_types WHERE tbl = ?1 AND partition = ?2",
        [table, day],
    )?;
    Ok(())
}

/// Whether some partition in the catalog has no recorded types.
fn has_unrecorded_partitions(conn: &Connection, table: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM _partitions p WHERE p.tbl = ?1 AND NOT EXISTS (
             SELECT 1 FROM _column_types c WHERE c.tbl = p.tbl AND c.partition = p.partition))",
        [table],
        |r| r.get(0),
    )
}

/// Copies the table into one with the `wanted` declarations, each value
/// restored to its partition's recorded type first, and puts it in place
/// (with its index on the partition column).
fn rebuild(
    conn: &Connection,
    table: &str,
    partition_column: &str,
    existing: &[(String, String)],
    wanted: &[(String, String)],
) -> rusqlite::Result<()> {
    let temp = format!("{table}__retype");
    let declarations: Vec<String> = wanted
        .iter()
        .map(|(c, t)| format!("{} {t}", quote(c)))
        .collect();
    conn.execute_batch(&format!(
        "DROP TABLE IF EXISTS {t}; CREATE TABLE {t} ({});",
        declarations.join(", "),
        t = quote(&temp)
    ))?;
    let names: Vec<String> = existing.iter().map(|(c, _)| c.clone()).collect();
    let at = names.iter().position(|c| c == partition_column);
    let mut types = conn.prepare_cached(
        "SELECT type FROM _column_types WHERE tbl = ?1 AND partition = ?2 AND col = ?3",
    )?;
    let mut read = conn.prepare(&format!(
        "SELECT {} FROM {} ORDER BY rowid",
        super::quote_list(&names),
        quote(table)
    ))?;
    let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
    let mut insert = conn.prepare(&format!(
        "INSERT INTO {} VALUES ({})",
        quote(&temp),
        placeholders.join(", ")
    ))?;
    let mut rows = read.query([])?;
    while let Some(row) = rows.next()? {
        let day: Option<String> = at.map(|i| row.get(i)).transpose()?;
        let mut values = Vec::with_capacity(names.len());
        for (i, ((column, old), (_, new))) in existing.iter().zip(wanted).enumerate() {
            let value: Value = row.get(i)?;
            if old == new {
                values.push(value);
                continue;
            }
            let written: String = match &day {
                Some(day) => types
                    .query_row([table, day.as_str(), column.as_str()], |r| r.get(0))
                    .unwrap_or_else(|_| old.clone()),
                None => old.clone(),
            };
            values.push(store(&restore(value, &written), new));
        }
        insert.execute(rusqlite::params_from_iter(values.iter()))?;
    }
    conn.execute_batch(&format!(
        "DROP TABLE {t}; ALTER TABLE {temp} RENAME TO {t}; CREATE INDEX {index} ON {t} ({p});",
        t = quote(table),
        temp = quote(&temp),
        index = quote(&format!("{table}__{partition_column}")),
        p = quote(partition_column)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_column_is_declared_with_the_join_of_its_partitions_types() {
        assert_eq!(join("INTEGER", "INTEGER"), "INTEGER");
        assert_eq!(join("INTEGER", "REAL"), "REAL");
        assert_eq!(join("REAL", "TEXT"), "TEXT");
        assert_eq!(join("TEXT", "INTEGER"), "TEXT");
        assert_eq!(join("", "INTEGER"), "");
    }

    #[test]
    fn a_value_stored_under_a_wider_type_is_restored_exactly() {
        for (value, written) in [
            (Value::Integer(42), "INTEGER"),
            (Value::Real(0.1 + 0.2), "REAL"),
            (Value::Real(5.0), "REAL"),
            (Value::Text("guest".into()), "TEXT"),
        ] {
            for wider in ["INTEGER", "REAL", "TEXT"] {
                if join(written, wider) != wider {
                    continue;
                }
                // As SQLite's affinity would leave it, after `store`.
                let stored = match (wider, store(&value, wider)) {
                    ("REAL", Value::Integer(i)) => Value::Real(i as f64),
                    (_, v) => v,
                };
                assert_eq!(restore(stored, written), value, "{value:?} under {wider}");
            }
        }
    }
}
