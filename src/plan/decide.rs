//! Deciding each target: fresh, or stale with its reason, or blocked, from
//! its evaluation (`key::evaluate`), its recorded build and its node's
//! state. The reason is true when it is made; where it is a key change, the
//! state's documents name the changed field or partition afterwards, for
//! all such targets at once (`Explainer`).

use std::sync::Arc;

use rayon::prelude::*;

use super::key;
use super::{Column, Entry, Evaluation, StaleReason, Status, TargetPlan, evaluate};
use crate::graph::Node;
use crate::partition::Day;
use crate::store::{NodeState, Recorded, day_column};

/// Every target of a node decided: the first `held` fresh (with their
/// recorded keys when loaded), the rest keyed and decided in parallel.
pub(super) fn decide_all(
    node: &Node,
    days: &[Option<Day>],
    held: usize,
    until: Day,
    inputs: &[Option<&Column>],
    state: &NodeState,
    output_column: Option<&Column>,
) -> Vec<Decision> {
    let fresh = |day: &Option<Day>| Decision {
        target: TargetPlan {
            day: *day,
            status: Status::Fresh,
            key: state.built.get(&day_column(*day)).map(|r| r.key),
        },
        detail: false,
    };
    let mut decided: Vec<Decision> = days[..held].iter().map(fresh).collect();
    decided.par_extend(days[held..].par_iter().map(|day| {
        let at = day.unwrap_or(until);
        let recorded = state.built.get(&day_column(*day));
        let evaluation = evaluate(node, *day, at, inputs);
        decide(node, *day, evaluation, recorded, state, output_column)
    }));
    decided
}

static NEVER_BUILT: std::sync::LazyLock<Arc<StaleReason>> =
    std::sync::LazyLock::new(|| Arc::new(StaleReason::NeverBuilt));
static FORCED: std::sync::LazyLock<Arc<StaleReason>> =
    std::sync::LazyLock::new(|| Arc::new(StaleReason::Forced));

/// What `decide` makes of a target: its plan with its reason, and whether
/// that reason is a key change the state's documents can detail (the
/// changed fields or input partitions, looked up for all such targets at
/// once: `Explainer`). The reason is true from the start; the detail only
/// names it more precisely.
pub struct Decision {
    pub target: TargetPlan,
    pub detail: bool,
}

/// Fresh, or stale with its reason, or blocked: the target's status from
/// its evaluation, its recorded build and the node's state.
pub fn decide(
    node: &Node,
    day: Option<Day>,
    evaluation: Evaluation,
    recorded: Option<&Recorded>,
    state: &NodeState,
    output: Option<&Column>,
) -> Decision {
    let column = day_column(day);
    let key = match &evaluation {
        Evaluation::Ready { key, .. } => Some(*key),
        Evaluation::Pending(_) => None,
    };
    let settled = |status: Status| Decision {
        target: TargetPlan { day, status, key },
        detail: false,
    };
    let stale = |reason: StaleReason| settled(Status::Stale(Arc::new(reason)));
    let changed = |reason: StaleReason| Decision {
        detail: true,
        ..stale(reason)
    };
    if let Evaluation::Pending(status @ Status::Blocked { .. }) = &evaluation {
        return settled(status.clone());
    }
    if state.forced.contains(&column) {
        return settled(Status::Stale(FORCED.clone()));
    }
    if let Some(run) = state.failed.get(&column) {
        return stale(StaleReason::PreviousRunFailed { run: *run });
    }
    let Some(recorded) = recorded else {
        return settled(Status::Stale(NEVER_BUILT.clone()));
    };
    if recorded.slice != node.slice_hash {
        return changed(StaleReason::ConfigChanged { fields: Vec::new() });
    }
    let (inputs, key) = match evaluation {
        Evaluation::Pending(status) => return settled(status),
        Evaluation::Ready { inputs, key } => (inputs, key),
    };
    if key != recorded.key {
        if key::inputs_hash(&inputs) == recorded.inputs {
            return stale(StaleReason::KeyVersionChanged);
        }
        return changed(StaleReason::KeyChanged);
    }
    if let (Some(table), Some(day), Some(output)) = (node.probed_table(), day, output) {
        match output.get(day) {
            Entry::Present(fp) if *fp == recorded.output => {}
            Entry::Present(fp) => {
                return stale(StaleReason::OutputModified {
                    table: table.to_string(),
                    partition: day,
                    old: recorded.output,
                    new: *fp,
                });
            }
            _ => {
                return stale(StaleReason::OutputMissing {
                    table: table.to_string(),
                    partition: day,
                });
            }
        }
    }
    settled(Status::Fresh)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Hash;
    use crate::plan::memo::tests::{JAN_1, backfill, column, graph};

    /// Each reason is true when `decide` makes it: a recorded build of
    /// another slice is a config change, one of other inputs a key change,
    /// both to be detailed; the same key is fresh; no record never built.
    #[test]
    fn a_decision_says_what_changed_before_any_detail_is_looked_up() {
        let dir = tempfile::tempdir().unwrap();
        let graph = graph(dir.path());
        let node = backfill(&graph);
        let day = Some(Day(JAN_1 + 3));
        let events = column("raw.events", 0..=9, None);
        let inputs = [Some(&events)];
        let evaluation = || evaluate(node, day, Day(JAN_1 + 3), &inputs);
        let Evaluation::Ready { inputs: read, key } = evaluation() else {
            panic!("day 3 reads present partitions");
        };
        let recorded = Recorded {
            key,
            slice: node.slice_hash,
            inputs: key::inputs_hash(&read),
            output: key,
            seq: 1,
        };
        let state = NodeState::default();
        let decided = |recorded: Option<&Recorded>| {
            let decision = decide(node, day, evaluation(), recorded, &state, None);
            let reason = match &decision.target.status {
                Status::Stale(reason) => reason.to_string(),
                other => format!("{other:?}"),
            };
            (reason, decision.detail)
        };
        assert_eq!(decided(Some(&recorded)), ("Fresh".into(), false));
        assert_eq!(decided(None), ("never-built".into(), false));
        let other_slice = Recorded {
            slice: Hash::of(b"another slice"),
            ..recorded
        };
        assert_eq!(decided(Some(&other_slice)), ("config-changed".into(), true));
        let other_inputs = Recorded {
            key: Hash::of(b"another key"),
            inputs: Hash::of(b"other inputs"),
            ..recorded
        };
        assert_eq!(decided(Some(&other_inputs)), ("key-changed".into(), true));
        let other_version = Recorded {
            key: Hash::of(b"another key"),
            ..recorded
        };
        assert_eq!(
            decided(Some(&other_version)),
            ("key-version-changed".into(), false)
        );
    }
}
