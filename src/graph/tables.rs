//! Table names exactly as the real Drivers write them: one home for every
//! derived table name, so that the planner probes, and the local engine
//! writes, the tables a Spark job would.
//!
//! Sources (read on the repositories' default branches):
//! - airbnb/chronon `api/src/main/scala/ai/chronon/api/Extensions.scala`:
//!   `MetadataOps` lines 99-120 (`outputTable`, `outputLabelTable` `_labels`,
//!   `loggedTable` `_logged`, `bootstrapTable` `_bootstrap`,
//!   `comparisonTable` `_comparison`, `consistencyTable` `_consistency`,
//!   `uploadTable` `_upload`), `JoinPartOps.fullPrefix` line 760 and
//!   `JoinOps.partOutputTable` line 887.
//! - sardine-ai/zipline-chronon (Zipline's chronon) `api/src/main/scala/ai/chronon/api/Extensions.scala`:
//!   `MetadataOps` lines 166-198: the same names, but `uploadTable` is
//!   `{outputTable}__upload` (two underscores, since #994) and `outputTable`
//!   prefers `executionInfo.outputTableInfo.table`; `partOutputTable` line 953.
//! - Both `spark/src/main/scala/ai/chronon/spark/JoinBase.scala`: the left
//!   side of a modular join (`join-left`, `computeLeft`) is written to
//!   `bootstrapTable`, which `--use-cached-left` part jobs read.
//! - airbnb/chronon `spark/src/main/scala/ai/chronon/spark/GroupByUpload.scala`
//!   lines 267-275: the upload table is written with `saveUnPartitioned`
//!   (a `ds` column, no partition), so a day's presence cannot be read from
//!   its partitions; Zipline's (line 506) is partitioned by the partition
//!   column.
//! - airbnb/chronon `spark/src/main/scala/ai/chronon/spark/LabelJoin.scala`:
//!   labels go to `outputLabelTable`, partitioned by (`label_ds`, `ds`).

use crate::config::{JoinPart, Layout};

/// Which Driver writes the tables: decided by the repository layout, since
/// a Zipline-compiled repository runs on Zipline's Driver and a `teams.json`
/// repository on airbnb's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Naming {
    pub layout: Layout,
}

impl Naming {
    pub fn new(layout: Layout) -> Naming {
        Naming { layout }
    }

    /// The left side of a join (`join-left`): `{output}_bootstrap`.
    pub fn left(&self, join_output: &str) -> String {
        format!("{join_output}_bootstrap")
    }

    /// A group-by's upload table: `{output}__upload` on Zipline's Driver,
    /// `{output}_upload` on airbnb's.
    pub fn upload(&self, group_by_output: &str) -> String {
        match self.layout {
            Layout::Zipline => format!("{group_by_output}__upload"),
            Layout::Chronon => format!("{group_by_output}_upload"),
        }
    }

    /// Whether the upload table is partitioned by day (Zipline) or written
    /// whole with a `ds` column (airbnb), so unprobeable per day.
    pub fn upload_is_partitioned(&self) -> bool {
        self.layout == Layout::Zipline
    }

    /// A join part's table: `{output}_{prefix_}{group_by}`.
    pub fn part(&self, join_output: &str, part: &JoinPart) -> String {
        format!("{join_output}_{}", part.label())
    }

    /// A label join's output (`outputLabelTable`): `{output}_labels`,
    /// partitioned by (`label_ds`, `ds`).
    pub fn labels(&self, join_output: &str) -> String {
        format!("{join_output}_labels")
    }

    pub fn logged(&self, join_output: &str) -> String {
        format!("{join_output}_logged")
    }

    pub fn comparison(&self, join_output: &str) -> String {
        format!("{join_output}_comparison")
    }

    pub fn consistency(&self, join_output: &str) -> String {
        format!("{join_output}_consistency")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_tables_follow_the_driver_of_the_layout() {
        // Zipline: `def uploadTable: String = s"${outputTable}__upload"`;
        // airbnb: `def uploadTable = s"${outputTable}_upload"`.
        assert_eq!(Naming::new(Layout::Zipline).upload("ns.g"), "ns.g__upload");
        assert_eq!(Naming::new(Layout::Chronon).upload("ns.g"), "ns.g_upload");
        // Both: `def bootstrapTable = s"${outputTable}_bootstrap"`.
        for layout in [Layout::Zipline, Layout::Chronon] {
            assert_eq!(Naming::new(layout).left("ns.j"), "ns.j_bootstrap");
            // airbnb: `def outputLabelTable = s"${outputNamespace}.${cleanName}_labels"`.
            assert_eq!(Naming::new(layout).labels("ns.j"), "ns.j_labels");
        }
    }
}
