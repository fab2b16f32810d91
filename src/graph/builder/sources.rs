//! What a source reads at D: a join's left, or a group-by's sources.

use crate::config::{Accuracy, GroupBy, Source};
use crate::graph::{Input, Lookback};

pub(super) fn primary_table(source: &Source) -> String {
    match source {
        Source::Events { table, .. } => table.key(),
        Source::Entities { snapshot_table, .. } => snapshot_table.key(),
        Source::Join { join, .. } => join.meta.output_table(),
    }
}

/// The left side of a join at D: the left table at D only.
pub(super) fn left_inputs(left: &Source, lag: u32) -> Vec<Input> {
    let (table, origin) = match left {
        Source::Events { table, .. } => (table.key(), "left.events.table"),
        Source::Entities { snapshot_table, .. } => {
            (snapshot_table.key(), "left.entities.snapshotTable")
        }
        Source::Join { join, .. } => (join.meta.output_table(), "left.joinSource.join"),
    };
    vec![Input::new(
        table,
        Lookback::Days(0),
        lag,
        Some(left.query()),
        origin.into(),
    )]
}

/// What a group-by reads at D. `left_is_events` is set when the group-by is a
/// join part: entity snapshots then shift one day for SNAPSHOT accuracy on an
/// events left (the left row at D sees values as of the end of D-1).
pub(super) fn source_inputs(
    gb: &GroupBy,
    base: &str,
    lag: u32,
    left_is_events: Option<bool>,
) -> Vec<Input> {
    let lookback = window_lookback(gb);
    let accuracy = gb.effective_accuracy();
    let mut inputs = Vec::new();
    for (i, source) in gb.sources.iter().enumerate() {
        let at = source_path(base, i);
        match source {
            Source::Events {
                table,
                is_cumulative,
                query,
                ..
            } => {
                let lookback = if *is_cumulative {
                    Lookback::Days(0)
                } else {
                    lookback
                };
                inputs.push(Input::new(
                    table.key(),
                    lookback,
                    lag,
                    Some(query),
                    format!("{at}.events.table"),
                ));
            }
            Source::Entities {
                snapshot_table,
                mutation_table,
                query,
                ..
            } => {
                let shift =
                    lag + u32::from(left_is_events == Some(true) && accuracy == Accuracy::Snapshot);
                inputs.push(Input::new(
                    snapshot_table.key(),
                    Lookback::Days(0),
                    shift,
                    Some(query),
                    format!("{at}.entities.snapshotTable"),
                ));
                if let Some(mutations) = mutation_table
                    .as_ref()
                    .filter(|_| accuracy == Accuracy::Temporal)
                {
                    inputs.push(Input::new(
                        mutations.key(),
                        Lookback::Days(0),
                        lag,
                        Some(query),
                        format!("{at}.entities.mutationTable"),
                    ));
                }
            }
            Source::Join { join, query } => {
                inputs.push(Input::new(
                    join.meta.output_table(),
                    lookback,
                    lag,
                    Some(query),
                    format!("{at}.joinSource.join"),
                ));
            }
        }
    }
    inputs
}

/// How far back the group-by's longest window reaches.
fn window_lookback(gb: &GroupBy) -> Lookback {
    match gb.lookback_days() {
        None => Lookback::AllHistory,
        Some(0) => Lookback::Days(0),
        // One extra day for the hop tail of sawtooth windows.
        Some(days) => Lookback::Days(days as u32 + 1),
    }
}

/// The JSON path of source `i`, under `base` unless the group-by is the
/// config itself.
fn source_path(base: &str, i: usize) -> String {
    if base.is_empty() {
        format!("sources[{i}]")
    } else {
        format!("{base}.sources[{i}]")
    }
}
