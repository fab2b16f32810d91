//! The readers of the model from compiled JSON. Each returns `None` only
//! when the object cannot be used at all; every problem found on the way is
//! recorded in the decoder.

use serde_json::Value;

use super::{
    Aggregation, BootstrapPart, Dependency, Derivation, ExecutionInfo, GroupBy, Join, JoinPart,
    LabelPart, MetaData, Query, Source, StagingQuery, TableDependency, TableRef, TimeUnit, Window,
};
use crate::config::decode::{Decoder, Obj, describe, index_path, join_path};
use crate::partition::DayFormat;

pub fn read_group_by(d: &mut Decoder, obj: &Obj) -> Option<GroupBy> {
    let meta = read_meta(d, obj);
    let sources = read_sources(d, obj, "sources");
    let key_columns = d.ident_list(obj, "keyColumns");
    let aggregations = d
        .obj_list(obj, "aggregations")
        .iter()
        .filter_map(|a| read_aggregation(d, a))
        .collect();
    let accuracy = d.opt_enum(obj, "accuracy");
    let backfill_start_date = d.opt_day(obj, "backfillStartDate");
    let derivations = read_derivations(d, obj);
    if sources.is_empty() && !obj.map.contains_key("sources") {
        d.problem(
            &join_path(&obj.path, "sources"),
            "missing required array of sources",
        );
    }
    Some(GroupBy {
        meta: meta?,
        sources,
        key_columns,
        aggregations,
        accuracy,
        backfill_start_date,
        derivations,
    })
}

fn read_join_parts(d: &mut Decoder, obj: &Obj, key: &str) -> Vec<JoinPart> {
    let mut join_parts = Vec::new();
    for part in d.obj_list(obj, key) {
        let group_by = d
            .req_obj(&part, "groupBy")
            .and_then(|g| read_group_by(d, &g));
        let key_mapping = d.str_map(&part, "keyMapping");
        let prefix = d.opt_str(&part, "prefix");
        if let Some(group_by) = group_by {
            join_parts.push(JoinPart {
                group_by,
                key_mapping,
                prefix,
            });
        }
    }
    join_parts
}

fn read_label_part(d: &mut Decoder, obj: &Obj) -> Option<LabelPart> {
    let labels = read_join_parts(d, obj, "labels");
    let mut offset = |key: &str| -> Option<i32> {
        let value = d.opt_i64(obj, key);
        if value.is_none() {
            d.problem(
                &join_path(&obj.path, key),
                "missing: a label join needs leftStartOffset and leftEndOffset (days before label_ds)",
            );
        }
        let value = value?;
        match i32::try_from(value) {
            Ok(v) if (-36_600..=36_600).contains(&v) => Some(v),
            _ => {
                d.problem(
                    &join_path(&obj.path, key),
                    format!("{value} days is out of range (at most 36600)"),
                );
                None
            }
        }
    };
    let (start, end) = (offset("leftStartOffset"), offset("leftEndOffset"));
    let (start, end) = (start?, end?);
    if start < end {
        // LabelJoin.scala line 39 asserts this before anything runs.
        d.problem(
            &join_path(&obj.path, "leftStartOffset"),
            format!("{start} must be at least leftEndOffset {end}: the window runs from label_ds - (leftStartOffset - 1) to label_ds - (leftEndOffset - 1)"),
        );
        return None;
    }
    if labels.is_empty() {
        d.problem(
            &join_path(&obj.path, "labels"),
            "expected at least one label part",
        );
        return None;
    }
    let offline_schedule = d
        .opt_obj(obj, "metaData")
        .and_then(|m| d.opt_str(&m, "offlineSchedule"));
    Some(LabelPart {
        labels,
        left_start_offset: start,
        left_end_offset: end,
        offline_schedule,
    })
}

