//! A group-by's nodes: its backfill and, when online, its upload, the KV
//! upload and streaming.

use serde_json::Value;

use crate::config::{Config, GroupBy};
use crate::graph::{Input, Lookback, Schedule, Start, Step};

use super::sources::source_inputs;
use super::{ACCURACY, Builder, Shape, pick};

impl Builder<'_> {
    pub(super) fn add_group_by(
        &mut self,
        index: usize,
        config: &Config,
        gb: &GroupBy,
        canonical: &Value,
    ) {
        let table = gb.meta.output_table();
        let inputs = source_inputs(gb, "", gb.meta.lag as u32, None);
        if let Some(start) = gb.backfill_start_date {
            let schedule = Schedule::Daily {
                start: Start::Day(start),
            };
            self.node(
                index,
                config,
                Shape::new(Step::GroupByBackfill, schedule)
                    .output(table.clone())
                    .inputs(inputs.clone()),
                canonical,
            );
        }
        if gb.meta.online {
            let upload_table = self.naming.upload(&table);
            self.node(
                index,
                config,
                // A TEMPORAL upload holds batch IRs, not values.
                Shape::new(Step::GroupByUpload, Schedule::Latest)
                    .output(upload_table.clone())
                    .inputs(inputs)
                    .resolved(ACCURACY, gb.effective_accuracy().name()),
                canonical,
            );
            let kv_input = Input::new(
                upload_table,
                Lookback::Days(0),
                0,
                None,
                "metaData.online".into(),
            );
            // The KV upload copies the upload table: its data depends on that
            // input and on the dataset name, not on the aggregations.
            let identity = pick(canonical, &["metaData"]);
            let kv = self.node(
                index,
                config,
                Shape::new(Step::UploadToKv, Schedule::Latest).inputs(vec![kv_input]),
                &identity,
            );
            if gb.has_streaming_source() {
                let mut after_kv = Input::new(
                    format!("upload-to-kv:{}", config.name),
                    Lookback::Days(0),
                    0,
                    None,
                    "metaData.online".into(),
                );
                after_kv.ordering_only = true;
                after_kv.producer = Some(kv);
                self.node(
                    index,
                    config,
                    Shape::new(Step::GroupByStreaming, Schedule::Unpartitioned)
                        .inputs(vec![after_kv])
                        .resolved(ACCURACY, gb.effective_accuracy().name()),
                    canonical,
                );
            }
        }
    }
}
