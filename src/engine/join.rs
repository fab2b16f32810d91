//! Joins, modular as Chronon runs them: the left rows (`{join}_bootstrap`), one
//! table per part with that part's features for each left row
//! (`{join}_{prefix_}{group_by}`), and the final table that puts them
//! together and applies the derivations.
//!
//! Point in time: a TEMPORAL part sees, for a left row at `ts`, the events
//! strictly before `ts`; a SNAPSHOT part sees the values as of the end of
//! the day before the left row's partition. Left rows carry a `row_id`
//! (their position in the partition), which the final table joins on.

use std::collections::HashMap;

use rayon::prelude::*;
use rusqlite::Connection;
use rusqlite::types::Value;

use super::aggregate::DAY_MS;
use super::groupby::{self, Spec};
use super::seen::At;
use super::{
    Engine, EngineError, Result, column_expr, key_string, scan_sql, select_rows, sql_table,
};
use crate::config::{Accuracy, Body, Join, JoinPart};
use crate::graph::Node;
use crate::partition::{Day, DayRange};
use crate::warehouse::{Rows, quote, quote_list};

pub const ROW_ID: &str = "row_id";

fn join_of<'e>(engine: &'e Engine, node: &Node) -> Result<&'e Join> {
    match &engine.repo.configs[node.config].body {
        Body::Join(join) => {
            if join.meta.lag != 0 {
                return Err(EngineError::unsupported("metaData.lag: lagged joins"));
            }
            if !join.bootstrap_parts.is_empty() {
                return Err(EngineError::unsupported(
                    "bootstrapParts: bootstrapped joins",
                ));
            }
            Ok(join)
        }
        _ => Err(EngineError::failed("not a join")),
    }
}

/// The left table's columns before `row_id` and the partition: the
/// selected columns, and `ts` for an events left.
pub fn left_columns(join: &Join) -> Result<Vec<String>> {
    let query = join.left.query();
    let mut columns: Vec<String> = query.selects.keys().cloned().collect();
    if columns.is_empty() {
        return Err(EngineError::failed(
            "left.query.selects: expected the columns the left side selects",
        ));
    }
    if join.left_is_events() && !columns.iter().any(|c| c == "ts") {
        columns.push("ts".into());
    }
    Ok(columns)
}

pub fn left(engine: &Engine, node: &Node, range: DayRange) -> Result<String> {
    let join = join_of(engine, node)?;
    let query = join.left.query();
    let columns = left_columns(join)?;
    let partition = engine.warehouse.partition_column.clone();
    let mut select: Vec<(String, String)> = columns
        .iter()
        .map(|c| {
            let expr = match (&query.time_column, c.as_str()) {
                (Some(time), "ts") if !query.selects.contains_key("ts") => {
                    super::sql::quote_default_namespace(time)
                }
                _ => column_expr(query, c),
            };
            (c.clone(), expr)
        })
        .collect();
    let source_partition = super::source_partition(query, &engine.warehouse.partition_column);
    select.push((partition.clone(), quote(source_partition)));
    let table = groupby::source_table(&join.left);
    let mut text = scan_sql(&table, source_partition, query, &select, range)?;
    text.push_str(&format!(
        " ORDER BY {}, {}",
        quote(&partition),
        quote_list(&columns)
    ));
    let conn = engine.connect()?;
    let found = select_rows(&conn, &text, &[], "left")?;
    let mut rows = Vec::with_capacity(found.rows.len());
    let mut last_day: Option<Value> = None;
    let mut next_id = 0i64;
    for mut row in found.rows {
        let day = row.pop().expect("the partition is selected");
        if last_day.as_ref() != Some(&day) {
            next_id = 0;
            last_day = Some(day.clone());
        }
        row.push(Value::Integer(next_id));
        row.push(day);
        next_id += 1;
        rows.push(row);
    }
    let mut out_columns = columns;
    out_columns.push(ROW_ID.into());
    out_columns.push(partition);
    let types = vec![""; out_columns.len()];
    let output = node.output.as_deref().unwrap_or_default();
    let rows = Rows {
        columns: out_columns,
        types,
        rows,
    };
    let written = engine.write(output, &rows, range)?;
    Ok(format!("{output}: {written} left rows over {range}"))
}

