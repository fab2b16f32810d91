//! Group-bys: reading sources into per-key events, the backfill (features
//! as of the end of each day) and the upload (as of the end of the last).

use rayon::prelude::*;
use rusqlite::Connection;
use rusqlite::types::Value;

use super::aggregate::{self, DAY_MS, Feature, Op};
use super::ir;
use super::seen::{self, At, Seen};
use super::{
    Engine, EngineError, KeyIndex, Result, column_expr, key_string, scan_sql, select_rows,
};
use crate::config::{Accuracy, Body, GroupBy, Query, Source, sanitize};
use crate::graph::{Input, Node};
use crate::partition::{Day, DayRange};
use crate::warehouse::Rows;

/// A group-by ready to evaluate: its input columns and output features, or,
/// without aggregations, the columns it selects as they are.
pub struct Spec<'a> {
    pub gb: &'a GroupBy,
    pub inputs: Vec<String>,
    pub features: Vec<Feature>,
    /// The value columns of a group-by without aggregations.
    pub plain: Vec<String>,
    /// The warehouse's partition column: a source's, unless its query
    /// names another.
    pub partition: &'a str,
}

impl<'a> Spec<'a> {
    pub fn new(gb: &'a GroupBy, partition: &'a str) -> Result<Spec<'a>> {
        if gb.meta.lag != 0 {
            return Err(EngineError::unsupported("metaData.lag: lagged group-bys"));
        }
        if gb.sources.is_empty() {
            return Err(EngineError::failed("sources: expected at least one source"));
        }
        for (i, source) in gb.sources.iter().enumerate() {
            if let Source::Entities {
                mutation_table: Some(_),
                ..
            } = source
                && gb.effective_accuracy() == Accuracy::Temporal
            {
                return Err(EngineError::unsupported(format!(
                    "sources[{i}].entities.mutationTable: TEMPORAL entities (mutations)"
                )));
            }
        }
        let entities = gb
            .sources
            .iter()
            .filter(|s| matches!(s, Source::Entities { .. }))
            .count();
        if entities != 0 && entities != gb.sources.len() {
            return Err(EngineError::unsupported(
                "sources: a mix of events and entities sources",
            ));
        }
        let mut inputs = Vec::new();
        let features = aggregate::features(&gb.aggregations, &mut inputs)?;
        if entities != 0 && features.iter().any(|f| f.window.is_some()) {
            return Err(EngineError::unsupported(
                "aggregations: windows over an entities source (they need mutations)",
            ));
        }
        let plain = if gb.aggregations.is_empty() {
            let query = gb.sources[0].query();
            let columns: Vec<String> = query
                .selects
                .keys()
                .filter(|c| !gb.key_columns.contains(c) && *c != "ts")
                .cloned()
                .collect();
            if columns.is_empty() {
                return Err(EngineError::failed(
                    "sources[0].query.selects: a group-by without aggregations must select \
                     the columns it serves",
                ));
            }
            columns
        } else {
            Vec::new()
        };
        Ok(Spec {
            gb,
            inputs,
            features,
            plain,
            partition,
        })
    }

    /// Whether the fetcher serves it TEMPORAL: events with aggregations and
    /// TEMPORAL accuracy (set, or inferred from a topic). Its upload then
    /// holds batch IRs, not values (`GroupByUpload.temporalEvents`).
    pub fn serves_temporal(&self) -> bool {
        self.is_events()
            && !self.features.is_empty()
            && self.gb.effective_accuracy() == Accuracy::Temporal
    }

    pub fn is_events(&self) -> bool {
        !matches!(self.gb.sources[0], Source::Entities { .. })
    }

    /// The output columns after the keys, with their declared types.
    pub fn columns(&self) -> Vec<(String, &'static str)> {
        if !self.plain.is_empty() {
            return self.plain.iter().map(|c| (c.clone(), "")).collect();
        }
        self.features
            .iter()
            .map(|f| (f.name.clone(), f.op.sql_type()))
            .collect()
    }

    /// The features of one key for each query (ascending times), from
    /// the events its day sees (`seen`); `None` where the key had no event
    /// in the longest window (it is then not in the output).
    pub fn evaluate(&self, events: &Events, key: usize, queries: &[At]) -> Vec<Option<Vec<Value>>> {
        let longest = aggregate::longest_window(&self.features);
        let (times, seen) = (&events.times[key], &events.seen[key]);
        if seen::sees_all(times, seen, queries, longest) {
            let at: Vec<i64> = queries.iter().map(|q| q.t).collect();
            return self.evaluate_on(times, &events.values[key], &at);
        }
        let mut out = vec![None; queries.len()];
        for group in seen::groups(times, seen, queries, longest) {
            let times: Vec<i64> = times
                .iter()
                .zip(seen)
                .filter(|(ts, s)| group.sees(**ts, **s, longest))
                .map(|(ts, _)| *ts)
                .collect();
            let values: Vec<Vec<(i64, Value)>> = events.values[key]
                .iter()
                .zip(&events.value_seen[key])
                .map(|(values, seen)| group.filter(values, seen, longest))
                .collect();
            let at: Vec<i64> = group.queries.iter().map(|&q| queries[q].t).collect();
            let found = self.evaluate_on(&times, &values, &at);
            for (q, v) in group.queries.iter().zip(found) {
                out[*q] = v;
            }
        }
        out
    }

    /// `evaluate` over the events given, all of which every query sees.
    fn evaluate_on(
        &self,
        times: &[i64],
        values: &[Vec<(i64, Value)>],
        queries: &[i64],
    ) -> Vec<Option<Vec<Value>>> {
        let longest = aggregate::longest_window(&self.features);
        let present: Vec<bool> = queries
            .iter()
            .map(|&t| {
                let before = times.partition_point(|&x| x < t);
                match longest {
                    None => before > 0,
                    Some(w) => {
                        before > times.partition_point(|&x| x < aggregate::window_start(t, w))
                    }
                }
            })
            .collect();
        let columns: Vec<Vec<Value>> = self
            .features
            .iter()
            .map(|f| aggregate::evaluate(&values[f.input], f, queries))
            .collect();
        present
            .iter()
            .enumerate()
            .map(|(q, present)| present.then(|| columns.iter().map(|c| c[q].clone()).collect()))
            .collect()
    }
}

