//! Serving and the online/offline consistency chain.
//!
//! `fetch` serves a join from the KV store and appends the request and its
//! response to the log table (columns `name`, `key_json`, `value_json`,
//! `ts`, `ds`). `log-flattener` turns one join's logged requests into
//! columns (`{join}_logged`); `build-comparison-table` recomputes each
//! logged feature offline at the logged time (`{join}_comparison`, with
//! `{feature}_online` and `{feature}_offline`); `consistency-metrics-compute`
//! writes, per feature, the row count, mismatches, mismatch rate and null
//! rates (`{join}_consistency`).

use std::collections::BTreeMap;

use rusqlite::Connection;
use rusqlite::types::Value;
use serde_json::{Map, Value as Json};

use super::groupby::{Spec, dataset};
use super::join::{Ask, part_values};
use super::{Engine, EngineError, Result, derive, kv, select_rows, sql_table, table_name};
use crate::config::{Accuracy, Body, Config, Join, Source};
use crate::graph::Node;
use crate::partition::{Day, DayRange};
use crate::warehouse::{Rows, from_json, json, quote, quote_list};

/// What a join serves: the request's key columns, and the response's
/// feature columns (after derivations).
pub struct Served {
    pub keys: Vec<String>,
    /// Per part: the group-by's key columns, each with the request column
    /// that supplies it.
    pub part_keys: Vec<Vec<(String, String)>>,
    pub part_features: Vec<Vec<String>>,
    pub features: Vec<String>,
}

pub fn served(join: &Join) -> Result<Served> {
    let mut keys: Vec<String> = Vec::new();
    let mut part_keys = Vec::new();
    let mut part_features = Vec::new();
    let mut features = Vec::new();
    for (i, part) in join.join_parts.iter().enumerate() {
        // Only the columns are used here: no source is read.
        let spec = Spec::new(&part.group_by, "").map_err(|e| EngineError {
            message: format!("joinParts[{i}].groupBy.{}", e.message),
            unsupported: e.unsupported,
        })?;
        let mapped = part.mapped_keys();
        for (_, left) in &mapped {
            if !keys.contains(left) {
                keys.push(left.clone());
            }
        }
        let label = part.label();
        let names: Vec<String> = spec
            .columns()
            .into_iter()
            .map(|(name, _)| format!("{label}_{name}"))
            .collect();
        features.extend(names.iter().cloned());
        part_keys.push(mapped);
        part_features.push(names);
    }
    if !join.derivations.is_empty() {
        let star = join.derivations.iter().any(|d| d.name == "*");
        if !star {
            features.clear();
        }
        for d in &join.derivations {
            if d.name != "*" && !features.contains(&d.name) {
                features.push(d.name.clone());
            }
        }
    }
    Ok(Served {
        keys,
        part_keys,
        part_features,
        features,
    })
}

fn join_config<'r>(engine: &'r Engine, name: &str) -> Result<(&'r Config, &'r Join)> {
    match engine.repo.find(name).map(|c| (c, &c.body)) {
        Some((config, Body::Join(join))) => Ok((config, join)),
        Some((config, _)) => Err(EngineError::failed(format!(
            "{}: {name} is not a join",
            config.path
        ))),
        None => Err(EngineError::failed(format!("no join named {name}"))),
    }
}

/// A request value typed as the warehouse would hold it: integers and
/// reals as numbers, anything else as text.
fn typed(text: &str) -> Value {
    if let Ok(i) = text.parse::<i64>() {
        Value::Integer(i)
    } else if let Ok(r) = text.parse::<f64>()
        && r.is_finite()
    {
        Value::Real(r)
    } else {
        Value::Text(text.to_string())
    }
}