/// The left table's rows in `range`, with the named columns.
fn read_left(
    conn: &Connection,
    node: &Node,
    columns: &[String],
    partition: &str,
    range: DayRange,
) -> Result<Rows> {
    let left_table = &node.inputs[0].table;
    let text = format!(
        "SELECT {} FROM {} WHERE {} BETWEEN ?1 AND ?2 ORDER BY {}, {}",
        quote_list(columns),
        sql_table(left_table)?,
        quote(partition),
        quote(partition),
        quote(ROW_ID)
    );
    select_rows(
        conn,
        &text,
        &[&range.from.to_string(), &range.to.to_string()],
        "the left table",
    )
}

fn find_part<'j>(join: &'j Join, node: &Node) -> Result<(usize, &'j JoinPart)> {
    join.join_parts
        .iter()
        .enumerate()
        .find(|(_, p)| Some(p.label()) == node.part)
        .ok_or_else(|| EngineError::failed(format!("no join part {:?}", node.part)))
}

pub fn part(engine: &Engine, node: &Node, range: DayRange) -> Result<String> {
    let join = join_of(engine, node)?;
    let (index, part) = find_part(join, node)?;
    let prefix = format!("joinParts[{index}].groupBy.");
    let spec =
        Spec::new(&part.group_by, &engine.warehouse.partition_column).map_err(|e| EngineError {
            message: format!("{prefix}{}", e.message),
            unsupported: e.unsupported,
        })?;
    let partition = engine.warehouse.partition_column.clone();
    let keys = part.mapped_keys();
    let mut columns: Vec<String> = vec![ROW_ID.into(), partition.clone()];
    if join.left_is_events() {
        columns.push("ts".into());
    }
    for (_, left) in &keys {
        if !columns.contains(left) {
            columns.push(left.clone());
        }
    }
    let conn = engine.connect()?;
    let left = read_left(&conn, node, &columns, &partition, range)?;
    let at = |name: &str| columns.iter().position(|c| c == name).expect("selected");
    let key_at: Vec<usize> = keys.iter().map(|(_, l)| at(l)).collect();
    let day_of = |row: &[Value]| -> Result<Day> {
        match &row[1] {
            Value::Text(t) => Day::parse(t),
            _ => None,
        }
        .ok_or_else(|| EngineError::failed("the left table has a bad partition value"))
    };
    let features = spec.columns();
    let temporal =
        join.left_is_events() && part.group_by.effective_accuracy() == Accuracy::Temporal;
    let asks: Vec<Ask> = left
        .rows
        .iter()
        .map(|row| {
            Ok(Ask {
                key: key_at.iter().map(|&i| row[i].clone()).collect(),
                ts: match row.get(2) {
                    Some(Value::Integer(ts)) if join.left_is_events() => Some(*ts),
                    _ => None,
                },
                day: day_of(row)?,
            })
        })
        .collect::<Result<_>>()?;
    let values = part_values(&conn, &spec, node, &prefix, &asks, temporal, range)?;

    let label = part.label();
    let mut out_columns = columns.clone();
    let mut types = vec![""; out_columns.len()];
    for (name, kind) in &features {
        out_columns.push(format!("{label}_{name}"));
        types.push(kind);
    }
    let rows: Vec<Vec<Value>> = left
        .rows
        .into_iter()
        .zip(values)
        .map(|(mut row, v)| {
            row.extend(v);
            row
        })
        .collect();
    let rows = Rows {
        columns: out_columns,
        types,
        rows,
    };
    let output = node.output.as_deref().unwrap_or_default();
    let written = engine.write(output, &rows, range)?;
    Ok(format!(
        "{output}: {} features for {written} left rows over {range}",
        features.len()
    ))
}

