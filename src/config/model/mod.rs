//! The typed subset of Chronon's Thrift model that scheduling needs; the
//! readers that build it from compiled JSON are in `read`.
//!
//! Only what decides steps, inputs, outputs and partitions is typed here. The
//! semantic content that decides *keys* is hashed from the raw JSON (see
//! `crate::hash`), so a field this model does not know still invalidates
//! correctly; what the model *resolves* from several fields (the effective
//! accuracy, a source's data model, the output table) is hashed too, from
//! the functions here, which the engine and the executors call as well.

use std::collections::BTreeMap;

use serde_json::Value;

use super::decode::ThriftEnum;
use crate::partition::{Day, DayFormat};

mod read;

pub use read::{read_group_by, read_join, read_staging_query};

macro_rules! thrift_enum {
    ($name:ident, $what:literal, { $($variant:ident = $code:literal),+ $(,)? }) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl ThriftEnum for $name {
            const WHAT: &'static str = $what;
            fn from_i64(value: i64) -> Option<Self> {
                match value { $($code => Some($name::$variant),)+ _ => None }
            }
        }
    };
}

thrift_enum!(Operation, "operation", {
    Min = 0, Max = 1, First = 2, Last = 3, UniqueCount = 4, ApproxUniqueCount = 5,
    Count = 6, Sum = 7, Average = 8, Variance = 9, Skew = 10, Kurtosis = 11,
    ApproxPercentile = 12, LastK = 13, FirstK = 14, TopK = 15, BottomK = 16,
    Histogram = 17, ApproxHistogramK = 18, BoundedUniqueCount = 19,
});

thrift_enum!(TimeUnit, "time unit", { Hours = 0, Days = 1 });

thrift_enum!(Accuracy, "accuracy", { Temporal = 0, Snapshot = 1 });

impl Accuracy {
    /// The name Chronon gives it, as keys and `explain` show it.
    pub fn name(self) -> &'static str {
        match self {
            Accuracy::Temporal => "temporal",
            Accuracy::Snapshot => "snapshot",
        }
    }
}

/// Whether a source is a stream of events or daily snapshots of entities
/// (Chronon's `DataModel`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataModel {
    Events,
    Entities,
}

impl DataModel {
    pub fn name(self) -> &'static str {
        match self {
            DataModel::Events => "events",
            DataModel::Entities => "entities",
        }
    }
}

/// A table reference; Chronon allows a fixed sub-partition after the table
/// name, as in `ns.t/hr=00:00`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableRef {
    pub table: String,
    pub sub_partition: Option<String>,
}

impl TableRef {
    pub fn parse(text: &str) -> TableRef {
        let (table, sub_partition) = TableRef::split(text);
        TableRef {
            table: table.to_string(),
            sub_partition: sub_partition.map(str::to_string),
        }
    }

    /// `text`'s table and its sub-partition, if it names one, without
    /// copying: `ns.t/hr=00:00` is `("ns.t", Some("hr=00:00"))`.
    pub fn split(text: &str) -> (&str, Option<&str>) {
        match text.split_once('/') {
            Some((table, rest)) => (table, Some(rest).filter(|r| !r.is_empty())),
            None => (text, None),
        }
    }

