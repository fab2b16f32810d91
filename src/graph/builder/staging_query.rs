//! A staging query: one daily node reading what it declares.

use serde_json::Value;

use crate::config::{Config, StagingQuery};
use crate::graph::{Input, Lookback, Schedule, Start, Step};

use super::{Builder, Shape};

impl Builder<'_> {
    pub(super) fn add_staging_query(
        &mut self,
        index: usize,
        config: &Config,
        sq: &StagingQuery,
        canonical: &Value,
    ) {
        let mut inputs = Vec::new();
        for (i, dep) in sq.meta.dependencies.iter().enumerate() {
            let mut input = Input::new(
                dep.table.key(),
                Lookback::Days(0),
                sq.meta.lag as u32,
                None,
                format!("metaData.dependencies[{i}]"),
            );
            input.cutoff_from = dep.start;
            input.cutoff_to = dep.end;
            inputs.push(input);
        }
        for (i, dep) in sq.meta.execution_info.table_dependencies.iter().enumerate() {
            let back = (dep.start_offset_days - dep.end_offset_days).max(0) as u32;
            let shift = (sq.meta.lag + dep.end_offset_days).max(0) as u32;
            let origin = format!("metaData.executionInfo.tableDependencies[{i}]");
            inputs.push(Input::new(
                dep.table.key(),
                Lookback::Days(back),
                shift,
                None,
                origin,
            ));
        }
        if inputs.is_empty() {
            self.notes.push(format!(
                "{}: the staging query declares no inputs (metaData.dependencies or \
                 executionInfo.tableDependencies): a change to what its SQL reads cannot \
                 restate it",
                config.path
            ));
        }
        let start = match (sq.start_partition, inputs.first()) {
            (Some(day), _) => Start::Day(day),
            (None, Some(first)) => Start::FirstPartitionOf(first.table.to_string()),
            (None, None) => Start::Unknown,
        };
        let output = sq.meta.output_table();
        self.node(
            index,
            config,
            Shape::new(Step::StagingQuery, Schedule::Daily { start })
                .output(output)
                .inputs(inputs),
            canonical,
        );
    }
}
