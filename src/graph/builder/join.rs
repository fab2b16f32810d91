//! A join's nodes: its left, one per join part and the final table (the
//! join's own days); the label join of its `labelPart`; and, when it is
//! online and samples requests, the consistency checks on what it served.

use serde_json::Value;

use crate::config::{Config, Join, JoinPart};
use crate::graph::{Input, Lookback, NodeId, Schedule, Start, Step, archive};

use super::sources::{left_inputs, primary_table, source_inputs};
use super::{ACCURACY, Builder, LEFT_DATA_MODEL, Shape, omit, pick};

/// What the nodes of one join's own days share.
struct Backfill<'a> {
    index: usize,
    config: &'a Config,
    join: &'a Join,
    canonical: &'a Value,
    table: String,
    left_table: String,
    lag: u32,
    start: Start,
}

impl Backfill<'_> {
    /// A node of the join's own days, keyed on the left's data model:
    /// every one of them reads or writes columns that depend on it.
    fn shape(&self, step: Step) -> Shape {
        let schedule = Schedule::Daily {
            start: self.start.clone(),
        };
        Shape::new(step, schedule).resolved(LEFT_DATA_MODEL, self.join.left.data_model().name())
    }
}

impl Builder<'_> {
    pub(super) fn add_join(
        &mut self,
        index: usize,
        config: &Config,
        join: &Join,
        canonical: &Value,
    ) {
        if !join.scheduled() {
            self.notes.push(format!(
                "{}: offlineSchedule is @never: no join backfill targets",
                config.path
            ));
        }
        let final_node = join
            .scheduled()
            .then(|| self.add_backfill(index, config, join, canonical));

        if let Some(label) = join
            .label_part
            .as_ref()
            .filter(|l| l.offline_schedule.as_deref() != Some("@never"))
        {
            self.add_label_join(index, config, join, label, canonical, final_node);
        }

        if join.meta.online && join.meta.sample_percent > 0.0 {
            self.add_consistency(index, config, join, canonical);
        }
    }

    /// The left, each part, then the final table that reads them; returns
    /// the final table's node, which the label join runs after.
    fn add_backfill(
        &mut self,
        index: usize,
        config: &Config,
        join: &Join,
        canonical: &Value,
    ) -> NodeId {
        let table = join.meta.output_table();
        let start = match join.left.query().start_partition {
            Some(day) => Start::Day(day),
            None => Start::FirstPartitionOf(primary_table(&join.left)),
        };
        let backfill = Backfill {
            index,
            config,
            join,
            canonical,
            left_table: self.naming.left(&table),
            table,
            lag: join.meta.lag as u32,
            start,
        };
        self.add_join_left(&backfill);
        let mut final_inputs = vec![reads_left(&backfill.left_table)];
        for (i, part) in join.join_parts.iter().enumerate() {
            final_inputs.push(self.add_join_part(&backfill, i, part));
        }
        final_inputs.extend(bootstrap_inputs(join, backfill.lag));
        self.add_join_final(&backfill, final_inputs)
    }

    fn add_join_left(&mut self, b: &Backfill) {
        let inputs = left_inputs(&b.join.left, b.lag);
        let slice = pick(b.canonical, &["metaData", "left", "rowIds"]);
        let id = self.node(
            b.index,
            b.config,
            b.shape(Step::JoinLeft)
                .output(b.left_table.clone())
                .inputs(inputs),
            &slice,
        );
        self.archive(id, b.canonical, archive::Table::Left);
    }

    /// Adds join part `i`; returns how the final table reads the part's table.
    fn add_join_part(&mut self, b: &Backfill, i: usize, part: &JoinPart) -> Input {
        let left_is_events = b.join.left_is_events();
        let part_table = self.naming.part(&b.table, part);
        let origin = format!("joinParts[{i}]");
        let mut inputs = vec![reads_left(&b.left_table)];
        inputs.extend(source_inputs(
            &part.group_by,
            &format!("{origin}.groupBy"),
            b.lag,
            Some(left_is_events),
        ));
        let mut slice = pick(b.canonical, &["metaData"]);
        if let (Value::Object(map), Some(part_json)) = (
            &mut slice,
            b.canonical.get("joinParts").and_then(|p| p.get(i)),
        ) {
            map.insert("joinPart".into(), part_json.clone());
        }
        let id = self.node(
            b.index,
            b.config,
            b.shape(Step::JoinPart)
                .part(part.label())
                .output(part_table.clone())
                .inputs(inputs)
                .resolved(ACCURACY, part.group_by.effective_accuracy().name()),
            &slice,
        );
        self.archive(id, b.canonical, archive::Table::Part(i));
        Input::new(part_table, Lookback::Days(0), 0, None, origin)
    }

    fn add_join_final(&mut self, b: &Backfill, inputs: Vec<Input>) -> NodeId {
        let id = self.node(
            b.index,
            b.config,
            b.shape(Step::JoinFinal)
                .output(b.table.clone())
                .inputs(inputs),
            // Labels are the label join's: not in the join's own table.
            &omit(b.canonical, &["labelPart"]),
        );
        self.archive(id, b.canonical, archive::Table::Final);
        id
    }

    /// Log flattening of the served requests and, with `check_consistency`,
    /// the comparison with offline values and its metrics.
    fn add_consistency(&mut self, index: usize, config: &Config, join: &Join, canonical: &Value) {
        // Flattening and metrics read only their input tables; the join's
        // features enter through the comparison table.
        let identity = pick(canonical, &["metaData"]);
        let table = join.meta.output_table();
        let log_table = self.settings.consistency.log_table.clone();
        let logged = self.naming.logged(&table);
        let schedule = || Schedule::Daily {
            start: Start::FirstPartitionOf(log_table.clone()),
        };
        let log_input = Input::new(
            log_table.clone(),
            Lookback::Days(0),
            0,
            None,
            "metaData.samplePercent".into(),
        );
        self.node(
            index,
            config,
            Shape::new(Step::LogFlattener, schedule())
                .output(logged.clone())
                .inputs(vec![log_input]),
            &identity,
        );
        if !join.meta.check_consistency {
            return;
        }
        let comparison = self.naming.comparison(&table);
        self.node(
            index,
            config,
            Shape::new(Step::BuildComparisonTable, schedule())
                .output(comparison.clone())
                .inputs(comparison_inputs(join, logged))
                .resolved(LEFT_DATA_MODEL, join.left.data_model().name())
                .resolved(ACCURACY, part_accuracies(join)),
            canonical,
        );
        let metrics_input = Input::new(
            comparison,
            Lookback::Days(0),
            0,
            None,
            "metaData.customJson.check_consistency".into(),
        );
        self.node(
            index,
            config,
            Shape::new(Step::ConsistencyMetricsCompute, schedule())
                .output(self.naming.consistency(&table))
                .inputs(vec![metrics_input]),
            &identity,
        );
    }
}

