//! Files to import (CSV with a header row, JSON lines) read into rows,
//! conversions of values to text and JSON, and `[warehouse.seed]`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rusqlite::OptionalExtension;
use rusqlite::types::Value;

use super::{Rows, TableName, Warehouse, WarehouseError, io_error, sqlite_error, table_exists};

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

/// A `[warehouse.seed]` file whose content differs from its last import
/// (or that was never imported).
struct ChangedSeed {
    name: TableName,
    path: std::path::PathBuf,
    digest: String,
}

/// The `[warehouse.seed]` files that changed since their last import.
fn changed_seeds(
    settings: &crate::settings::Settings,
    repo_root: &Path,
    warehouse: &Warehouse,
) -> Result<Vec<ChangedSeed>, WarehouseError> {
    let mut changed = Vec::new();
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
        if recorded.as_deref() != Some(digest.as_str()) {
            changed.push(ChangedSeed { name, path, digest });
        }
    }
    Ok(changed)
}

/// Replaces a seeded table with its file's rows: the file is the whole
/// truth of its table (a day it no longer has is removed, as a clean
/// import would leave it).
fn import_seed(warehouse: &Warehouse, seed: &ChangedSeed) -> Result<(), WarehouseError> {
    let rows = read_file(&seed.path)?;
    warehouse
        .replace_table(&seed.name, &rows)
        .map_err(|e| WarehouseError::Import {
            path: seed.path.display().to_string(),
            source: Box::new(e),
        })?;
    Ok(())
}

fn seed_warehouse(settings: &crate::settings::Settings, repo_root: &Path) -> Warehouse {
    Warehouse::new(
        settings.resolve(repo_root, &settings.warehouse.root()),
        &settings.warehouse.partition_column,
    )
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
    let warehouse = seed_warehouse(settings, repo_root);
    let mut imported = Vec::new();
    for seed in changed_seeds(settings, repo_root, &warehouse)? {
        import_seed(&warehouse, &seed)?;
        let conn = warehouse.open_write(&seed.name.namespace)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS _seeds (tbl TEXT PRIMARY KEY, digest TEXT NOT NULL)",
        )
        .and_then(|_| {
            conn.execute(
                "INSERT OR REPLACE INTO _seeds (tbl, digest) VALUES (?1, ?2)",
                [&seed.name.table, &seed.digest],
            )
        })
        .map_err(|e| sqlite_error(&seed.path, e))?;
        imported.push(seed.name.to_string());
    }
    Ok(imported)
}

/// The seed files that changed, imported into a scratch warehouse in a
/// temporary folder instead of the real one: what `plan` and `run -n` read
/// those tables from, so they see what `run` will import without writing
/// anything. A table imported whole into an empty warehouse gets the same
/// partitions and fingerprints as one imported over an old table (the file
/// is the whole truth of its table; types come from the file alone).
pub struct SeedPreview {
    /// The scratch warehouse; removed when the preview is dropped.
    pub folder: tempfile::TempDir,
    pub warehouse: Warehouse,
    /// The tables it holds, as `namespace.table`.
    pub tables: Vec<String>,
}

/// `None` when every seed file is imported as it is now.
pub fn seed_preview(
    settings: &crate::settings::Settings,
    repo_root: &Path,
) -> Result<Option<SeedPreview>, WarehouseError> {
    if settings.warehouse.seed.is_empty() {
        return Ok(None);
    }
    let changed = changed_seeds(settings, repo_root, &seed_warehouse(settings, repo_root))?;
    if changed.is_empty() {
        return Ok(None);
    }
    let folder = tempfile::Builder::new()
        .prefix("chronon-build-seeds-")
        .tempdir()
        .map_err(io_error(&std::env::temp_dir(), "cannot create a folder in"))?;
    let warehouse = Warehouse::new(
        folder.path().to_path_buf(),
        &settings.warehouse.partition_column,
    );
    for seed in &changed {
        import_seed(&warehouse, seed)?;
    }
    Ok(Some(SeedPreview {
        folder,
        warehouse,
        tables: changed.iter().map(|s| s.name.to_string()).collect(),
    }))
}