/// Per key: every event time, and the non-null values of each input
/// column, sorted by (time, value); beside each, the days that see it.
#[derive(Default)]
pub struct Events {
    pub keys: Vec<Vec<Value>>,
    pub index: KeyIndex,
    pub times: Vec<Vec<i64>>,
    pub seen: Vec<Vec<Seen>>,
    pub values: Vec<Vec<Vec<(i64, Value)>>>,
    pub value_seen: Vec<Vec<Vec<Seen>>>,
}

impl Events {
    fn key(&mut self, values: Vec<Value>, inputs: usize) -> usize {
        let text = key_string(&values);
        if let Some(&i) = self.index.get(&text) {
            return i;
        }
        self.index.insert(text, self.keys.len());
        self.keys.push(values);
        self.times.push(Vec::new());
        self.seen.push(Vec::new());
        self.values.push(vec![Vec::new(); inputs]);
        self.value_seen.push(vec![Vec::new(); inputs]);
        self.keys.len() - 1
    }

    pub fn sort(&mut self) {
        let (times, seen) = (&mut self.times, &mut self.seen);
        times
            .par_iter_mut()
            .zip(seen.par_iter_mut())
            .for_each(|(times, seen)| {
                let mut both: Vec<(i64, Seen)> =
                    times.iter().copied().zip(seen.drain(..)).collect();
                both.sort_unstable();
                (*times, *seen) = both.into_iter().unzip();
            });
        let (values, seen) = (&mut self.values, &mut self.value_seen);
        values
            .par_iter_mut()
            .zip(seen.par_iter_mut())
            .for_each(|(columns, seen)| {
                for (column, seen) in columns.iter_mut().zip(seen) {
                    let mut both: Vec<((i64, Value), Seen)> =
                        column.drain(..).zip(seen.drain(..)).collect();
                    both.sort_by(|(a, sa), (b, sb)| {
                        a.0.cmp(&b.0)
                            .then_with(|| super::sql::compare_values(&a.1, &b.1))
                            .then(sa.cmp(sb))
                    });
                    (*column, *seen) = both.into_iter().unzip();
                }
            });
    }
}