    /// The identity used for probing and in keys: the table, with its
    /// sub-partition when it has one.
    pub fn key(&self) -> String {
        match &self.sub_partition {
            Some(sub) => format!("{}/{}", self.table, sub),
            None => self.table.clone(),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Query {
    pub selects: BTreeMap<String, String>,
    pub wheres: Vec<String>,
    pub start_partition: Option<Day>,
    pub end_partition: Option<Day>,
    pub time_column: Option<String>,
    /// `partitionColumn` / `partitionFormat`: how the source is partitioned,
    /// when not as the job's default (the warehouse's, or the job
    /// environment's `PARTITION_COLUMN` / `PARTITION_FORMAT`).
    pub partition_column: Option<String>,
    pub partition_format: Option<DayFormat>,
}

impl Query {
    /// The column the source is partitioned by: `partitionColumn`, else
    /// `default` (the job's).
    pub fn partition_column_or<'q>(&'q self, default: &'q str) -> &'q str {
        self.partition_column.as_deref().unwrap_or(default)
    }
}

#[derive(Clone, Debug)]
pub enum Source {
    Events {
        table: TableRef,
        topic: Option<String>,
        is_cumulative: bool,
        query: Query,
    },
    Entities {
        snapshot_table: TableRef,
        mutation_table: Option<TableRef>,
        mutation_topic: Option<String>,
        query: Query,
    },
    Join {
        join: Box<Join>,
        query: Query,
    },
}

impl Source {
    pub fn query(&self) -> &Query {
        match self {
            Source::Events { query, .. }
            | Source::Entities { query, .. }
            | Source::Join { query, .. } => query,
        }
    }

    /// The source's data model as Chronon resolves it: a `joinSource` has
    /// its join's left's (airbnb/chronon `api/src/main/scala/ai/chronon/api/Extensions.scala`,
    /// `SourceOps.dataModel`). The one answer to "is this left events?":
    /// the graph's reads, the keys and the engine all ask here.
    pub fn data_model(&self) -> DataModel {
        match self {
            Source::Events { .. } => DataModel::Events,
            Source::Entities { .. } => DataModel::Entities,
            Source::Join { join, .. } => join.left.data_model(),
        }
    }

    pub fn has_topic(&self) -> bool {
        match self {
            Source::Events { topic, .. } => topic.is_some(),
            Source::Entities { mutation_topic, .. } => mutation_topic.is_some(),
            Source::Join { join, .. } => join.left.has_topic(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    pub length: i64,
    pub unit: TimeUnit,
}

impl Window {
    /// Whole days a window reaches back; hour windows round up.
    pub fn days(&self) -> i64 {
        match self.unit {
            TimeUnit::Days => self.length,
            TimeUnit::Hours => (self.length + 23) / 24,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Aggregation {
    pub input_column: String,
    pub operation: Operation,
    pub arg_map: BTreeMap<String, String>,
    pub windows: Vec<Window>,
    pub buckets: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Derivation {
    pub name: String,
    pub expression: String,
}

/// A `metaData.dependencies` entry: a JSON string `{name, spec, start, end}`
/// or a bare spec such as `ns.table/ds={{ ds }}`.
#[derive(Clone, Debug)]
pub struct Dependency {
    pub table: TableRef,
    pub start: Option<Day>,
    pub end: Option<Day>,
}

/// Zipline's `executionInfo.tableDependencies` entry.
#[derive(Clone, Debug)]
pub struct TableDependency {
    pub table: TableRef,
    pub start_offset_days: i64,
    pub end_offset_days: i64,
}

#[derive(Clone, Debug, Default)]
pub struct ExecutionInfo {
    pub step_days: Option<i64>,
    pub table_dependencies: Vec<TableDependency>,
    /// `executionInfo.outputTableInfo.table`: Zipline's explicit output
    /// table, which its `MetaData.outputTable` prefers to the derived name.
    pub output_table: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct MetaData {
    pub name: String,
    pub team: String,
    pub online: bool,
    pub output_namespace: Option<String>,
    pub dependencies: Vec<Dependency>,
    pub offline_schedule: Option<String>,
    pub lag: i64,
    pub check_consistency: bool,
    pub custom_json: Option<Value>,
    pub sample_percent: f64,
    pub execution_info: ExecutionInfo,
}

impl MetaData {
    /// `{outputNamespace}.{sanitize(name)}`, as Chronon names output tables,
    /// unless Zipline's `executionInfo.outputTableInfo.table` names it
    /// (sardine-ai/zipline-chronon `api/src/main/scala/ai/chronon/api/Extensions.scala`
    /// lines 166-174, `MetadataOps.outputTable`).
    pub fn output_table(&self) -> String {
        if let Some(table) = &self.execution_info.output_table {
            return table.clone();
        }
        format!(
            "{}.{}",
            self.output_namespace.as_deref().unwrap_or("default"),
            sanitize(&self.name)
        )
    }
}

/// Chronon's `sanitize`: every character outside `[A-Za-z0-9_]` becomes `_`.
pub fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[derive(Clone, Debug)]
pub struct GroupBy {
    pub meta: MetaData,
    pub sources: Vec<Source>,
    pub key_columns: Vec<String>,
    pub aggregations: Vec<Aggregation>,
    pub accuracy: Option<Accuracy>,
    pub backfill_start_date: Option<Day>,
    pub derivations: Vec<Derivation>,
}

impl GroupBy {
    /// Accuracy as Chronon resolves it when unset: TEMPORAL when any source
    /// has a topic, else SNAPSHOT.
    pub fn effective_accuracy(&self) -> Accuracy {
        self.accuracy
            .unwrap_or(if self.sources.iter().any(Source::has_topic) {
                Accuracy::Temporal
            } else {
                Accuracy::Snapshot
            })
    }

    /// The longest window in days, `None` when any aggregation is unwindowed
    /// (it reads all history), `Some(0)` when there are no aggregations.
    pub fn lookback_days(&self) -> Option<i64> {
        let mut longest = 0;
        for agg in &self.aggregations {
            if agg.windows.is_empty() {
                return None;
            }
            longest = agg.windows.iter().map(Window::days).fold(longest, i64::max);
        }
        Some(longest)
    }

    pub fn has_streaming_source(&self) -> bool {
        self.sources.iter().any(|s| match s {
            Source::Events { topic, .. } => topic.is_some(),
            Source::Entities { mutation_topic, .. } => mutation_topic.is_some(),
            Source::Join { .. } => false,
        })
    }
}

#[derive(Clone, Debug)]
pub struct JoinPart {
    pub group_by: GroupBy,
    pub key_mapping: BTreeMap<String, String>,
    pub prefix: Option<String>,
}

impl JoinPart {
    /// For each group-by key column, the left column that supplies it
    /// (`keyMapping` maps left to right).
    pub fn mapped_keys(&self) -> Vec<(String, String)> {
        self.group_by
            .key_columns
            .iter()
            .map(|key| {
                let left = self
                    .key_mapping
                    .iter()
                    .find(|(_, right)| *right == key)
                    .map_or(key.clone(), |(left, _)| left.clone());
                (key.clone(), left)
            })
            .collect()
    }

    /// `{prefix_}{sanitize(groupBy name)}`: the part's column prefix and the
    /// suffix of its table.
    pub fn label(&self) -> String {
        // `JoinPartOps.fullPrefix` (airbnb/chronon `api/src/main/scala/ai/chronon/api/Extensions.scala`
        // line 760): `(Option(prefix) ++ Some(cleanName)).mkString("_")`, so
        // a present but empty prefix still adds its separator. The Driver
        // matches `--selected-join-parts` against this name.
        match &self.prefix {
            Some(prefix) => format!("{prefix}_{}", sanitize(&self.group_by.meta.name)),
            None => sanitize(&self.group_by.meta.name),
        }
    }
}

#[derive(Clone, Debug)]
pub struct BootstrapPart {
    pub table: TableRef,
    pub query: Query,
}

#[derive(Clone, Debug)]
pub struct Join {
    pub meta: MetaData,
    pub left: Source,
    pub join_parts: Vec<JoinPart>,
    pub bootstrap_parts: Vec<BootstrapPart>,
    pub derivations: Vec<Derivation>,
    pub label_part: Option<LabelPart>,
    /// `rowIds`: the columns that identify a left row, when set.
    pub row_ids: Vec<String>,
}

/// A join's `labelPart` (airbnb/chronon `api/thrift/api.thrift` lines
/// 385-394): labels joined to the left rows of the days
/// `[label_ds - (leftStartOffset - 1), label_ds - (leftEndOffset - 1)]`
/// (`spark/.../LabelJoin.scala` lines 52-53).
#[derive(Clone, Debug)]
pub struct LabelPart {
    pub labels: Vec<JoinPart>,
    pub left_start_offset: i32,
    pub left_end_offset: i32,
    /// `labelPart.metaData.offlineSchedule`.
    pub offline_schedule: Option<String>,
}

impl LabelPart {
    /// The left days a label join at `label_ds` L rewrites, `[L -
    /// (leftStartOffset - 1), L - (leftEndOffset - 1)]`, as (days before the
    /// newest, days the newest is before L; negative reads ahead).
    pub fn left_window(&self) -> (u32, i32) {
        (
            (self.left_start_offset - self.left_end_offset) as u32,
            self.left_end_offset - 1,
        )
    }

    /// The left columns the label parts join on (`LabelPartOps.leftKeyCols`,
    /// `Extensions.scala` line 791), in first-seen order.
    pub fn left_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        for part in &self.labels {
            for (_, left) in part.mapped_keys() {
                if !keys.contains(&left) {
                    keys.push(left);
                }
            }
        }
        keys
    }
}

impl Join {
    /// Whether the left is events (`left.dataModel == Events`): it decides
    /// TEMPORAL or SNAPSHOT point-in-time joins, the snapshot shift of
    /// entity parts and the left table's columns.
    pub fn left_is_events(&self) -> bool {
        self.left.data_model() == DataModel::Events
    }

    pub fn scheduled(&self) -> bool {
        self.meta.offline_schedule.as_deref() != Some("@never")
    }
}

#[derive(Clone, Debug)]
pub struct StagingQuery {
    pub meta: MetaData,
    pub query: String,
    pub start_partition: Option<Day>,
}
