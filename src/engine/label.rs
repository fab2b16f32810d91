//! Label joins, as airbnb's Driver computes them
//! (airbnb/chronon `spark/src/main/scala/ai/chronon/spark/LabelJoin.scala`).
//!
//! For each `label_ds` L of the range: the left rows of the days
//! `[L - (leftStartOffset - 1), L - (leftEndOffset - 1)]` (lines 52-53),
//! reduced to their row identifier (`rowIds` plus the partition column, or
//! the label parts' left keys plus the partition column:
//! `LabelPartOps.rowIdentifier`), each label part's group-by as of L joined
//! on its keys with its columns prefixed by the part's full prefix
//! (`joinWithLeft`), `label_ds` = L, duplicates of a row identifier dropped
//! (`computeRange`). The rows go to `{output}_labels`, whose partitions
//! `label_ds = L` are replaced whole; `ds` stays a column.
//!
//! What the Driver refuses, the engine refuses with its message: an
//! entities left; a label with aggregations that is not an events group-by
//! with one aggregation over one window in days; a label without
//! aggregations that is not an entities group-by (lines 56-90). The views
//! the Driver creates over the label and feature tables (`_labeled`,
//! `_labeled_latest`) are not made: the embedded warehouse has no views.

use std::collections::{HashMap, HashSet};

use rusqlite::Connection;
use rusqlite::types::Value;

use super::groupby::{self, Spec};
use super::{Engine, EngineError, Result, column_expr, key_string, scan_sql, select_rows};
use crate::config::{Body, Join, LabelPart, Query, Source, TimeUnit};
use crate::exec::partitioning::LABEL_PARTITION_COLUMN;
use crate::graph::Node;
use crate::partition::{Day, DayRange};
use crate::warehouse::{Rows, quote};

pub fn label_join(engine: &Engine, node: &Node, range: DayRange) -> Result<String> {
    let Body::Join(join) = &engine.repo.configs[node.config].body else {
        return Err(EngineError::failed("not a join"));
    };
    let Some(label) = &join.label_part else {
        return Err(EngineError::failed("labelPart: the join has no label part"));
    };
    validate(join, label)?;
    let partition = engine.warehouse.partition_column.clone();
    let row_id = row_identifier(join, label, &partition);
    let conn = engine.connect()?;
    let left_input = node
        .inputs
        .first()
        .ok_or_else(|| EngineError::failed("no input for the left"))?;
    let left = LeftScan::new(join, &row_id, &partition);
    let parts = label_parts(label, &row_id, &partition)?;

    let mut label_columns: Option<Vec<String>> = None;
    let mut rows: Vec<Vec<Value>> = Vec::new();
    for label_ds in range.days() {
        // An empty window (before the left's cutoff) reads no rows, but the
        // labels are still computed, so every partition has the same columns.
        let mut joined = left.rows(&conn, left_input.range(label_ds, None))?;
        let mut day_columns = Vec::new();
        for part in &parts {
            day_columns.extend(part.join_day(engine, node, label_ds, &mut joined)?);
        }
        label_columns.get_or_insert(day_columns);
        keep_first_per_row(&mut rows, joined, row_id.len(), label_ds);
    }
    let mut columns = row_id;
    columns.extend(label_columns.unwrap_or_default());
    columns.push(LABEL_PARTITION_COLUMN.to_string());
    let output = node.output.as_deref().unwrap_or_default();
    let rows = Rows {
        types: vec![""; columns.len()],
        columns,
        rows,
    };
    let written = engine.write_by(output, Some(LABEL_PARTITION_COLUMN), &rows, range)?;
    Ok(format!(
        "{output}: {written} labelled rows for label_ds {range}"
    ))
}

/// How the left is read: its row identifier, from its source table.
struct LeftScan<'j> {
    table: String,
    partition: &'j str,
    query: &'j Query,
    select: Vec<(String, String)>,
}

impl<'j> LeftScan<'j> {
    fn new(join: &'j Join, row_id: &[String], partition: &'j str) -> LeftScan<'j> {
        let query = join.left.query();
        let source_partition = super::source_partition(query, partition);
        let select = row_id
            .iter()
            .map(|c| {
                let expr = if c == partition {
                    quote(source_partition)
                } else {
                    column_expr(query, c)
                };
                (c.clone(), expr)
            })
            .collect();
        LeftScan {
            table: groupby::source_table(&join.left),
            partition: source_partition,
            query,
            select,
        }
    }

    fn rows(&self, conn: &Connection, window: DayRange) -> Result<Vec<Vec<Value>>> {
        let mut text = scan_sql(
            &self.table,
            self.partition,
            self.query,
            &self.select,
            window,
        )?;
        text.push_str(&format!(" ORDER BY {}", quote(self.partition)));
        Ok(select_rows(conn, &text, &[], "left")?.rows)
    }
}

/// A label part, as every `label_ds` uses it: made once, as it does not
/// change with the day.
struct LabelColumns<'j> {
    /// Its path in the config, which its errors start with.
    path: String,
    spec: Spec<'j>,
    /// Where each of its keys sits in a left row (`usize::MAX` when the row
    /// identifier lacks it, so the key is null).
    key_at: Vec<usize>,
    /// What its columns are prefixed with (`JoinPart.fullPrefix`).
    prefix: String,
}