/// The source's time column expression.
fn time_expr(query: &Query) -> String {
    match &query.time_column {
        Some(expr) => super::sql::quote_default_namespace(expr),
        None => column_expr(query, "ts"),
    }
}

pub fn source_table(source: &Source) -> String {
    match source {
        Source::Events { table, .. } => table.table.clone(),
        Source::Entities { snapshot_table, .. } => snapshot_table.table.clone(),
        Source::Join { join, .. } => join.meta.output_table(),
    }
}

/// What `load` selects: the keys, `__ts`, the partition (`__ds`), then
/// the inputs.
fn scan_columns(spec: &Spec, query: &Query, partition: &str) -> Vec<(String, String)> {
    let mut columns: Vec<(String, String)> = spec
        .gb
        .key_columns
        .iter()
        .map(|k| (k.clone(), column_expr(query, k)))
        .collect();
    let timed = spec.is_events() || query.time_column.is_some() || query.selects.contains_key("ts");
    columns.push((
        "__ts".into(),
        if timed { time_expr(query) } else { "0".into() },
    ));
    columns.push(("__ds".into(), crate::warehouse::quote(partition)));
    for input in &spec.inputs {
        columns.push((format!("__in_{input}"), column_expr(query, input)));
    }
    columns
}

/// Reads one source's rows in `range` into `events`; entities snapshots
/// without a time column get time 0 (one snapshot has no order). Each
/// event is seen by the days whose read of `input` holds its partition;
/// by every day without one.
pub fn load(
    conn: &Connection,
    spec: &Spec,
    source: &Source,
    (range, input): (DayRange, Option<&Input>),
    events: &mut Events,
    what: &str,
) -> Result<()> {
    let query = source.query();
    let partition = super::source_partition(query, spec.partition);
    let columns = scan_columns(spec, query, partition);
    let text = scan_sql(&source_table(source), partition, query, &columns, range)?;
    let mut stmt = conn.prepare(&text).map_err(|e| super::sql_error(e, what))?;
    let n_keys = spec.gb.key_columns.len();
    let numeric: Vec<bool> = (0..spec.inputs.len())
        .map(|i| {
            spec.features.iter().any(|f| {
                f.input == i
                    && matches!(
                        f.op,
                        Op::Sum | Op::Average | Op::Variance | Op::Skew | Op::Kurtosis
                    )
            })
        })
        .collect();
    let mut rows = stmt.query([]).map_err(|e| super::sql_error(e, what))?;
    while let Some(row) = rows.next().map_err(|e| super::sql_error(e, what))? {
        let get = |i: usize| {
            row.get::<_, Value>(i)
                .map_err(|e| super::sql_error(e, what))
        };
        let key: Vec<Value> = (0..n_keys).map(get).collect::<Result<_>>()?;
        let ts = match get(n_keys)? {
            Value::Null => continue,
            Value::Integer(t) => t,
            Value::Real(r) if r.fract() == 0.0 => r as i64,
            other => {
                return Err(EngineError::failed(format!(
                    "{what}.query.timeColumn: expected epoch milliseconds, got {}",
                    crate::warehouse::text(&other)
                )));
            }
        };
        let seen = match (input, get(n_keys + 1)?) {
            (Some(input), Value::Text(day)) => Day::parse(&day).map(|d| Seen::of(input, d)),
            _ => None,
        }
        .unwrap_or(Seen::ALWAYS);
        let k = events.key(key, spec.inputs.len());
        events.times[k].push(ts);
        events.seen[k].push(seen);
        for (i, input) in spec.inputs.iter().enumerate() {
            let value = get(n_keys + 2 + i)?;
            match value {
                Value::Null => {}
                Value::Text(ref t) if numeric[i] => {
                    return Err(EngineError::failed(format!(
                        "{what}: input column {input} has the text {t:?}, but its aggregation \
                         needs numbers"
                    )));
                }
                value => {
                    events.values[k][i].push((ts, value));
                    events.value_seen[k][i].push(seen);
                }
            }
        }
    }
    Ok(())
}