pub fn read_join(d: &mut Decoder, obj: &Obj) -> Option<Join> {
    let meta = read_meta(d, obj);
    let left = d.req_obj(obj, "left").and_then(|l| read_source(d, &l));
    let join_parts = read_join_parts(d, obj, "joinParts");
    let label_part = d
        .opt_obj(obj, "labelPart")
        .and_then(|l| read_label_part(d, &l));
    let row_ids = d.str_list(obj, "rowIds");
    let bootstrap_parts = d
        .obj_list(obj, "bootstrapParts")
        .iter()
        .filter_map(|b| {
            let table = d.req_ident(b, "table").map(|t| TableRef::parse(&t));
            let query = d
                .opt_obj(b, "query")
                .map(|q| read_query(d, &q))
                .unwrap_or_default();
            Some(BootstrapPart {
                table: table?,
                query,
            })
        })
        .collect();
    let derivations = read_derivations(d, obj);
    Some(Join {
        meta: meta?,
        left: left?,
        join_parts,
        bootstrap_parts,
        derivations,
        label_part,
        row_ids,
    })
}

pub fn read_staging_query(d: &mut Decoder, obj: &Obj) -> Option<StagingQuery> {
    let meta = read_meta(d, obj);
    let query = d.req_str(obj, "query");
    let start_partition = d.opt_day(obj, "startPartition");
    Some(StagingQuery {
        meta: meta?,
        query: query?,
        start_partition,
    })
}

fn read_meta(d: &mut Decoder, parent: &Obj) -> Option<MetaData> {
    let obj = d.req_obj(parent, "metaData")?;
    let name = d.req_ident(&obj, "name");
    let team = d.opt_ident(&obj, "team");
    let online = d.opt_bool(&obj, "online");
    // Checked, though nothing reads them.
    d.opt_bool(&obj, "production");
    read_percent(d, &obj, "consistencySamplePercent");
    let output_namespace = d.opt_ident(&obj, "outputNamespace");
    let offline_schedule = d.opt_str(&obj, "offlineSchedule");
    let sample_percent = read_percent(d, &obj, "samplePercent");
    let dependencies = read_dependencies(d, &obj);
    let execution_info = d
        .opt_obj(&obj, "executionInfo")
        .map(|e| read_execution_info(d, &e))
        .unwrap_or_default();
    let consistency_check = d.opt_bool(&obj, "consistencyCheck");
    let custom = read_custom_json(d, &obj);

    Some(MetaData {
        name: name?,
        team: team.unwrap_or_default(),
        online,
        output_namespace,
        dependencies,
        offline_schedule,
        lag: custom.lag,
        check_consistency: consistency_check || custom.check_consistency,
        custom_json: custom.value,
        sample_percent,
        execution_info,
    })
}

/// A percentage, clamped to 0..=100 once its problem is recorded; 0 when
/// absent.
fn read_percent(d: &mut Decoder, obj: &Obj, key: &str) -> f64 {
    let value = d.opt_f64(obj, key).unwrap_or(0.0);
    if !(0.0..=100.0).contains(&value) {
        d.problem(
            &join_path(&obj.path, key),
            format!("expected a percentage from 0 to 100, got {value}"),
        );
    }
    value.clamp(0.0, 100.0)
}

/// `metaData.customJson`, a JSON object in a string, and the settings
/// scheduling reads from it.
#[derive(Default)]
struct CustomJson {
    value: Option<Value>,
    lag: i64,
    check_consistency: bool,
}

fn read_custom_json(d: &mut Decoder, obj: &Obj) -> CustomJson {
    let Some(text) = d.opt_str(obj, "customJson") else {
        return CustomJson::default();
    };
    let path = join_path(&obj.path, "customJson");
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(map)) => {
            let value = Value::Object(map);
            let mut lag = 0;
            if let Some(lag_value) = value.get("lag").filter(|v| !v.is_null()) {
                match lag_value.as_i64() {
                    Some(l) if l >= 0 => lag = l,
                    _ => d.problem(
                        &format!("{path}.lag"),
                        format!(
                            "expected a non-negative integer, got {}",
                            describe(lag_value)
                        ),
                    ),
                }
            }
            let check_consistency =
                matches!(value.get("check_consistency"), Some(Value::Bool(true)))
                    || value.get("check_consistency").and_then(Value::as_i64) == Some(1);
            CustomJson {
                value: Some(value),
                lag,
                check_consistency,
            }
        }
        Ok(other) => {
            d.problem(
                &path,
                format!(
                    "expected a JSON object in a string, got {}",
                    describe(&other)
                ),
            );
            CustomJson::default()
        }
        Err(e) => {
            d.problem(&path, format!("expected a JSON object in a string: {e}"));
            CustomJson::default()
        }
    }
}

