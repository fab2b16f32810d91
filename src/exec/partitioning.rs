//! How the Driver partitions each table: the partition column and format a
//! job writes with, and reads sources with unless their query says
//! otherwise. Probes list each table by its layout (`probe::Layouts`).
//!
//! - airbnb's run.py: the job environment's `PARTITION_COLUMN` and
//!   `PARTITION_FORMAT` (from teams.json, layered as in `env`), which its
//!   `spark_submit.sh` turns into `spark.chronon.partition.column` and
//!   `spark.chronon.partition.format` (airbnb/chronon
//!   `api/py/test/sample/scripts/spark_submit.sh` lines 56-57, defaults `ds`
//!   and `yyyy-MM-dd`). The operator's environment and `executor.env` win,
//!   as they do for every variable.
//! - Zipline: the Spark conf the compiler writes into the config,
//!   `metaData.executionInfo.conf` (`modeConfigs[mode]` when non-empty, else
//!   `common`), keys `spark.chronon.partition.column` and
//!   `spark.chronon.partition.format` (sardine-ai/zipline-chronon
//!   `python/src/ai/chronon/airflow_helpers.py` `extract_default_partition_column`;
//!   the Driver reads the Spark conf, not the environment).
//! - A source's `Query.partitionColumn` / `partitionFormat` override both
//!   for that source (`thrift/api.thrift` lines 24-30).
//!
//! Unset, a table has the warehouse's column (`warehouse.partition_column`)
//! and Chronon's default format. The local engine writes only that layout,
//! so `refuse_for_local` stops a run that would need another.

use std::collections::hash_map::Entry;

use serde_json::Value;

use crate::config::TableRef;
use crate::config::{Config, Layout, Repo};
use crate::exec::{Interface, env, interface};
use crate::graph::{Graph, Node, Step};
use crate::partition::DayFormat;
use crate::settings::{CHRONON_PARTITION_COLUMN, Settings, SettingsError};
use crate::table::{Layouts, TableLayout};

/// The column of a label join's output table besides the partition column
/// (airbnb/chronon `Constants.LabelPartitionColumn`).
pub const LABEL_PARTITION_COLUMN: &str = "label_ds";

/// The layout a node's job writes with, and where each half came from.
#[derive(Clone, Debug)]
pub struct JobLayout {
    pub layout: TableLayout,
    /// Where a column or format other than the default was set.
    pub origin: Vec<String>,
}

pub struct Partitioning {
    pub layouts: Layouts,
    /// Per node.
    pub jobs: Vec<JobLayout>,
    /// Tables read with two different layouts.
    pub notes: Vec<String>,
}

impl Partitioning {
    /// Every table's layout as the Driver would see it; a format that is
    /// not a daily one is an error naming the config and where it was set.
    pub fn of(
        repo: &Repo,
        settings: &Settings,
        graph: &Graph,
    ) -> Result<Partitioning, SettingsError> {
        let default = TableLayout::new(&settings.warehouse.partition_column);
        let mut layouts = Layouts {
            default: default.clone(),
            tables: Default::default(),
        };
        let mut jobs = Vec::with_capacity(graph.nodes.len());
        for node in &graph.nodes {
            let config = &repo.configs[node.config];
            jobs.push(job_layout(repo, settings, config, node, &default)?);
        }
        let mut notes = Vec::new();
        let mut claim = |table: &str, layout: TableLayout, who: String| {
            match layouts
            .tables
            .entry(TableRef::split(table).0.to_string())
        {
            Entry::Vacant(slot) => {
                slot.insert(layout);
            }
            Entry::Occupied(slot) if *slot.get() != layout => notes.push(format!(
                "{table} is read by {who} as partitioned by {} in {}, but elsewhere as by {} in {}; \
                 it is listed by the latter",
                layout.column,
                layout.format,
                slot.get().column,
                slot.get().format
            )),
            Entry::Occupied(_) => {}
        }
        };
        // What a node writes is laid out as its job writes it.
        for node in &graph.nodes {
            if let Some(output) = &node.output {
                let mut layout = jobs[node.id].layout.clone();
                if node.step == Step::LabelJoin {
                    layout.column = LABEL_PARTITION_COLUMN.to_string();
                }
                claim(output, layout, node.label());
            }
        }
        // A source is read with its query's layout, else the job's.
        for node in &graph.nodes {
            let job = &jobs[node.id].layout;
            for input in node.inputs.iter().filter(|i| i.producer.is_none()) {
                let layout = TableLayout {
                    column: input
                        .partition_column
                        .clone()
                        .unwrap_or_else(|| job.column.clone()),
                    format: input
                        .partition_format
                        .clone()
                        .unwrap_or_else(|| job.format.clone()),
                };
                claim(
                    &input.table,
                    layout,
                    format!("{} ({})", node.label(), input.origin),
                );
            }
        }
        Ok(Partitioning {
            layouts,
            jobs,
            notes,
        })
    }

