//! Serving: `fetch` answers a join request from the local KV store as
//! Chronon's fetcher does (airbnb/chronon
//! `online/src/main/scala/ai/chronon/online/FetcherBase.scala`,
//! `constructGroupByResponse`), and appends the request and its response
//! to the log table for the consistency chain.
//!
//! Per join part, by how the group-by is served:
//! - SNAPSHOT (or no aggregations): the upload's values as of the batch
//!   end, whatever the request time;
//! - TEMPORAL events: the batch IR (`ir`) brought to the request time, with
//!   the streaming head when the group-by's streaming job is deployed
//!   (`streaming`); a request before the batch end gets no values and an
//!   exception, as Chronon's `Request time of ... is less than batch time`.

use std::collections::BTreeMap;

use rusqlite::Connection;
use rusqlite::types::Value;
use serde_json::{Map, Value as Json};

use super::aggregate::Feature;
use super::groupby::{BATCH_IR, Spec, dataset};
use super::ir::{FeatureIr, rows_feature};
use super::{
    Engine, EngineError, Result, derive, kv, select_rows, sql_table, streaming, table_name,
};
use crate::config::{Body, Config, GroupBy, Join};
use crate::partition::Day;
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
    check_keys(name, &served, keys)?;
    let conn = Connection::open_in_memory().map_err(|e| EngineError::failed(e.to_string()))?;
    super::sql::register(&conn).map_err(|e| EngineError::failed(e.to_string()))?;
    let (rows, exceptions) = request_row(engine, &conn, join, &served, keys, ts);
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
    let schema = serde_json::json!({ "key_schema": served.keys, "value_schema": served.features });
    append_log(
        engine,
        name,
        &schema,
        &Json::Object(key_map.clone()),
        &Json::Object(response.clone()),
        ts,
    )?;
    let mut out = Map::new();
    out.insert("join".into(), name.into());
    out.insert("keys".into(), Json::Object(key_map));
    out.insert("ts".into(), ts.into());
    out.insert("features".into(), Json::Object(response));
    if !exceptions.is_empty() {
        out.insert("exceptions".into(), Json::Object(exceptions));
    }
    Ok(Json::Object(out))
}

/// Refuses keys the join does not serve, and a request missing any.
fn check_keys(name: &str, served: &Served, keys: &BTreeMap<String, String>) -> Result<()> {
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
    Ok(())
}

/// The request's keys and every part's features, before derivations, as
/// one row; and the exceptions of the parts that could not answer.
fn request_row(
    engine: &Engine,
    conn: &Connection,
    join: &Join,
    served: &Served,
    keys: &BTreeMap<String, String>,
    ts: i64,
) -> (Rows, Map<String, Json>) {
    let mut columns: Vec<String> = served.keys.clone();
    let mut row: Vec<Value> = served.keys.iter().map(|k| typed(&keys[k])).collect();
    let mut exceptions = Map::new();
    for (i, part) in join.join_parts.iter().enumerate() {
        let request: Vec<&String> = served.part_keys[i].iter().map(|(_, l)| &keys[l]).collect();
        let candidates = [
            request.iter().map(|v| typed(v)).collect::<Vec<Value>>(),
            request.iter().map(|v| Value::Text((*v).clone())).collect(),
        ];
        let label = part.label();
        let response = match group_by_response(engine, conn, &part.group_by, &candidates, ts) {
            Ok(values) => values,
            Err(e) => {
                // As Chronon's fetcher: the part's features are missing and
                // the response says why under `{prefix}_exception`.
                exceptions.insert(format!("{label}_exception"), e.message.into());
                None
            }
        };
        for feature in &served.part_features[i] {
            let bare = &feature[label.len() + 1..];
            let value = response
                .as_ref()
                .and_then(|v| v.get(bare))
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
    (rows, exceptions)
}

/// The log table's columns, as Chronon's logging writes them
/// (airbnb/chronon `quickstart/mongo-online-impl/.../MongoLoggingDumper.scala`;
/// `spark/.../LogFlattenerJob.scala` reads `key_base64`, `value_base64`,
/// `ts_millis`, `ds` and `schema_hash`), before the partition column.
pub const LOG_COLUMNS: [&str; 5] = [
    "schema_hash",
    "key_base64",
    "value_base64",
    "ts_millis",
    "name",
];

/// The `name` of the rows that publish a logging schema (Chronon's
/// `Constants.SchemaPublishEvent`): the key is the schema hash, the value
/// the schema.
pub const SCHEMA_PUBLISH_EVENT: &str = "SCHEMA_PUBLISH_EVENT";

fn base64(text: &str) -> Value {
    use base64::Engine as _;
    Value::Text(base64::prelude::BASE64_STANDARD.encode(text))
}

/// Appends one request to the log table's partition for `ts`, in Chronon's
/// layout, with the schema published once per partition. Keys and values
/// are JSON where Chronon writes Avro: the flattener here reads JSON.
fn append_log(
    engine: &Engine,
    name: &str,
    schema: &Json,
    keys: &Json,
    response: &Json,
    ts: i64,
) -> Result<()> {
    let log = &engine.settings.consistency.log_table;
    let table = table_name(log)?;
    let day = Day(ts.div_euclid(super::aggregate::DAY_MS) as i32);
    let partition = engine.warehouse.partition_column.clone();
    let columns: Vec<String> = LOG_COLUMNS
        .iter()
        .map(|c| c.to_string())
        .chain([partition.clone()])
        .collect();
    let mut rows = Vec::new();
    if engine
        .warehouse
        .partitions(&table)
        .map_err(|e| EngineError::failed(e.to_string()))?
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
            &format!("the log table {log} (expected Chronon's log columns {columns:?})"),
        )?;
        rows = existing.rows;
    }
    let schema_text = schema.to_string();
    let hash = crate::hash::Hash::of_json(schema).short();
    let published = rows
        .iter()
        .any(|r| r[4] == Value::Text(SCHEMA_PUBLISH_EVENT.into()) && r[1] == base64(&hash));
    let day_text = Value::Text(day.to_string());
    if !published {
        rows.push(vec![
            Value::Null,
            base64(&hash),
            base64(&schema_text),
            Value::Integer(ts),
            Value::Text(SCHEMA_PUBLISH_EVENT.into()),
            day_text.clone(),
        ]);
    }
    rows.push(vec![
        Value::Text(hash),
        base64(&keys.to_string()),
        base64(&response.to_string()),
        Value::Integer(ts),
        Value::Text(name.into()),
        day_text,
    ]);
    let rows = Rows {
        columns,
        types: vec!["TEXT", "TEXT", "TEXT", "INTEGER", "TEXT", "TEXT"],
        rows,
    };
    engine
        .warehouse
        .write_partitions(&table, &rows, Some(&partition))
        .map_err(|e| EngineError::failed(e.to_string()))?;
    Ok(())
}

