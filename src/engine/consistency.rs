//! The online/offline consistency chain, over what `fetch` logs (the log
//! table in Chronon's layout: `schema_hash`, `key_base64`, `value_base64`,
//! `ts_millis`, `name`, `ds`).
//! `log-flattener` turns one join's logged requests into
//! columns (`{join}_logged`); `build-comparison-table` recomputes each
//! logged feature offline at the logged time (`{join}_comparison`, with
//! `{feature}_online` and `{feature}_offline`); `consistency-metrics-compute`
//! writes, per feature, the row count, mismatches, mismatch rate and null
//! rates (`{join}_consistency`).

use rusqlite::Connection;
use rusqlite::types::Value;
use serde_json::Value as Json;

use super::fetch::{LOG_COLUMNS, Served, served};
use super::groupby::Spec;
use super::join::{Ask, part_values};
use super::{Engine, EngineError, Result, derive, select_rows, sql_table};
use crate::config::{Accuracy, Body, Join};
use crate::graph::Node;
use crate::partition::{Day, DayRange};
use crate::warehouse::{Rows, from_json, quote};

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
        log.columns.iter().position(|x| x == c).ok_or_else(|| {
            EngineError::failed(format!(
                "the log table has no {c} column (expected Chronon's log columns {:?})",
                LOG_COLUMNS
            ))
        })
    };
    let (hash_at, key_at, value_at, ts_at, name_at, day_at) = (
        at("schema_hash")?,
        at("key_base64")?,
        at("value_base64")?,
        at("ts_millis")?,
        at("name")?,
        at(&partition)?,
    );
    let name = &engine.repo.configs[node.config].name;
    // Keys and values are base64 of JSON (see `fetch`); what does not
    // decode is a null row, as Chronon's flattener counts a decode failure
    // and goes on.
    let decode = |v: &Value| -> Json {
        use base64::Engine as _;
        let Value::Text(t) = v else { return Json::Null };
        base64::prelude::BASE64_STANDARD
            .decode(t.trim())
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or(Json::Null)
    };
    let mut rows = Vec::new();
    for row in &log.rows {
        if row[name_at] != Value::Text(name.clone()) {
            continue;
        }
        let (keys, values) = (decode(&row[key_at]), decode(&row[value_at]));
        let mut out = vec![row[hash_at].clone()];
        out.extend(
            served
                .keys
                .iter()
                .map(|k| keys.get(k).map_or(Value::Null, from_json)),
        );
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
    let mut columns = vec!["schema_hash".to_string()];
    columns.extend(served.keys.iter().cloned());
    columns.push("ts".into());
    columns.extend(served.features.iter().cloned());
    columns.push(partition);
    let (output, written) = engine.write_untyped(node, columns, rows, range)?;
    Ok(format!("{output}: {written} logged requests over {range}"))
}

pub fn compare(engine: &Engine, node: &Node, range: DayRange) -> Result<String> {
    let chain = Chain::open(engine, node, range, "the logged table")?;
    if chain.join.meta.lag != 0 {
        return Err(EngineError::unsupported("metaData.lag: lagged joins"));
    }
    let logged = Logged::new(&chain.input, &chain.partition)?;
    let offline = offline_values(engine, node, &chain, &logged, range)?;
    let derived = derive(
        &chain.conn,
        offline,
        &chain.join.derivations,
        &chain.served.keys,
        "derivations",
    )?;
    let mut columns = chain.served.keys.clone();
    columns.push("ts".into());
    for f in &chain.served.features {
        columns.push(format!("{f}_online"));
        columns.push(format!("{f}_offline"));
    }
    columns.push(chain.partition.clone());
    let rows = side_by_side(&chain.served, &logged, &derived);
    let (output, written) = engine.write_untyped(node, columns, rows, range)?;
    Ok(format!(
        "{output}: {written} requests compared over {range}"
    ))
}

/// The logged table, with where its request time and partition sit.
struct Logged<'c> {
    table: &'c Rows,
    ts_at: usize,
    day_at: usize,
}

impl<'c> Logged<'c> {
    fn new(table: &'c Rows, partition: &str) -> Result<Logged<'c>> {
        let at = |c: &str| table.columns.iter().position(|x| x == c);
        let (Some(ts_at), Some(day_at)) = (at("ts"), at(partition)) else {
            return Err(EngineError::failed(
                "the logged table has no ts or partition column",
            ));
        };
        Ok(Logged {
            table,
            ts_at,
            day_at,
        })
    }

    /// A row's value of `column`: null when the table lacks the column.
    fn value(&self, row: &[Value], column: &str) -> Value {
        let at = self.table.columns.iter().position(|x| x == column);
        at.map_or(Value::Null, |i| row[i].clone())
    }

    fn keys(&self, row: &[Value], keys: &[String]) -> Vec<Value> {
        keys.iter().map(|k| self.value(row, k)).collect()
    }

    fn day(&self, row: &[Value]) -> Option<Day> {
        match &row[self.day_at] {
            Value::Text(t) => Day::parse(t),
            _ => None,
        }
    }
}

/// Each logged request's keys and offline features, as the join computes
/// them for a left row at the request's time, before derivations.
fn offline_values(
    engine: &Engine,
    node: &Node,
    chain: &Chain,
    logged: &Logged,
    range: DayRange,
) -> Result<Rows> {
    let (join, served) = (chain.join, &chain.served);
    let left_is_events = join.left_is_events();
    let mut offline: Vec<Vec<Value>> = logged
        .table
        .rows
        .iter()
        .map(|row| logged.keys(row, &served.keys))
        .collect();
    let mut offline_columns: Vec<String> = served.keys.clone();
    for (i, part) in join.join_parts.iter().enumerate() {
        let spec = Spec::new(&part.group_by, &engine.warehouse.partition_column)?;
        let asks: Vec<Ask> = logged
            .table
            .rows
            .iter()
            .map(|row| Ask {
                key: served.part_keys[i]
                    .iter()
                    .map(|(_, left)| logged.value(row, left))
                    .collect(),
                ts: match &row[logged.ts_at] {
                    Value::Integer(ts) => Some(*ts),
                    _ => None,
                },
                day: logged.day(row).unwrap_or(range.from),
            })
            .collect();
        let temporal = left_is_events && part.group_by.effective_accuracy() == Accuracy::Temporal;
        let prefix = format!("joinParts[{i}].groupBy.");
        let values = part_values(&chain.conn, &spec, node, &prefix, &asks, temporal, range)?;
        for (r, v) in values.into_iter().enumerate() {
            offline[r].extend(v);
        }
        offline_columns.extend(served.part_features[i].iter().cloned());
    }
    Ok(Rows {
        types: vec![""; offline_columns.len()],
        columns: offline_columns,
        rows: offline,
    })
}

/// Per logged request: its keys, its time, each feature online then
/// offline, and its partition.
fn side_by_side(served: &Served, logged: &Logged, offline: &Rows) -> Vec<Vec<Value>> {
    let mut rows = Vec::with_capacity(logged.table.rows.len());
    for (r, row) in logged.table.rows.iter().enumerate() {
        let mut out = logged.keys(row, &served.keys);
        out.push(row[logged.ts_at].clone());
        for f in &served.features {
            out.push(logged.value(row, f));
            let offline_at = offline.columns.iter().position(|c| c == f);
            out.push(offline_at.map_or(Value::Null, |i| offline.rows[r][i].clone()));
        }
        out.push(row[logged.day_at].clone());
        rows.push(out);
    }
    rows
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
