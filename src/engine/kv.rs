//! The local KV store: one SQLite file with `kv(dataset, key, value,
//! version)`. `upload-to-kv` replaces a group-by's dataset with its upload
//! table's rows in one transaction; `metadata-upload` stores configs;
//! `fetch` serves a join from it, as Chronon's fetcher serves from the
//! online store.

use std::path::Path;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value as Json};

use super::groupby::dataset;
use super::{Engine, EngineError, Result, select_rows, sql_table};
use crate::config::{Body, sanitize};
use crate::graph::Node;
use crate::partition::DayRange;
use crate::warehouse::{json, quote};

/// The key of a batch dataset's serving info.
pub const SERVING_INFO: &str = "group_by_serving_info";

/// Where configs go for `metadata-upload`.
pub const METADATA: &str = "CHRONON_METADATA";

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS kv (
    dataset TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    version TEXT NOT NULL,
    PRIMARY KEY (dataset, key)
) WITHOUT ROWID;";

/// The batch dataset of a group-by, by its name, as Chronon names it.
pub fn batch_dataset(config: &str) -> String {
    format!("{}_BATCH", sanitize(config).to_uppercase())
}

/// Removes a dataset, or one key of it, from the store at `path` (nothing
/// when the store does not exist); returns how many values went.
pub fn remove(path: &Path, dataset: &str, key: Option<&str>) -> Result<usize> {
    if !path.exists() {
        return Ok(0);
    }
    let conn = open(path)?;
    let removed = match key {
        Some(key) => conn.execute(
            "DELETE FROM kv WHERE dataset = ?1 AND key = ?2",
            params![dataset, key],
        ),
        None => conn.execute("DELETE FROM kv WHERE dataset = ?1", [dataset]),
    };
    removed.map_err(|e| EngineError::failed(format!("{}: {e}", path.display())))
}

pub fn open(path: &Path) -> Result<Connection> {
    let fail = |e: String| EngineError::failed(format!("{}: {e}", path.display()));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| fail(e.to_string()))?;
    }
    let conn = crate::sqlite::open_write(path).map_err(|e| fail(e.to_string()))?;
    conn.execute_batch(SCHEMA)
        .map_err(|e| fail(e.to_string()))?;
    Ok(conn)
}

/// A key as the store holds it: the key columns and values as a JSON
/// object, in the group-by's key order.
pub fn key_json(columns: &[String], values: &[Value]) -> String {
    let mut map = Map::new();
    for (c, v) in columns.iter().zip(values) {
        map.insert(c.clone(), json(v));
    }
    Json::Object(map).to_string()
}

pub fn replace_dataset(
    path: &Path,
    dataset: &str,
    entries: &[(String, String)],
    version: &str,
) -> Result<()> {
    let mut conn = open(path)?;
    let fail = |e: rusqlite::Error| EngineError::failed(format!("{}: {e}", path.display()));
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(fail)?;
    tx.execute("DELETE FROM kv WHERE dataset = ?1", [dataset])
        .map_err(fail)?;
    {
        let mut insert = tx
            .prepare("INSERT INTO kv (dataset, key, value, version) VALUES (?1, ?2, ?3, ?4)")
            .map_err(fail)?;
        for (key, value) in entries {
            insert
                .execute(params![dataset, key, value, version])
                .map_err(fail)?;
        }
    }
    tx.commit().map_err(fail)
}

/// Stores one entry, replacing the key's value.
pub fn put(path: &Path, dataset: &str, key: &str, value: &str, version: &str) -> Result<()> {
    let conn = open(path)?;
    conn.execute(
        "INSERT OR REPLACE INTO kv (dataset, key, value, version) VALUES (?1, ?2, ?3, ?4)",
        params![dataset, key, value, version],
    )
    .map_err(|e| EngineError::failed(format!("{}: {e}", path.display())))?;
    Ok(())
}