fn read_dependencies(d: &mut Decoder, meta: &Obj) -> Vec<Dependency> {
    let path = join_path(&meta.path, "dependencies");
    let mut out = Vec::new();
    for (i, text) in d.str_list(meta, "dependencies").into_iter().enumerate() {
        let item_path = index_path(&path, i);
        let trimmed = text.trim_start();
        if !trimmed.starts_with('{') {
            out.push(Dependency {
                table: spec_table(&text),
                start: None,
                end: None,
            });
            continue;
        }
        let value: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                d.problem(
                    &item_path,
                    format!("expected a JSON object in a string: {e}"),
                );
                continue;
            }
        };
        let Some(obj) = d.as_obj(&value, item_path) else {
            continue;
        };
        let spec = d.req_str(&obj, "spec");
        let start = d.opt_day(&obj, "start");
        let end = d.opt_day(&obj, "end");
        if let Some(spec) = spec {
            out.push(Dependency {
                table: spec_table(&spec),
                start,
                end,
            });
        }
    }
    out
}

/// The table of a dependency spec such as `ns.t/ds={{ ds }}/hr=00:00`: the
/// part before the first `/`, with any fixed sub-partition after the date.
fn spec_table(spec: &str) -> TableRef {
    let mut parts = spec.split('/');
    let table = parts.next().unwrap_or_default().to_string();
    let rest: Vec<&str> = parts.filter(|p| !p.contains("{{")).collect();
    TableRef {
        table,
        sub_partition: if rest.is_empty() {
            None
        } else {
            Some(rest.join("/"))
        },
    }
}

fn read_execution_info(d: &mut Decoder, obj: &Obj) -> ExecutionInfo {
    let step_days = d.opt_i64(obj, "stepDays");
    if let Some(days) = step_days.filter(|days| *days < 1) {
        d.problem(
            &join_path(&obj.path, "stepDays"),
            format!("expected a positive number of days, got {days}"),
        );
    }
    let output_table = d
        .opt_obj(obj, "outputTableInfo")
        .and_then(|info| d.opt_ident(&info, "table"));
    let mut table_dependencies = Vec::new();
    for dep in d.obj_list(obj, "tableDependencies") {
        let info = d.req_obj(&dep, "tableInfo");
        let table = info.and_then(|i| d.req_ident(&i, "table"));
        let start = d
            .opt_obj(&dep, "startOffset")
            .and_then(|w| read_window(d, &w))
            .map(|w| w.days())
            .unwrap_or(0);
        let end = d
            .opt_obj(&dep, "endOffset")
            .and_then(|w| read_window(d, &w))
            .map(|w| w.days())
            .unwrap_or(0);
        if let Some(table) = table {
            table_dependencies.push(TableDependency {
                table: TableRef::parse(&table),
                start_offset_days: start,
                end_offset_days: end,
            });
        }
    }
    ExecutionInfo {
        step_days: step_days.filter(|d| *d >= 1),
        table_dependencies,
        output_table,
    }
}

fn read_sources(d: &mut Decoder, parent: &Obj, key: &str) -> Vec<Source> {
    d.obj_list(parent, key)
        .iter()
        .filter_map(|s| read_source(d, s))
        .collect()
}

const SOURCE_KINDS: [&str; 3] = ["events", "entities", "joinSource"];

