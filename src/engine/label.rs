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

use rusqlite::types::Value;

use super::groupby::{self, Spec};
use super::{Engine, EngineError, Result, column_expr, key_string, scan_sql, select_rows};
use crate::config::{Body, Join, LabelPart, Source, TimeUnit};
use crate::exec::partitioning::LABEL_PARTITION_COLUMN;
use crate::graph::Node;
use crate::partition::DayRange;
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
    let query = join.left.query();
    let source_partition = super::source_partition(query, &partition);
    let select: Vec<(String, String)> = row_id
        .iter()
        .map(|c| {
            let expr = if *c == partition {
                quote(source_partition)
            } else {
                column_expr(query, c)
            };
            (c.clone(), expr)
        })
        .collect();
    let table = groupby::source_table(&join.left);
    // Per label part, what does not change with the day: its path in the
    // config, its spec, where its keys sit in a left row, its prefix.
    let mut parts = Vec::with_capacity(label.labels.len());
    for (i, part) in label.labels.iter().enumerate() {
        let prefix = format!("labelPart.labels[{i}].groupBy.");
        let spec = Spec::new(&part.group_by, &partition).map_err(|e| within(&prefix, e))?;
        let key_at: Vec<usize> = part
            .mapped_keys()
            .iter()
            .map(|(_, left)| row_id.iter().position(|c| c == left).unwrap_or(usize::MAX))
            .collect();
        parts.push((prefix, spec, key_at, part.label()));
    }

    let mut label_columns: Option<Vec<String>> = None;
    let mut rows: Vec<Vec<Value>> = Vec::new();
    for label_ds in range.days() {
        // An empty window (before the left's cutoff) reads no rows, but the
        // labels are still computed, so every partition has the same columns.
        let window = left_input.range(label_ds, None);
        let mut text = scan_sql(&table, source_partition, query, &select, window)?;
        text.push_str(&format!(" ORDER BY {}", quote(source_partition)));
        let mut joined: Vec<Vec<Value>> = select_rows(&conn, &text, &[], "left")?.rows;
        let mut day_columns = Vec::new();
        for (prefix, spec, key_at, full_prefix) in &parts {
            let day = DayRange::new(label_ds, label_ds);
            let labels = groupby::compute_days(engine, node, spec, day, prefix)
                .map_err(|e| within(prefix, e))?;
            let n_keys = spec.gb.key_columns.len();
            let values = labels.columns.len() - n_keys - 1;
            let by_key: HashMap<String, &[Value]> = labels
                .rows
                .iter()
                .map(|r| (key_string(&r[..n_keys]), &r[n_keys..n_keys + values]))
                .collect();
            day_columns.extend(
                labels.columns[n_keys..n_keys + values]
                    .iter()
                    .map(|c| format!("{full_prefix}_{c}")),
            );
            for row in &mut joined {
                let key: Vec<Value> = key_at
                    .iter()
                    .map(|at| row.get(*at).cloned().unwrap_or(Value::Null))
                    .collect();
                match by_key.get(&key_string(&key)) {
                    Some(found) => row.extend(found.iter().cloned()),
                    None => row.extend(std::iter::repeat_n(Value::Null, values)),
                }
            }
        }
        label_columns.get_or_insert(day_columns);
        let mut seen = HashSet::new();
        for mut row in joined {
            if seen.insert(key_string(&row[..row_id.len()])) {
                row.push(Value::Text(label_ds.to_string()));
                rows.push(row);
            }
        }
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
    if !matches!(join.left, Source::Events { .. }) {
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