/// Serves `join` for `keys` at `ts` (epoch milliseconds) from the KV store,
/// and logs the request and the response. Returns the response.
pub fn fetch(
    engine: &Engine,
    name: &str,
    keys: &BTreeMap<String, String>,
    ts: i64,
) -> Result<Json> {
    let (config, join) = join_config(engine, name)?;
    if !config.meta().online {
        return Err(EngineError::failed(format!(
            "{}: metaData.online: the join is not online, so nothing serves it",
            config.path
        )));
    }
    let served = served(join)?;
    let missing: Vec<&String> = served
        .keys
        .iter()
        .filter(|k| !keys.contains_key(*k))
        .collect();
    if !missing.is_empty() {
        return Err(EngineError::failed(format!(
            "--key: {name} needs {} (missing {})",
            served.keys.join(", "),
            missing
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if let Some(extra) = keys.keys().find(|k| !served.keys.contains(k)) {
        return Err(EngineError::failed(format!(
            "--key {extra}: {name} is keyed by {}",
            served.keys.join(", ")
        )));
    }
    let store = kv::open(&engine.kv_path)?;
    let mut columns: Vec<String> = served.keys.clone();
    let mut row: Vec<Value> = served.keys.iter().map(|k| typed(&keys[k])).collect();
    for (i, part) in join.join_parts.iter().enumerate() {
        let gb_keys: Vec<String> = served.part_keys[i].iter().map(|(k, _)| k.clone()).collect();
        let request: Vec<&String> = served.part_keys[i].iter().map(|(_, l)| &keys[l]).collect();
        let as_typed: Vec<Value> = request.iter().map(|v| typed(v)).collect();
        let as_text: Vec<Value> = request.iter().map(|v| Value::Text((*v).clone())).collect();
        let set = dataset(&part.group_by);
        let mut found = kv::get(&store, &set, &kv::key_json(&gb_keys, &as_typed))?;
        if found.is_none() {
            found = kv::get(&store, &set, &kv::key_json(&gb_keys, &as_text))?;
        }
        let label = part.label();
        for feature in &served.part_features[i] {
            let bare = &feature[label.len() + 1..];
            let value = found
                .as_ref()
                .and_then(|(v, _)| v.get(bare))
                .map_or(Value::Null, from_json);
            columns.push(feature.clone());
            row.push(value);
        }
    }
    let types = vec![""; columns.len()];
    let rows = Rows {
        columns,
        types,
        rows: vec![row],
    };
    let conn = Connection::open_in_memory().map_err(|e| EngineError::failed(e.to_string()))?;
    super::sql::register(&conn).map_err(|e| EngineError::failed(e.to_string()))?;
    let derived = derive(&conn, rows, &join.derivations, &served.keys, "derivations")?;
    let mut response = Map::new();
    for (c, v) in derived.columns.iter().zip(&derived.rows[0]) {
        if served.features.contains(c) {
            response.insert(c.clone(), json(v));
        }
    }
    let mut key_map = Map::new();
    for k in &served.keys {
        key_map.insert(k.clone(), json(&typed(&keys[k])));
    }
    append_log(
        engine,
        name,
        &Json::Object(key_map.clone()),
        &Json::Object(response.clone()),
        ts,
    )?;
    let mut out = Map::new();
    out.insert("join".into(), name.into());
    out.insert("keys".into(), Json::Object(key_map));
    out.insert("ts".into(), ts.into());
    out.insert("features".into(), Json::Object(response));
    Ok(Json::Object(out))
}

/// Appends one row to the log table's partition for `ts`.
fn append_log(engine: &Engine, name: &str, keys: &Json, response: &Json, ts: i64) -> Result<()> {
    let log = &engine.settings.consistency.log_table;
    let table = table_name(log)?;
    let day = Day(ts.div_euclid(super::aggregate::DAY_MS) as i32);
    let partition = engine.warehouse.partition_column.clone();
    let columns: Vec<String> = ["name", "key_json", "value_json", "ts"]
        .iter()
        .map(|c| c.to_string())
        .chain([partition.clone()])
        .collect();
    let mut rows = Vec::new();
    if engine
        .warehouse
        .partitions(&table)
        .map_err(|e| EngineError::failed(e.0))?
        .iter()
        .any(|p| p.partition == day.to_string())
    {
        let conn = engine.connect()?;
        let existing = select_rows(
            &conn,
            &format!(
                "SELECT {} FROM {} WHERE {} = ?1",
                quote_list(&columns),
                sql_table(log)?,
                quote(&partition)
            ),
            &[&day.to_string()],
            "the log table",
        )?;
        rows = existing.rows;
    }
    rows.push(vec![
        Value::Text(name.into()),
        Value::Text(keys.to_string()),
        Value::Text(response.to_string()),
        Value::Integer(ts),
        Value::Text(day.to_string()),
    ]);
    let rows = Rows {
        columns,
        types: vec!["TEXT", "TEXT", "TEXT", "INTEGER", "TEXT"],
        rows,
    };
    engine
        .warehouse
        .write_partitions(&table, &rows, Some(&partition))
        .map_err(|e| EngineError::failed(e.0))?;
    Ok(())
}

fn join_of<'e>(engine: &'e Engine, node: &Node) -> Result<&'e Join> {
    match &engine.repo.configs[node.config].body {
        Body::Join(join) => Ok(join),
        _ => Err(EngineError::failed("not a join")),
    }
}

/// What each step of the chain starts from: the join, what it serves, the
/// partition column, a connection, and its input table's rows in `range`.
struct Chain<'e> {
    join: &'e Join,
    served: Served,
    partition: String,
    conn: Connection,
    input: Rows,
}

impl<'e> Chain<'e> {
    fn open(engine: &'e Engine, node: &Node, range: DayRange, what: &str) -> Result<Chain<'e>> {
        let join = join_of(engine, node)?;
        let served = served(join)?;
        let partition = engine.warehouse.partition_column.clone();
        let conn = engine.connect()?;
        let input = read_day(&conn, &node.inputs[0].table, &partition, range, what)?;
        Ok(Chain {
            join,
            served,
            partition,
            conn,
            input,
        })
    }
}

fn read_day(
    conn: &Connection,
    table: &str,
    partition: &str,
    range: DayRange,
    what: &str,
) -> Result<Rows> {
    select_rows(
        conn,
        &format!(
            "SELECT * FROM {} WHERE {} BETWEEN ?1 AND ?2",
            sql_table(table)?,
            quote(partition)
        ),
        &[&range.from.to_string(), &range.to.to_string()],
        what,
    )
}

pub fn flatten(engine: &Engine, node: &Node, range: DayRange) -> Result<String> {
    let Chain {
        join: _,
        served,
        partition,
        conn: _,
        input: log,
    } = Chain::open(engine, node, range, "the log table")?;
    let at = |c: &str| {
        log.columns
            .iter()
            .position(|x| x == c)
            .ok_or_else(|| EngineError::failed(format!("the log table has no {c} column")))
    };
    let (name_at, key_at, value_at, ts_at, day_at) = (
        at("name")?,
        at("key_json")?,
        at("value_json")?,
        at("ts")?,
        at(&partition)?,
    );
    let name = &engine.repo.configs[node.config].name;
    let parse = |v: &Value| -> Json {
        match v {
            Value::Text(t) => serde_json::from_str(t).unwrap_or(Json::Null),
            _ => Json::Null,
        }
    };
    let mut rows = Vec::new();
    for row in &log.rows {
        if row[name_at] != Value::Text(name.clone()) {
            continue;
        }
        let (keys, values) = (parse(&row[key_at]), parse(&row[value_at]));
        let mut out: Vec<Value> = served
            .keys
            .iter()
            .map(|k| keys.get(k).map_or(Value::Null, from_json))
            .collect();
        out.push(row[ts_at].clone());
        out.extend(
            served
                .features
                .iter()
                .map(|f| values.get(f).map_or(Value::Null, from_json)),
        );
        out.push(row[day_at].clone());
        rows.push(out);
    }
    let mut columns = served.keys.clone();
    columns.push("ts".into());
    columns.extend(served.features.iter().cloned());
    columns.push(partition);
    let (output, written) = engine.write_untyped(node, columns, rows, range)?;
    Ok(format!("{output}: {written} logged requests over {range}"))
}

pub fn compare(engine: &Engine, node: &Node, range: DayRange) -> Result<String> {
    let Chain {
        join,
        served,
        partition,
        conn,
        input: logged,
    } = Chain::open(engine, node, range, "the logged table")?;
    if join.meta.lag != 0 {
        return Err(EngineError::unsupported("metaData.lag: lagged joins"));
    }
    let at = |c: &str| logged.columns.iter().position(|x| x == c);
    let (Some(ts_at), Some(day_at)) = (at("ts"), at(&partition)) else {
        return Err(EngineError::failed(
            "the logged table has no ts or partition column",
        ));
    };
    let day_of = |row: &[Value]| match &row[day_at] {
        Value::Text(t) => Day::parse(t),
        _ => None,
    };
    let left_is_events = !matches!(join.left, Source::Entities { .. });
    // Offline values of each part's features for each logged request.
    let mut offline: Vec<Vec<Value>> = vec![Vec::new(); logged.rows.len()];
    let mut offline_columns: Vec<String> = served.keys.clone();
    for (r, row) in logged.rows.iter().enumerate() {
        offline[r] = served
            .keys
            .iter()
            .map(|k| at(k).map_or(Value::Null, |i| row[i].clone()))
            .collect();
    }
    for (i, part) in join.join_parts.iter().enumerate() {
        let spec = Spec::new(&part.group_by, &engine.warehouse.partition_column)?;
        let asks: Vec<Ask> = logged
            .rows
            .iter()
            .map(|row| Ask {
                key: served.part_keys[i]
                    .iter()
                    .map(|(_, left)| at(left).map_or(Value::Null, |c| row[c].clone()))
                    .collect(),
                ts: match &row[ts_at] {
                    Value::Integer(ts) => Some(*ts),
                    _ => None,
                },
                day: day_of(row).unwrap_or(range.from),
            })
            .collect();
        let temporal = left_is_events && part.group_by.effective_accuracy() == Accuracy::Temporal;
        let prefix = format!("joinParts[{i}].groupBy.");
        let values = part_values(&conn, &spec, node, &prefix, &asks, temporal, range)?;
        for (r, v) in values.into_iter().enumerate() {
            offline[r].extend(v);
        }
        offline_columns.extend(served.part_features[i].iter().cloned());
    }
    let rows = Rows {
        types: vec![""; offline_columns.len()],
        columns: offline_columns,
        rows: offline,
    };
    let derived = derive(&conn, rows, &join.derivations, &served.keys, "derivations")?;
    let mut columns = served.keys.clone();
    columns.push("ts".into());
    for f in &served.features {
        columns.push(format!("{f}_online"));
        columns.push(format!("{f}_offline"));
    }
    columns.push(partition);
    let mut rows = Vec::with_capacity(logged.rows.len());
    for (r, row) in logged.rows.iter().enumerate() {
        let mut out: Vec<Value> = served
            .keys
            .iter()
            .map(|k| at(k).map_or(Value::Null, |i| row[i].clone()))
            .collect();
        out.push(row[ts_at].clone());
        for f in &served.features {
            out.push(at(f).map_or(Value::Null, |i| row[i].clone()));
            let offline_at = derived.columns.iter().position(|c| c == f);
            out.push(offline_at.map_or(Value::Null, |i| derived.rows[r][i].clone()));
        }
        out.push(row[day_at].clone());
        rows.push(out);
    }
    let (output, written) = engine.write_untyped(node, columns, rows, range)?;
    Ok(format!(
        "{output}: {written} requests compared over {range}"
    ))
}

/// Whether two feature values agree: numbers within a relative 1e-9, other
/// values exactly; null agrees only with null.
fn same(a: &Value, b: &Value) -> bool {
    let number = |v: &Value| match v {
        Value::Integer(i) => Some(*i as f64),
        Value::Real(r) => Some(*r),
        _ => None,
    };
    match (number(a), number(b)) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
        _ => a == b,
    }
}

pub fn metrics(engine: &Engine, node: &Node, range: DayRange) -> Result<String> {
    let Chain {
        join: _,
        served,
        partition,
        conn: _,
        input: compared,
    } = Chain::open(engine, node, range, "the comparison table")?;
    let at = |c: &str| compared.columns.iter().position(|x| x == c);
    let Some(day_at) = at(&partition) else {
        return Err(EngineError::failed(
            "the comparison table has no partition column",
        ));
    };
    let mut rows = Vec::new();
    for day in range.days() {
        let today: Vec<&Vec<Value>> = compared
            .rows
            .iter()
            .filter(|r| r[day_at] == Value::Text(day.to_string()))
            .collect();
        if today.is_empty() {
            continue;
        }
        let n = today.len() as f64;
        for f in &served.features {
            let (Some(on), Some(off)) = (at(&format!("{f}_online")), at(&format!("{f}_offline")))
            else {
                continue;
            };
            let mismatches = today.iter().filter(|r| !same(&r[on], &r[off])).count();
            let nulls = |i: usize| today.iter().filter(|r| r[i] == Value::Null).count() as f64 / n;
            rows.push(vec![
                Value::Text(f.clone()),
                Value::Integer(today.len() as i64),
                Value::Integer(mismatches as i64),
                Value::Real(mismatches as f64 / n),
                Value::Real(nulls(on)),
                Value::Real(nulls(off)),
                Value::Text(day.to_string()),
            ]);
        }
    }
    let columns: Vec<String> = [
        "feature",
        "row_count",
        "mismatch_count",
        "mismatch_rate",
        "online_null_rate",
        "offline_null_rate",
    ]
    .iter()
    .map(|c| c.to_string())
    .chain([partition])
    .collect();
    let rows = Rows {
        types: vec!["TEXT", "INTEGER", "INTEGER", "REAL", "REAL", "REAL", "TEXT"],
        columns,
        rows,
    };
    let output = node.output.as_deref().unwrap_or_default();
    let written = engine.write(output, &rows, range)?;
    Ok(format!("{output}: {written} feature metrics over {range}"))
}