/// One left row's question to a join part: its key, time and partition.
pub struct Ask {
    pub key: Vec<Value>,
    pub ts: Option<i64>,
    pub day: Day,
}

/// A part's features for each ask: TEMPORAL asks see the events before
/// their `ts` in the partitions their day reads, SNAPSHOT asks the values
/// as of the end of the previous day, as that day's backfill has them;
/// entities read the snapshot the node's input names for the ask's day.
/// `range` spans the asks' days.
pub fn part_values(
    conn: &Connection,
    spec: &Spec,
    node: &Node,
    prefix: &str,
    asks: &[Ask],
    temporal: bool,
    range: DayRange,
) -> Result<Vec<Vec<Value>>> {
    let empty = vec![Value::Null; spec.columns().len()];
    let mut values: Vec<Vec<Value>> = vec![empty; asks.len()];
    if spec.is_events() && spec.plain.is_empty() {
        let events = groupby::load_events(conn, spec, node, prefix, range)?;
        // Per key, the asks and their times.
        let mut by_key: HashMap<usize, Vec<(i64, Day, usize)>> = HashMap::new();
        for (r, ask) in asks.iter().enumerate() {
            let Some(&k) = events.index.get(&key_string(&ask.key)) else {
                continue;
            };
            let (t, day) = match (temporal, ask.ts) {
                (true, Some(ts)) => (ts, ask.day),
                (true, None) => continue,
                (false, _) => (ask.day.0 as i64 * DAY_MS, ask.day.minus(1)),
            };
            by_key.entry(k).or_default().push((t, day, r));
        }
        let answers: Vec<(usize, Vec<Value>)> = by_key
            .into_par_iter()
            .flat_map_iter(|(k, mut asks)| {
                asks.sort_unstable();
                let at: Vec<At> = asks.iter().map(|&(t, day, _)| At { t, day }).collect();
                let found = spec.evaluate(&events, k, &at);
                asks.into_iter()
                    .zip(found)
                    .filter_map(|((_, _, r), v)| Some((r, v?)))
                    .collect::<Vec<_>>()
            })
            .collect();
        for (r, v) in answers {
            values[r] = v;
        }
        return Ok(values);
    }
    let input = groupby::source_input(node, prefix, 0)?;
    let mut by_day: HashMap<Day, Vec<usize>> = HashMap::new();
    for (r, ask) in asks.iter().enumerate() {
        by_day.entry(ask.day).or_default().push(r);
    }
    for (day, rows) in by_day {
        let snapshot = input.range(day, None).to;
        if !spec.plain.is_empty() {
            let (index, found) = groupby::load_plain(conn, spec, snapshot, prefix)?;
            let n_keys = spec.gb.key_columns.len();
            for r in rows {
                if let Some(&i) = index.get(&key_string(&asks[r].key)) {
                    values[r] = found[i][n_keys..].to_vec();
                }
            }
            continue;
        }
        let events = groupby::load_snapshot(conn, spec, snapshot, prefix)?;
        for r in rows {
            let at = At {
                t: i64::MAX,
                day: snapshot,
            };
            if let Some(&k) = events.index.get(&key_string(&asks[r].key))
                && let Some(Some(v)) = spec.evaluate(&events, k, &[at]).pop()
            {
                values[r] = v;
            }
        }
    }
    Ok(values)
}