/// What the store holds for the first of the request's key forms (as
/// typed, then as text) that it has.
fn first_stored<T>(
    gb: &GroupBy,
    candidates: &[Vec<Value>],
    mut get: impl FnMut(&str) -> Result<Option<T>>,
) -> Result<Option<T>> {
    for key in candidates {
        if let Some(found) = get(&kv::key_json(&gb.key_columns, key))? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// One group-by's values for a request (by feature name, after the
/// group-by's derivations); `None` when the store has nothing for the key.
fn group_by_response(
    engine: &Engine,
    conn: &Connection,
    gb: &GroupBy,
    candidates: &[Vec<Value>],
    ts: i64,
) -> Result<Option<Map<String, Json>>> {
    let store = kv::open(&engine.kv_path)?;
    let set = dataset(gb);
    let found = first_stored(gb, candidates, |key| {
        Ok(kv::get(&store, &set, key)?.map(|(value, _)| value))
    })?;
    let spec = Spec::new(gb, &engine.warehouse.partition_column)?;
    let end = streaming::batch_end(&store, gb)?;
    let (true, Some(end)) = (spec.serves_temporal(), end) else {
        return Ok(found.and_then(|v| v.as_object().cloned()));
    };
    if ts < end {
        return Err(EngineError::failed(format!(
            "Request time of {ts} is less than batch time {end} for groupBy {}",
            gb.meta.name
        )));
    }
    let batch: Option<Json> = found
        .as_ref()
        .and_then(|v| v.get(BATCH_IR))
        .and_then(Json::as_str)
        .and_then(|text| serde_json::from_str(text).ok());
    let mut head = None;
    if streaming::deployed(&store, gb)? {
        // The deployed job has consumed the topic up to now.
        streaming::fold(engine, &spec, end, Some(candidates))?;
        head = first_stored(gb, candidates, |key| streaming::head(&store, gb, key))?;
    }
    let head = head.unwrap_or_default();
    let part = |feature: &Feature| -> FeatureIr {
        batch
            .as_ref()
            .and_then(|b| b.get("features")?.get(&feature.name))
            .and_then(FeatureIr::from_json)
            .unwrap_or_else(|| FeatureIr::empty(feature))
    };
    let after = |pairs: Vec<(i64, Value)>| -> Vec<(i64, Value)> {
        pairs.into_iter().filter(|(t, _)| *t >= end).collect()
    };
    let times: Vec<(i64, Value)> = head
        .times
        .iter()
        .filter(|t| **t >= end)
        .map(|t| (*t, Value::Integer(1)))
        .collect();
    let rows = rows_feature(&spec.features);
    if part(&rows).value_at(&rows, &times, ts) == Value::Null {
        // No event in the longest window: the key has no row.
        return Ok(None);
    }
    let mut columns = gb.key_columns.clone();
    let mut values = candidates[0].clone();
    for feature in &spec.features {
        let head_values = after(head.values(&spec.inputs[feature.input]));
        columns.push(feature.name.clone());
        values.push(part(feature).value_at(feature, &head_values, ts));
    }
    let rows = Rows {
        types: vec![""; columns.len()],
        columns,
        rows: vec![values],
    };
    let derived = derive(conn, rows, &gb.derivations, &gb.key_columns, "derivations")?;
    let mut out = Map::new();
    for (c, v) in derived.columns.iter().zip(&derived.rows[0]) {
        out.insert(c.clone(), json(v));
    }
    Ok(Some(out))
}