    /// Puts each job's partition layout in its node's key when it is not
    /// Chronon's default (`ds`, `yyyy-MM-dd`): the layout comes from the
    /// job environment or the Spark conf, outside the config's fields, and
    /// decides which partitions the job writes and reads. Leaving the
    /// default out keeps the keys of repositories that never set one.
    pub fn resolve_in(&self, graph: &mut Graph) {
        let chronon = TableLayout::new(CHRONON_PARTITION_COLUMN);
        for (id, job) in self.jobs.iter().enumerate() {
            if job.layout.column != chronon.column {
                graph.resolve(id, "partitionColumn", job.layout.column.clone().into());
            }
            if job.layout.format != chronon.format {
                graph.resolve(id, "partitionFormat", job.layout.format.to_string().into());
            }
        }
    }

    /// Refuses, before anything runs, a local-engine job that would need a
    /// layout other than the warehouse's: the embedded warehouse keeps
    /// `yyyy-MM-dd` partitions in its own partition column.
    pub fn refuse_for_local<'n>(
        &self,
        repo: &Repo,
        nodes: impl IntoIterator<Item = &'n Node>,
    ) -> Result<(), SettingsError> {
        let default = &self.layouts.default;
        for node in nodes {
            let path = &repo.configs[node.config].path;
            let job = &self.jobs[node.id];
            if job.layout != *default {
                return Err(SettingsError(format!(
                    "{path}: {}: the job would write partitions {}={}, set by {}; the local \
                     engine writes {}={} only. Set warehouse.partition_column, or run it with \
                     the zipline executor",
                    node.label(),
                    job.layout.column,
                    job.layout.format,
                    job.origin.join(" and "),
                    default.column,
                    default.format,
                )));
            }
            for input in &node.inputs {
                if let Some(format) = input.partition_format.as_ref().filter(|f| !f.is_default()) {
                    return Err(SettingsError(format!(
                        "{path}: {}.partitionFormat: {format}: the local engine reads \
                         yyyy-MM-dd partitions only",
                        input.origin
                    )));
                }
            }
        }
        Ok(())
    }
}

fn job_layout(
    repo: &Repo,
    settings: &Settings,
    config: &Config,
    node: &Node,
    default: &TableLayout,
) -> Result<JobLayout, SettingsError> {
    let mode = interface::mode(node.step);
    let (column, format) = match repo.layout {
        Layout::Chronon => {
            let mut job_env = env::environment(Interface::Chronon, repo, config, mode);
            job_env.extend(settings.executor.env.clone());
            let from_env = |name: &str| {
                std::env::var(name)
                    .ok()
                    .map(|v| {
                        (
                            v,
                            format!("{name} in the environment chronon-build runs in"),
                        )
                    })
                    .or_else(|| {
                        job_env.get(name).map(|v| {
                            (
                                v.clone(),
                                format!("{name} in the job environment (teams.json, mode {mode})"),
                            )
                        })
                    })
            };
            (from_env("PARTITION_COLUMN"), from_env("PARTITION_FORMAT"))
        }
        Layout::Zipline => {
            let conf = env::execution_info_for_mode(config, env::Section::Conf, mode);
            let from_conf = |key: &str| {
                conf.and_then(|c| c.get(key))
                    .and_then(Value::as_str)
                    .map(|v| {
                        (
                            v.to_string(),
                            format!("{key} in metaData.executionInfo.conf (mode {mode})"),
                        )
                    })
            };
            (
                from_conf("spark.chronon.partition.column"),
                from_conf("spark.chronon.partition.format"),
            )
        }
    };
    let mut layout = default.clone();
    let mut origin = Vec::new();
    if let Some((value, from)) = column.filter(|(v, _)| !v.is_empty()) {
        if value != layout.column {
            origin.push(from);
        }
        layout.column = value;
    }
    if let Some((value, from)) = format.filter(|(v, _)| !v.is_empty()) {
        layout.format = DayFormat::parse(&value)
            .map_err(|e| SettingsError(format!("{}: {from}: {e}", config.path)))?;
        if !layout.format.is_default() {
            origin.push(from);
        }
    }
    Ok(JobLayout { layout, origin })
}
