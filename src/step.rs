use std::fmt;

use serde::{Deserialize, Serialize};

use crate::hash::SliceScope;

/// The kinds of work a config turns into; see DESIGN.md section 2.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    StagingQuery,
    GroupByBackfill,
    GroupByUpload,
    UploadToKv,
    GroupByStreaming,
    JoinLeft,
    JoinPart,
    JoinFinal,
    LabelJoin,
    MetadataUpload,
    LogFlattener,
    BuildComparisonTable,
    ConsistencyMetricsCompute,
}

impl Step {
    pub const ALL: [Step; 13] = [
        Step::StagingQuery,
        Step::GroupByBackfill,
        Step::GroupByUpload,
        Step::UploadToKv,
        Step::GroupByStreaming,
        Step::JoinLeft,
        Step::JoinPart,
        Step::JoinFinal,
        Step::LabelJoin,
        Step::MetadataUpload,
        Step::LogFlattener,
        Step::BuildComparisonTable,
        Step::ConsistencyMetricsCompute,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::StagingQuery => "staging-query",
            Step::GroupByBackfill => "group-by-backfill",
            Step::GroupByUpload => "group-by-upload",
            Step::UploadToKv => "upload-to-kv",
            Step::GroupByStreaming => "group-by-streaming",
            Step::JoinLeft => "join-left",
            Step::JoinPart => "join-part",
            Step::JoinFinal => "join-final",
            Step::LabelJoin => "label-join",
            Step::MetadataUpload => "metadata-upload",
            Step::LogFlattener => "log-flattener",
            Step::BuildComparisonTable => "build-comparison-table",
            Step::ConsistencyMetricsCompute => "consistency-metrics-compute",
        }
    }

    pub fn parse(text: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|s| s.name() == text)
    }

    pub fn scope(self) -> SliceScope {
        match self {
            Step::GroupByStreaming => SliceScope::Serving,
            Step::MetadataUpload => SliceScope::Everything,
            _ => SliceScope::Batch,
        }
    }

    /// Steps whose result cannot be probed in the warehouse; their recorded
    /// output is their key.
    pub fn has_table_output(self) -> bool {
        !matches!(
            self,
            Step::UploadToKv | Step::GroupByStreaming | Step::MetadataUpload
        )
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `step:config` or `step:config#part`: how a node is named on the command
/// line and in the state.
pub fn node_label(step: Step, name: &str, part: Option<&str>) -> String {
    match part {
        Some(part) => format!("{step}:{name}#{part}"),
        None => format!("{step}:{name}"),
    }
}