fn read_source(d: &mut Decoder, obj: &Obj) -> Option<Source> {
    let present: Vec<&str> = SOURCE_KINDS
        .iter()
        .copied()
        .filter(|k| obj.map.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    let kind = match present.as_slice() {
        [one] => *one,
        [] => {
            d.problem(
                &obj.path,
                "expected exactly one of events, entities, joinSource; found none",
            );
            return None;
        }
        many => {
            d.problem(
                &obj.path,
                format!(
                    "expected exactly one of events, entities, joinSource; found {}",
                    many.join(", ")
                ),
            );
            return None;
        }
    };
    let inner = d.opt_obj(obj, kind)?;
    let query = d
        .opt_obj(&inner, "query")
        .map(|q| read_query(d, &q))
        .unwrap_or_else(default_query);
    match kind {
        "events" => {
            let table = d.req_ident(&inner, "table")?;
            Some(Source::Events {
                table: TableRef::parse(&table),
                topic: d.opt_str(&inner, "topic"),
                is_cumulative: d.opt_bool(&inner, "isCumulative"),
                query,
            })
        }
        "entities" => {
            let snapshot = d.req_ident(&inner, "snapshotTable")?;
            Some(Source::Entities {
                snapshot_table: TableRef::parse(&snapshot),
                mutation_table: d
                    .opt_ident(&inner, "mutationTable")
                    .map(|t| TableRef::parse(&t)),
                mutation_topic: d.opt_str(&inner, "mutationTopic"),
                query,
            })
        }
        _ => {
            let join = d.req_obj(&inner, "join").and_then(|j| read_join(d, &j))?;
            Some(Source::Join {
                join: Box::new(join),
                query,
            })
        }
    }
}

fn default_query() -> Query {
    Query::default()
}

fn read_query(d: &mut Decoder, obj: &Obj) -> Query {
    let partition_format = d.opt_str(obj, "partitionFormat").and_then(|text| {
        DayFormat::parse(&text)
            .map_err(|e| d.problem(&join_path(&obj.path, "partitionFormat"), e))
            .ok()
    });
    // Cutoffs are written in the source's own format.
    let format = partition_format.clone().unwrap_or_default();
    Query {
        selects: d.str_map(obj, "selects"),
        wheres: d.str_list(obj, "wheres"),
        start_partition: d.opt_formatted_day(obj, "startPartition", &format),
        end_partition: d.opt_formatted_day(obj, "endPartition", &format),
        time_column: d.opt_ident(obj, "timeColumn"),
        partition_column: d.opt_ident(obj, "partitionColumn"),
        partition_format,
    }
}

fn read_window(d: &mut Decoder, obj: &Obj) -> Option<Window> {
    let length = d.opt_i64(obj, "length");
    let unit = d.req_enum(obj, "timeUnit");
    if length.is_none() {
        d.problem(
            &join_path(&obj.path, "length"),
            "missing required window length",
        );
    }
    match (length?, unit?) {
        // A window of 0 covers nothing; beyond a century the millisecond
        // arithmetic of the windows overflows.
        (length, unit) if !(1..=max_window(unit)).contains(&length) => {
            d.problem(
                &join_path(&obj.path, "length"),
                format!(
                    "expected a window length from 1 to {} {unit:?}, got {length}",
                    max_window(unit)
                ),
            );
            None
        }
        (length, unit) => Some(Window { length, unit }),
    }
}

/// The longest window: 36,600 days, in the window's unit.
fn max_window(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Days => 36_600,
        TimeUnit::Hours => 36_600 * 24,
    }
}

fn read_aggregation(d: &mut Decoder, obj: &Obj) -> Option<Aggregation> {
    let input_column = d.req_str(obj, "inputColumn");
    let operation = d.req_enum(obj, "operation");
    let arg_map = d.str_map(obj, "argMap");
    if let Some(k) = arg_map.get("k") {
        // LAST_K, FIRST_K, TOP_K and BOTTOM_K keep k values.
        if !k
            .trim()
            .parse::<u32>()
            .is_ok_and(|k| (1..=1_000_000).contains(&k))
        {
            d.problem(
                &join_path(&join_path(&obj.path, "argMap"), "k"),
                format!("expected a whole number of values from 1 to 1000000, got {k:?}"),
            );
        }
    }
    let windows = d
        .obj_list(obj, "windows")
        .iter()
        .filter_map(|w| read_window(d, w))
        .collect();
    let buckets = d.str_list(obj, "buckets");
    Some(Aggregation {
        input_column: input_column?,
        operation: operation?,
        arg_map,
        windows,
        buckets,
    })
}

fn read_derivations(d: &mut Decoder, obj: &Obj) -> Vec<Derivation> {
    d.obj_list(obj, "derivations")
        .iter()
        .filter_map(|o| {
            Some(Derivation {
                name: d.req_ident(o, "name")?,
                expression: d.req_str(o, "expression")?,
            })
        })
        .collect()
}