pub fn final_(engine: &Engine, node: &Node, range: DayRange) -> Result<String> {
    let join = join_of(engine, node)?;
    let partition = engine.warehouse.partition_column.clone();
    let mut columns = left_columns(join)?;
    columns.push(ROW_ID.into());
    columns.push(partition.clone());
    let conn = engine.connect()?;
    let left = read_left(&conn, node, &columns, &partition, range)?;
    let mut table = FinalTable::new(columns, left.rows);
    for (i, part) in join.join_parts.iter().enumerate() {
        let (name, found) = read_part(&conn, node, i, &partition, range)?;
        table.add_part(name, &found, &part.label(), &partition)?;
    }
    let rows = table.without_row_ids();
    let mut keep = left_columns(join)?;
    keep.push(partition);
    let rows = super::derive(&conn, rows, &join.derivations, &keep, "derivations")?;
    let output = node.output.as_deref().unwrap_or_default();
    let written = engine.write(output, &rows, range)?;
    Ok(format!("{output}: {written} rows over {range}"))
}

/// The rows of the table of `joinParts[i]` in `range`, and the table's name.
fn read_part<'n>(
    conn: &Connection,
    node: &'n Node,
    i: usize,
    partition: &str,
    range: DayRange,
) -> Result<(&'n str, Rows)> {
    let table = &node
        .inputs
        .iter()
        .find(|input| input.origin == format!("joinParts[{i}]"))
        .ok_or_else(|| EngineError::failed(format!("no input for joinParts[{i}]")))?
        .table;
    let found = select_rows(
        conn,
        &format!(
            "SELECT * FROM {} WHERE {} BETWEEN ?1 AND ?2",
            sql_table(table)?,
            quote(partition)
        ),
        &[&range.from.to_string(), &range.to.to_string()],
        &format!("joinParts[{i}]"),
    )?;
    Ok((table, found))
}

/// The final table as it is put together: the left rows (their columns
/// end with `row_id` and the partition), each part's features appended.
struct FinalTable {
    columns: Vec<String>,
    rows: Vec<Vec<Value>>,
    n_left: usize,
    /// Each left row's position, by its partition and row id.
    position: HashMap<(String, i64), usize>,
}

impl FinalTable {
    fn new(columns: Vec<String>, rows: Vec<Vec<Value>>) -> FinalTable {
        let n_left = columns.len();
        let position = rows
            .iter()
            .enumerate()
            .filter_map(|(i, row)| match (&row[n_left - 1], &row[n_left - 2]) {
                (Value::Text(day), Value::Integer(id)) => Some(((day.clone(), *id), i)),
                _ => None,
            })
            .collect();
        FinalTable {
            columns,
            rows,
            n_left,
            position,
        }
    }

    /// Appends the `{label}_` columns of a part's table (`found`, read from
    /// `table`) to the left rows they match; nulls for the rows without.
    fn add_part(&mut self, table: &str, found: &Rows, label: &str, partition: &str) -> Result<()> {
        let feature_at: Vec<usize> = (0..found.columns.len())
            .filter(|&c| found.columns[c].starts_with(&format!("{label}_")))
            .collect();
        let id_at = found.columns.iter().position(|c| c == ROW_ID);
        let day_at = found.columns.iter().position(|c| *c == partition);
        let (Some(id_at), Some(day_at)) = (id_at, day_at) else {
            return Err(EngineError::failed(format!(
                "{table}: no {ROW_ID} or {partition} column"
            )));
        };
        for &c in &feature_at {
            self.columns.push(found.columns[c].clone());
        }
        let width = self.columns.len();
        for row in &found.rows {
            let (Value::Text(day), Value::Integer(id)) = (&row[day_at], &row[id_at]) else {
                continue;
            };
            if let Some(&r) = self.position.get(&(day.clone(), *id)) {
                self.rows[r].extend(feature_at.iter().map(|&c| row[c].clone()));
            }
        }
        for row in &mut self.rows {
            row.resize(width, Value::Null);
        }
        Ok(())
    }

    /// The final table keeps the left columns, not the row ids.
    fn without_row_ids(mut self) -> Rows {
        let id = self.n_left - 2;
        self.columns.remove(id);
        for row in &mut self.rows {
            row.remove(id);
        }
        Rows {
            types: vec![""; self.columns.len()],
            columns: self.columns,
            rows: self.rows,
        }
    }
}
