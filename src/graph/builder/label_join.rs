//! The label join of a join's `labelPart`.

use serde_json::Value;

use crate::config::{Config, Join, LabelPart};
use crate::graph::{Input, Lookback, NodeId, Schedule, Start, Step};

use super::sources::{left_inputs, primary_table, source_inputs};
use super::{Builder, LEFT_DATA_MODEL, Shape, pick};

impl Builder<'_> {
    /// A label join (airbnb/chronon `LabelJoin.scala`): one target per
    /// `label_ds` L, which rewrites the partitions `label_ds = L` of
    /// `{output}_labels` for the left days `labelPart.left_window()`. It reads
    /// the left source over those days and each label's group-by as of L
    /// (`GroupBy.from(..., PartitionRange(labelDS, labelDS))`, lines 236-241),
    /// and runs after the join's own days, whose table its views read.
    pub(super) fn add_label_join(
        &mut self,
        index: usize,
        config: &Config,
        join: &Join,
        label: &LabelPart,
        canonical: &Value,
        join_final: Option<NodeId>,
    ) {
        let table = join.meta.output_table();
        let (lookback, shift) = label.left_window();
        let mut left = left_inputs(&join.left, 0);
        for input in &mut left {
            input.lookback = Lookback::Days(lookback);
            input.shift = shift;
        }
        let mut inputs = left;
        for (i, part) in label.labels.iter().enumerate() {
            inputs.extend(source_inputs(
                &part.group_by,
                &format!("labelPart.labels[{i}].groupBy"),
                0,
                None,
            ));
        }
        if let Some(join_final) = join_final {
            let mut features = Input::new(
                table.clone(),
                Lookback::Days(lookback),
                0,
                None,
                "metaData.outputTable".into(),
            );
            features.shift = shift;
            features.required = false;
            features.ordering_only = true;
            features.producer = Some(join_final);
            inputs.push(features);
        }
        // The first label_ds whose window reaches the left's first day.
        let start = match join.left.query().start_partition {
            Some(day) => Start::Day(day.plus(shift)),
            None => Start::FirstPartitionPlus {
                table: primary_table(&join.left),
                days: shift,
            },
        };
        let slice = pick(canonical, &["metaData", "left", "labelPart", "rowIds"]);
        self.node(
            index,
            config,
            Shape::new(Step::LabelJoin, Schedule::Daily { start })
                .output(self.naming.labels(&table))
                .inputs(inputs)
                .resolved(LEFT_DATA_MODEL, join.left.data_model().name()),
            &slice,
        );
    }
}