pub fn upload(engine: &Engine, node: &Node, range: DayRange) -> Result<String> {
    let Body::GroupBy(gb) = &engine.repo.configs[node.config].body else {
        return Err(EngineError::failed("not a group-by"));
    };
    let table = &node.inputs[0].table;
    let conn = engine.connect()?;
    let partition = &engine.warehouse.partition_column;
    let rows = select_rows(
        &conn,
        &format!(
            "SELECT * FROM {} WHERE {} = ?1",
            sql_table(table)?,
            quote(partition)
        ),
        &[&range.to.to_string()],
        "the upload table",
    )?;
    let position = |c: &String| rows.columns.iter().position(|x| x == c);
    let keys: Vec<usize> = gb.key_columns.iter().filter_map(position).collect();
    if keys.len() != gb.key_columns.len() {
        return Err(EngineError::failed(format!(
            "{table}: expected the key columns {:?}, found {:?}",
            gb.key_columns, rows.columns
        )));
    }
    let values: Vec<usize> = (0..rows.columns.len())
        .filter(|i| !keys.contains(i) && rows.columns[*i] != *partition)
        .collect();
    let entries: Vec<(String, String)> = rows
        .rows
        .iter()
        .map(|row| {
            let key_values: Vec<Value> = keys.iter().map(|&i| row[i].clone()).collect();
            let mut value = Map::new();
            for &i in &values {
                value.insert(rows.columns[i].clone(), json(&row[i]));
            }
            (
                key_json(&gb.key_columns, &key_values),
                Json::Object(value).to_string(),
            )
        })
        .collect();
    let mut entries = entries;
    // The serving info Chronon uploads beside the batch values, with the
    // batch end the fetcher reads (GroupByUpload.scala's `buildServingInfo`,
    // under `Constants.GroupByServingInfoKey`).
    let info = serde_json::json!({
        "groupBy": gb.meta.name,
        "batchEndDate": range.to.plus(1).to_string(),
        "batchEndTsMillis": super::groupby::batch_end(range.to),
    });
    entries.push((SERVING_INFO.to_string(), info.to_string()));
    let name = dataset(gb);
    replace_dataset(&engine.kv_path, &name, &entries, &range.to.to_string())?;
    Ok(format!(
        "{name}: {} keys at version {} in {}",
        entries.len() - 1,
        range.to,
        engine.kv_path.display()
    ))
}

pub fn metadata(engine: &Engine, node: &Node) -> Result<String> {
    let config = &engine.repo.configs[node.config];
    let mut conn = open(&engine.kv_path)?;
    let fail =
        |e: rusqlite::Error| EngineError::failed(format!("{}: {e}", engine.kv_path.display()));
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(fail)?;
    tx.execute(
        "INSERT OR REPLACE INTO kv (dataset, key, value, version) VALUES (?1, ?2, ?3, '')",
        params![METADATA, config.name, config.raw.to_string()],
    )
    .map_err(fail)?;
    tx.commit().map_err(fail)?;
    Ok(format!("{METADATA}: {}", config.name))
}

/// One stored value, with its version.
pub fn get(conn: &Connection, dataset: &str, key: &str) -> Result<Option<(Json, String)>> {
    let found: Option<(String, String)> = conn
        .query_row(
            "SELECT value, version FROM kv WHERE dataset = ?1 AND key = ?2",
            [dataset, key],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .map_err(|e| EngineError::failed(e.to_string()))?;
    found
        .map(|(value, version)| {
            serde_json::from_str(&value)
                .map(|v| (v, version))
                .map_err(|e| {
                    EngineError::failed(format!("{dataset}: a stored value is not JSON: {e}"))
                })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigKind, parse_value};

    /// `gc` names a removed group-by's datasets from its name alone: the
    /// same names the engine writes.
    #[test]
    fn datasets_by_name_are_the_ones_the_engine_writes() {
        let raw = serde_json::from_str(include_str!(
            "../../testdata/demo/production/group_bys/quickstart/purchases.v1"
        ))
        .unwrap();
        let mut problems = Vec::new();
        let config = parse_value(ConfigKind::GroupBy, raw, "purchases.v1", &mut problems).unwrap();
        let Body::GroupBy(gb) = &config.body else {
            panic!("a group-by")
        };
        assert_eq!(batch_dataset(&gb.meta.name), dataset(gb));
        assert_eq!(
            super::super::streaming::streaming_dataset_of(&gb.meta.name),
            super::super::streaming::streaming_dataset(gb)
        );
    }
}