/// The graph input of a group-by's source `i`; `prefix` is the JSON path of
/// the group-by inside its config (empty for a group-by itself).
pub fn source_input<'n>(node: &'n Node, prefix: &str, i: usize) -> Result<&'n Input> {
    let origin = format!("{prefix}sources[{i}].");
    node.inputs
        .iter()
        .find(|input| input.origin.starts_with(&origin) && !input.origin.ends_with("mutationTable"))
        .ok_or_else(|| EngineError::failed(format!("no input for {origin}")))
}

/// The days of source `i` that targets in `range` read.
pub fn read_range(node: &Node, prefix: &str, i: usize, range: DayRange) -> Result<DayRange> {
    let input = source_input(node, prefix, i)?;
    let origin = Some(Day(0));
    Ok(DayRange::new(
        input.range(range.from, origin).from,
        input.range(range.to, origin).to,
    ))
}

/// Every key's events from the group-by's events sources, over what targets
/// in `range` read.
pub fn load_events(
    conn: &Connection,
    spec: &Spec,
    node: &Node,
    prefix: &str,
    range: DayRange,
) -> Result<Events> {
    let mut events = Events::default();
    for (i, source) in spec.gb.sources.iter().enumerate() {
        let read = read_range(node, prefix, i, range)?;
        let input = source_input(node, prefix, i)?;
        load(
            conn,
            spec,
            source,
            (read, Some(input)),
            &mut events,
            &format!("{prefix}sources[{i}]"),
        )?;
    }
    events.sort();
    Ok(events)
}

/// One entities snapshot partition, per key.
pub fn load_snapshot(conn: &Connection, spec: &Spec, day: Day, prefix: &str) -> Result<Events> {
    let mut events = Events::default();
    for (i, source) in spec.gb.sources.iter().enumerate() {
        let what = format!("{prefix}sources[{i}]");
        load(
            conn,
            spec,
            source,
            (DayRange::new(day, day), None),
            &mut events,
            &what,
        )?;
    }
    events.sort();
    Ok(events)
}

/// A group-by without aggregations: each key's selected row at one
/// snapshot partition (the first one when a key repeats).
pub fn load_plain(
    conn: &Connection,
    spec: &Spec,
    day: Day,
    prefix: &str,
) -> Result<(KeyIndex, Vec<Vec<Value>>)> {
    let mut index = KeyIndex::new();
    let mut rows = Vec::new();
    for (i, source) in spec.gb.sources.iter().enumerate() {
        let query = source.query();
        let columns: Vec<(String, String)> = spec
            .gb
            .key_columns
            .iter()
            .chain(&spec.plain)
            .map(|c| (c.clone(), column_expr(query, c)))
            .collect();
        let text = scan_sql(
            &source_table(source),
            super::source_partition(query, spec.partition),
            query,
            &columns,
            DayRange::new(day, day),
        )?;
        let found = select_rows(conn, &text, &[], &format!("{prefix}sources[{i}]"))?;
        let n_keys = spec.gb.key_columns.len();
        for row in found.rows {
            let key = key_string(&row[..n_keys]);
            if let std::collections::hash_map::Entry::Vacant(slot) = index.entry(key) {
                slot.insert(rows.len());
                rows.push(row);
            }
        }
    }
    Ok((index, rows))
}

