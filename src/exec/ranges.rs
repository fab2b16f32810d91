//! How many days one job covers, and where that changes what a day sees.
//!
//! A backfill job covers a range of days: the config's
//! `executionInfo.stepDays`, else `executor.step_days`. The local engine
//! computes each day of a range from the partitions that day's target
//! reads (`engine::seen`), so batching never changes a result. Chronon's
//! Spark backfill does not: a job over `[S, E]` scans the events of
//! `[S - 1 - window, E]` once and computes every day by `ts` alone
//! (airbnb/chronon `spark/src/main/scala/ai/chronon/spark/GroupBy.scala`
//! lines 621-662 and 704, `snapshotEventsBase` lines 166-184; join parts in
//! `JoinBase.scala` lines 319-326; sardine-ai/zipline-chronon
//! `spark/src/main/scala/ai/chronon/spark/GroupBy.scala` lines 741-788 and
//! `batch/JoinPartJob.scala` lines 209-239). There, day D of a job also
//! counts events that landed in partitions after D up to E (late data, or a
//! producer in another time zone): more than the plan's read set, which is
//! the partitions up to D. The plan cannot key a day on a job range that a
//! run decides later, so it says where this can happen (`multi_day_note`).

use crate::config::{Body, Config, DataModel, GroupBy, Repo};
use crate::graph::{Graph, Node};
use crate::settings::{ExecutorKind, JoinMode, Settings};
use crate::step::Step;

/// How many days one job of `node` may cover: the config's `stepDays`, else
/// the executor's; one for steps that take no range.
pub fn step_days(repo: &Repo, settings: &Settings, node: &Node) -> usize {
    if !super::takes_range(node.step) {
        return 1;
    }
    repo.configs[node.config]
        .meta()
        .execution_info
        .step_days
        .filter(|d| *d > 0)
        .map(|d| d as usize)
        .unwrap_or(settings.executor.step_days as usize)
}

/// With a real CLI, the configs whose multi-day jobs compute a day from
/// events of later partitions in the same job, as one note; `None` with the
/// local engine, or when every such job covers one day.
pub fn multi_day_note(repo: &Repo, settings: &Settings, graph: &Graph) -> Option<String> {
    if settings.executor.kind == ExecutorKind::Local {
        return None;
    }
    let mut configs: Vec<(&str, usize)> = graph
        .nodes
        .iter()
        .map(|node| (node, step_days(repo, settings, node)))
        .filter(|(node, days)| {
            *days > 1 && reads_events_by_time(&repo.configs[node.config], node, settings)
        })
        .map(|(node, days)| (repo.configs[node.config].name.as_str(), days))
        .collect();
    configs.sort_unstable();
    configs.dedup();
    let ((first, days), rest) = configs.split_first()?;
    let others = match rest.len() {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    Some(format!(
        "{first} ({days} days a job){others}: these backfill jobs cover several days \
         (executionInfo.stepDays, else executor.step_days), and Chronon's Spark backfill computes \
         each day of a job from the events of the job's whole range, by ts: a day can count \
         events that landed in a later partition of the same job (late data, another time \
         zone), which its plan's read set (partitions up to the day) does not show. Set \
         executionInfo.stepDays to 1 where partitions must not depend on how days were batched"
    ))
}

/// Whether the node's job aggregates an events source by time, so that a
/// day of its range depends on where in the range an event landed.
fn reads_events_by_time(config: &Config, node: &Node, settings: &Settings) -> bool {
    let events = |group_by: &GroupBy| {
        group_by
            .sources
            .iter()
            .any(|s| s.data_model() == DataModel::Events)
    };
    match (&config.body, node.step) {
        (Body::GroupBy(group_by), Step::GroupByBackfill) => events(group_by),
        (Body::Join(join), Step::JoinPart) => join
            .join_parts
            .iter()
            .filter(|part| node.part.as_deref() == Some(part.label().as_str()))
            .any(|part| events(&part.group_by)),
        // A whole join's one backfill computes its parts too.
        (Body::Join(join), Step::JoinFinal) => {
            settings.executor.joins == JoinMode::Whole
                && join.join_parts.iter().any(|part| events(&part.group_by))
        }
        _ => false,
    }
}