/// The left table at D, as the parts and the final table read it.
fn reads_left(left_table: &str) -> Input {
    Input::new(
        left_table.to_string(),
        Lookback::Days(0),
        0,
        None,
        "left".into(),
    )
}

/// Bootstrap tables are read when present: a missing one blocks nothing.
fn bootstrap_inputs(join: &Join, lag: u32) -> Vec<Input> {
    let mut inputs = Vec::new();
    for (i, bootstrap) in join.bootstrap_parts.iter().enumerate() {
        let mut input = Input::new(
            bootstrap.table.key(),
            Lookback::Days(0),
            lag,
            Some(&bootstrap.query),
            format!("bootstrapParts[{i}].table"),
        );
        input.required = false;
        inputs.push(input);
    }
    inputs
}

/// Each part's effective accuracy, in part order.
fn part_accuracies(join: &Join) -> Vec<&'static str> {
    join.join_parts
        .iter()
        .map(|part| part.group_by.effective_accuracy().name())
        .collect()
}

/// The logged requests, and what the offline values are recomputed from.
fn comparison_inputs(join: &Join, logged: String) -> Vec<Input> {
    let lag = join.meta.lag as u32;
    let mut inputs = vec![Input::new(
        logged,
        Lookback::Days(0),
        0,
        None,
        "metaData.customJson.check_consistency".into(),
    )];
    inputs.extend(left_inputs(&join.left, lag));
    // Offline values are recomputed as the join part computes
    // them: entity snapshots shift as they do there.
    let left_is_events = join.left_is_events();
    for (i, part) in join.join_parts.iter().enumerate() {
        inputs.extend(source_inputs(
            &part.group_by,
            &format!("joinParts[{i}].groupBy"),
            lag,
            Some(left_is_events),
        ));
    }
    inputs
}