fn group_by<'e>(engine: &'e Engine, node: &Node) -> Result<&'e GroupBy> {
    match &engine.repo.configs[node.config].body {
        Body::GroupBy(gb) => Ok(gb),
        _ => Err(EngineError::failed("not a group-by")),
    }
}

/// Rows of (keys, features, ds) for every key present on each day.
/// `prefix` is the JSON path of the group-by inside the node's config
/// (empty for a group-by itself, `labelPart.labels[0].groupBy.` for a label).
pub fn compute_days(
    engine: &Engine,
    node: &Node,
    spec: &Spec,
    range: DayRange,
    prefix: &str,
) -> Result<Rows> {
    compute(engine, node, spec, range, prefix).map(|(rows, _)| rows)
}

/// `compute_days`, with the events it read when the sources are events
/// (the upload builds its batch IRs from them).
fn compute(
    engine: &Engine,
    node: &Node,
    spec: &Spec,
    range: DayRange,
    prefix: &str,
) -> Result<(Rows, Option<Events>)> {
    let conn = engine.connect()?;
    let (out, read) = if !spec.plain.is_empty() || !spec.is_events() {
        (snapshot_rows(&conn, spec, node, range, prefix)?, None)
    } else {
        let events = load_events(&conn, spec, node, prefix, range)?;
        (event_rows(spec, &events, range), Some(events))
    };
    let mut columns: Vec<String> = spec.gb.key_columns.clone();
    let mut types: Vec<&'static str> = vec![""; columns.len()];
    for (name, kind) in spec.columns() {
        columns.push(name);
        types.push(kind);
    }
    columns.push(engine.warehouse.partition_column.clone());
    types.push("TEXT");
    let rows = Rows {
        columns,
        types,
        rows: out,
    };
    let mut keep = spec.gb.key_columns.clone();
    keep.push(engine.warehouse.partition_column.clone());
    let rows = super::derive(
        &conn,
        rows,
        &spec.gb.derivations,
        &keep,
        &format!("{prefix}derivations"),
    )?;
    Ok((rows, read))
}

/// A day's value in the partition column.
fn partition_value(day: Day) -> Value {
    Value::Text(day.to_string())
}

/// Rows of entities (or of a group-by without aggregations): each day reads
/// its own snapshot.
fn snapshot_rows(
    conn: &Connection,
    spec: &Spec,
    node: &Node,
    range: DayRange,
    prefix: &str,
) -> Result<Vec<Vec<Value>>> {
    let mut out = Vec::new();
    for day in range.days() {
        let snapshot = source_input(node, prefix, 0)?.range(day, None).to;
        if !spec.plain.is_empty() {
            let (_, rows) = load_plain(conn, spec, snapshot, prefix)?;
            out.extend(rows.into_iter().map(|mut row| {
                row.push(partition_value(day));
                row
            }));
            continue;
        }
        let events = load_snapshot(conn, spec, snapshot, prefix)?;
        for key in 0..events.keys.len() {
            let at = At {
                t: i64::MAX,
                day: snapshot,
            };
            if let Some(Some(values)) = spec.evaluate(&events, key, &[at]).pop() {
                let mut row = events.keys[key].clone();
                row.extend(values);
                row.push(partition_value(day));
                out.push(row);
            }
        }
    }
    Ok(out)
}