fn label_parts<'j>(
    label: &'j LabelPart,
    row_id: &[String],
    partition: &'j str,
) -> Result<Vec<LabelColumns<'j>>> {
    let mut parts = Vec::with_capacity(label.labels.len());
    for (i, part) in label.labels.iter().enumerate() {
        let path = format!("labelPart.labels[{i}].groupBy.");
        let spec = Spec::new(&part.group_by, partition).map_err(|e| within(&path, e))?;
        let key_at = part
            .mapped_keys()
            .iter()
            .map(|(_, left)| row_id.iter().position(|c| c == left).unwrap_or(usize::MAX))
            .collect();
        parts.push(LabelColumns {
            path,
            spec,
            key_at,
            prefix: part.label(),
        });
    }
    Ok(parts)
}

impl LabelColumns<'_> {
    /// Appends the part's labels as of `label_ds` to each left row (nulls
    /// for a key without labels) and returns their column names.
    fn join_day(
        &self,
        engine: &Engine,
        node: &Node,
        label_ds: Day,
        joined: &mut [Vec<Value>],
    ) -> Result<Vec<String>> {
        let (path, spec) = (&self.path, &self.spec);
        let day = DayRange::new(label_ds, label_ds);
        let labels =
            groupby::compute_days(engine, node, spec, day, path).map_err(|e| within(path, e))?;
        let n_keys = spec.gb.key_columns.len();
        let values = labels.columns.len() - n_keys - 1;
        let by_key: HashMap<String, &[Value]> = labels
            .rows
            .iter()
            .map(|r| (key_string(&r[..n_keys]), &r[n_keys..n_keys + values]))
            .collect();
        for row in joined {
            let key: Vec<Value> = self
                .key_at
                .iter()
                .map(|at| row.get(*at).cloned().unwrap_or(Value::Null))
                .collect();
            match by_key.get(&key_string(&key)) {
                Some(found) => row.extend(found.iter().cloned()),
                None => row.extend(std::iter::repeat_n(Value::Null, values)),
            }
        }
        Ok(labels.columns[n_keys..n_keys + values]
            .iter()
            .map(|c| format!("{}_{c}", self.prefix))
            .collect())
    }
}

/// Moves `joined` into `rows` with `label_ds` appended, keeping the first
/// row of each row identifier (`computeRange` drops the duplicates).
fn keep_first_per_row(
    rows: &mut Vec<Vec<Value>>,
    joined: Vec<Vec<Value>>,
    id_len: usize,
    label_ds: Day,
) {
    let mut seen = HashSet::new();
    for mut row in joined {
        if seen.insert(key_string(&row[..id_len])) {
            row.push(Value::Text(label_ds.to_string()));
            rows.push(row);
        }
    }
}

/// An error of a label part's group-by, at its path in the config.
fn within(prefix: &str, e: EngineError) -> EngineError {
    EngineError {
        message: format!("{prefix}{}", e.message),
        unsupported: e.unsupported,
    }
}

/// `LabelPartOps.rowIdentifier` (`Extensions.scala` lines 807-815).
fn row_identifier(join: &Join, label: &LabelPart, partition: &str) -> Vec<String> {
    let mut ids = if join.row_ids.is_empty() {
        label.left_keys()
    } else {
        join.row_ids.clone()
    };
    if !ids.iter().any(|c| c == partition) {
        ids.push(partition.to_string());
    }
    ids
}

/// The Driver's own checks (`LabelJoin.scala` lines 56-90), with its words.
fn validate(join: &Join, label: &LabelPart) -> Result<()> {
    if !join.left_is_events() {
        return Err(EngineError::failed(
            "left: join.left.dataModel needs to be Events for label join",
        ));
    }
    for (i, part) in label.labels.iter().enumerate() {
        let gb = &part.group_by;
        let at = format!("labelPart.labels[{i}].groupBy");
        let events = matches!(gb.sources.first(), Some(Source::Events { .. }));
        if gb.aggregations.is_empty() {
            if events {
                return Err(EngineError::failed(format!(
                    "{at}: to perform a none-aggregation label join, the groupBy.dataModel must be entities: {}",
                    gb.meta.name
                )));
            }
            continue;
        }
        if !events {
            return Err(EngineError::failed(format!(
                "{at}: groupBy.dataModel must be Events for label join with aggregations {}",
                gb.meta.name
            )));
        }
        if gb.aggregations.len() != 1 {
            return Err(EngineError::failed(format!(
                "{at}.aggregations: multiple aggregations not yet supported for label join {}",
                gb.meta.name
            )));
        }
        let windows = &gb.aggregations[0].windows;
        if windows.len() != 1 {
            return Err(EngineError::failed(format!(
                "{at}.aggregations[0].windows: multiple aggregation windows not yet supported for label join {}",
                gb.meta.name
            )));
        }
        if windows[0].unit != TimeUnit::Days {
            return Err(EngineError::failed(format!(
                "{at}.aggregations[0].windows[0]: {:?} window time unit not supported for label aggregations",
                windows[0].unit
            )));
        }
    }
    Ok(())
}