/// Rows of events, each day's as of its end, sorted by day, then key.
fn event_rows(spec: &Spec, events: &Events, range: DayRange) -> Vec<Vec<Value>> {
    let days: Vec<Day> = range.days().collect();
    let queries: Vec<At> = days.iter().map(|d| At::end_of(*d)).collect();
    let per_key: Vec<Vec<Vec<Value>>> = (0..events.keys.len())
        .into_par_iter()
        .map(|key| {
            spec.evaluate(events, key, &queries)
                .into_iter()
                .zip(&days)
                .filter_map(|(values, day)| {
                    let mut row = events.keys[key].clone();
                    row.extend(values?);
                    row.push(partition_value(*day));
                    Some(row)
                })
                .collect()
        })
        .collect();
    let mut out: Vec<Vec<Value>> = per_key.into_iter().flatten().collect();
    // Rows come out per key; the output goes by day, then key.
    let ds = out.first().map_or(0, Vec::len).saturating_sub(1);
    let keys = spec.gb.key_columns.len();
    out.par_sort_by(|a, b| {
        let by_key = a[..keys]
            .iter()
            .zip(&b[..keys])
            .map(|(x, y)| super::sql::compare_values(x, y))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal);
        super::sql::compare_values(&a[ds], &b[ds]).then(by_key)
    });
    out
}

pub fn backfill(engine: &Engine, node: &Node, range: DayRange) -> Result<String> {
    let gb = group_by(engine, node)?;
    let spec = Spec::new(gb, &engine.warehouse.partition_column)?;
    let rows = compute_days(engine, node, &spec, range, "")?;
    let output = node.output.as_deref().unwrap_or_default();
    let written = engine.write(output, &rows, range)?;
    Ok(format!(
        "{output}: {written} rows, {} features, over {range}",
        spec.columns().len()
    ))
}

pub fn upload(engine: &Engine, node: &Node, range: DayRange) -> Result<String> {
    let gb = group_by(engine, node)?;
    let spec = Spec::new(gb, &engine.warehouse.partition_column)?;
    let day = DayRange::new(range.to, range.to);
    let (mut rows, events) = compute(engine, node, &spec, day, "")?;
    if let (true, Some(events)) = (spec.serves_temporal(), events) {
        add_batch_irs(&spec, &events, batch_end(range.to), &mut rows);
    }
    let output = node.output.as_deref().unwrap_or_default();
    let written = engine.write(output, &rows, day)?;
    Ok(format!(
        "{output}: {written} keys as of the end of {}",
        range.to
    ))
}

/// When a batch ends: the start of the day after the upload's day
/// (airbnb/chronon `spark/src/main/scala/ai/chronon/spark/GroupByUpload.scala`,
/// `batchEndDate = partitionSpec.after(endDs)`).
pub fn batch_end(day: Day) -> i64 {
    (day.0 as i64 + 1) * DAY_MS
}

/// The upload column holding each key's batch IR (JSON), for group-bys
/// served TEMPORAL.
pub const BATCH_IR: &str = "batch_ir_json";

/// Adds each row's batch IR ending at `end` (see `ir`): one entry per
/// feature, and the row count over the longest window.
fn add_batch_irs(spec: &Spec, events: &Events, end: i64, rows: &mut Rows) {
    let keys = spec.gb.key_columns.len();
    let rows_feature = ir::rows_feature(&spec.features);
    for row in &mut rows.rows {
        let Some(&key) = events.index.get(&key_string(&row[..keys])) else {
            row.push(Value::Null);
            continue;
        };
        let mut features = serde_json::Map::new();
        for feature in &spec.features {
            let built = ir::FeatureIr::build(feature, &events.values[key][feature.input], end);
            features.insert(feature.name.clone(), built.to_json());
        }
        let times: Vec<(i64, Value)> = events.times[key]
            .iter()
            .map(|t| (*t, Value::Integer(1)))
            .collect();
        let built = ir::FeatureIr::build(&rows_feature, &times, end);
        features.insert(ir::ROWS.into(), built.to_json());
        let value = serde_json::json!({ "end": end, "features": features });
        row.push(Value::Text(value.to_string()));
    }
    rows.columns.push(BATCH_IR.into());
    rows.types.push("TEXT");
}

/// The KV dataset a group-by's batch values go to, as Chronon names it.
pub fn dataset(gb: &GroupBy) -> String {
    format!("{}_BATCH", sanitize(&gb.meta.name).to_uppercase())
}
