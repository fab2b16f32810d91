//! Node memos: how a plan skips the per-target work of nodes that nothing
//! touched since they were last planned fresh.
//!
//! A node's targets are decided from its slice, its wanted days, how each
//! input reads (lookback, shift, cutoffs), the columns of its inputs over
//! what its targets read, its output column over its days, and its recorded
//! state. The memo of a run of days is a digest of all but the last. When a
//! plan finds a node's targets fresh up to a day (all of them, or the first
//! ones), `run` stores the memo of those days with that last day
//! (`StateStore::record_memos`); `adopt` stores the memo of each node it
//! adopts whole, made from the columns its keys were made from
//! (`LivePlan::memo`). A later plan that computes the same memo for the
//! same days knows, without evaluating a target or loading it from the
//! state, that each is still fresh (`Basis::held`): all of its targets, or, when
//! its `--until` moved on, those up to the memo's last day, the rest being
//! evaluated one by one. Anything that could change a decision changes the
//! memo: a different key version or slice, another day, a partition added,
//! removed or changed anywhere in the span the targets read (range digests
//! are O(1) on a column), a pending input, an output partition changed. The
//! recorded state is not digested: every write of a node's targets up to a
//! memo's last day deletes the memo (`StateStore::record_built_after`), and
//! a failure or forced mark means no memo.

use crate::graph::Node;
use crate::hash::{Hash, KEY_VERSION};
use crate::partition::Day;
use crate::store::{Memo, NodeState, day_column};

use super::Column;

/// Bumped whenever what a memo covers changes, so older memos never match.
const MEMO_VERSION: u32 = 3;

/// What a node's targets are decided from, besides their days and its
/// recorded state: the node, the plan's `--until`, its input columns (in the
/// order of its inputs) and its output column as probed.
#[derive(Clone, Copy)]
pub struct Basis<'a> {
    pub node: &'a Node,
    pub until: Day,
    pub inputs: &'a [Option<&'a Column>],
    pub output: Option<&'a Column>,
}

impl Basis<'_> {
    /// The memo of the node planned for `days`; `None` when its targets
    /// cannot all be fresh from the state alone (a failure or forced mark,
    /// or a pending input).
    pub fn memo(&self, days: &[Option<Day>], state: &NodeState) -> Option<Memo> {
        let Basis {
            node,
            until,
            inputs,
            output,
        } = *self;
        let last = day_column(*days.last()?);
        if !state.failed.is_empty() || !state.forced.is_empty() {
            return None;
        }
        let mut hasher = begin(node, until, days);
        for (input, column) in node.inputs.iter().zip(inputs) {
            let Some(column) = column else {
                hasher.update(b"-");
                continue;
            };
            hasher.update(column.table.as_bytes());
            hasher.update(&[0]);
            let first = column.first_present();
            hasher.update(&first.map_or(i32::MIN, |d| d.0).to_le_bytes());
            let mut span: Option<(Day, Day)> = None;
            for day in days {
                let range = input.range(day.unwrap_or(until), first);
                if range.is_empty() {
                    continue;
                }
                span = Some(match span {
                    None => (range.from, range.to),
                    Some((from, to)) => (from.min(range.from), to.max(range.to)),
                });
            }
            let Some((from, to)) = span else {
                hasher.update(b"empty");
                continue;
            };
            let span = crate::partition::DayRange::new(from, to);
            if column.first_pending(span).is_some() {
                return None;
            }
            let (present, digest) = column.digest(span);
            hasher.update(&from.0.to_le_bytes());
            hasher.update(&to.0.to_le_bytes());
            hasher.update(&present.to_le_bytes());
            hasher.update(&digest.0);
        }
        match (
            super::probed_column(node, output),
            days.first(),
            days.last(),
        ) {
            (Some(column), Some(Some(first)), Some(Some(last))) => {
                let span = crate::partition::DayRange::new(*first, *last);
                let (present, digest) = column.digest(span);
                hasher.update(&present.to_le_bytes());
                hasher.update(&digest.0);
            }
            _ => {
                hasher.update(b"no output");
            }
        }
        Some(Memo {
            digest: Hash(*hasher.finalize().as_bytes()),
            last,
            versions: None,
        })
    }

    /// How many of the node's first targets the stored memo vouches for:
    /// those up to its last day (all of `days`, or the first ones when the
    /// days run past it: the `--until` moved on) if it is the memo of those
    /// days, else none.
    pub fn held(&self, days: &[Option<Day>], state: &NodeState) -> usize {
        let Some(stored) = state.memo else {
            return 0;
        };
        // Days are in order: the first ones up to the stored memo's last day.
        let upto = days.partition_point(|d| day_column(*d) <= stored.last);
        if upto == 0 || day_column(days[upto - 1]) != stored.last {
            return 0;
        }
        // By its digest alone: a memo stored with its digest by versions
        // (`unchanged`) holds by its columns too once `--until` moved on.
        match self.memo(&days[..upto], state) {
            Some(memo) if memo.digest == stored.digest && memo.last == stored.last => upto,
            _ => 0,
        }
    }
}

/// What every memo of a node digests first: the versions of memos and
/// keys, the node's step and slice, its days (and `until` when a target is
/// unpartitioned: a daily one reads at its day, so a memo of days holds
/// whatever `--until` is), and how each input reads, which with the days
/// fixes every target's range.
fn begin(node: &Node, until: Day, days: &[Option<Day>]) -> blake3::Hasher {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&MEMO_VERSION.to_le_bytes());
    hasher.update(&KEY_VERSION.to_le_bytes());
    hasher.update(node.step.name().as_bytes());
    hasher.update(&node.slice_hash.0);
    if days.contains(&None) {
        hasher.update(&until.0.to_le_bytes());
    }
    for day in days {
        hasher.update(&day_column(*day).to_le_bytes());
    }
    hasher.update(&serde_json::to_vec(&node.inputs).expect("serializing to memory cannot fail"));
    hasher
}

/// A node's memo by versions (`plan::unchanged`), for all its `days`: what
/// `Basis::memo` digests, with each table the node reads or probes as its
/// version in `versions` instead of its partitions, and each input another
/// node writes as that node's own memo by versions (`producers`, by node
/// id). `None` when a version is unknown.
///
/// An equal digest means equal columns wherever the memo looks: a table's
/// version changes with any of its partitions, and a producer's recorded
/// outputs are its probed output's partitions or its keys, which its own
/// digest covers.
pub fn by_versions(
    node: &Node,
    until: Day,
    days: &[Option<Day>],
    versions: &crate::probe::Versions,
    producers: &[Option<Hash>],
) -> Option<Hash> {
    let mut hasher = begin(node, until, days);
    hasher.update(b"by versions");
    for input in &node.inputs {
        if input.ordering_only {
            hasher.update(b"-");
            continue;
        }
        match input.producer {
            Some(producer) => {
                hasher.update(b"node");
                hasher.update(&producers[producer]?.0);
            }
            None => {
                hasher.update(b"table");
                hasher.update(input.table.as_bytes());
                hasher.update(&[0]);
                hasher.update(&versions.get(&*input.table)?.0);
            }
        }
    }
    match node.probed_table() {
        Some(table) => hasher.update(&versions.get(table)?.0),
        None => hasher.update(b"no output"),
    };
    Some(Hash(*hasher.finalize().as_bytes()))
}

#[cfg(test)]
pub(super) mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::Repo;
    use crate::graph::Graph;
    use crate::probe::Partitions;
    use crate::settings::Settings;

    pub(in crate::plan) const JAN_1: i32 = 20_089; // 2025-01-01

    /// A group-by of a 2-day window over `raw.events`.
    pub(in crate::plan) fn graph(dir: &std::path::Path) -> Graph {
        let gb = json!({
            "metaData": {"name": "t.gb.v1", "team": "t", "outputNamespace": "out"},
            "sources": [{"events": {"table": "raw.events", "query": {
                "selects": {"k": "k", "v": "v"}, "timeColumn": "ts"}}}],
            "keyColumns": ["k"],
            "aggregations": [{"inputColumn": "v", "operation": 7,
                "windows": [{"length": 2, "timeUnit": 1}]}],
            "backfillStartDate": "2025-01-01"
        });
        let path = dir.join("production/group_bys/t/gb.v1");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, gb.to_string()).unwrap();
        std::fs::write(dir.join("teams.json"), r#"{"t": {"namespace": "out"}}"#).unwrap();
        let (repo, settings) = (Repo::load(dir).unwrap(), Settings::load(dir).unwrap());
        Graph::build(&repo, &settings).unwrap()
    }

    /// The group-by's backfill node of `graph`.
    pub(in crate::plan) fn backfill(graph: &Graph) -> &crate::graph::Node {
        graph
            .nodes
            .iter()
            .find(|n| n.label() == "group-by-backfill:t.gb.v1")
            .unwrap()
    }

    pub(in crate::plan) fn column(
        table: &str,
        days: std::ops::RangeInclusive<i32>,
        changed: Option<i32>,
    ) -> Column {
        let partitions: Partitions = days
            .map(|d| {
                let content = match Some(d) == changed {
                    true => format!("{table} {d} rewritten"),
                    false => format!("{table} {d}"),
                };
                (Day(JAN_1 + d), Hash::of(content.as_bytes()))
            })
            .collect();
        Column::from_partitions(table, &partitions)
    }

    #[test]
    fn a_memo_up_to_a_day_holds_for_those_days_while_nothing_they_read_changes() {
        let dir = tempfile::tempdir().unwrap();
        let graph = graph(dir.path());
        let node = backfill(&graph);
        let days: Vec<Option<Day>> = (0..10).map(|d| Some(Day(JAN_1 + d))).collect();
        let until = Day(JAN_1 + 9);
        let events = column("raw.events", 0..=9, None);
        let output = column("out.t_gb_v1", 0..=9, None);
        let held_with = |state: &NodeState, events: &Column, output: &Column, days: &[_]| {
            let inputs = [Some(events)];
            let basis = Basis {
                node,
                until,
                inputs: &inputs,
                output: Some(output),
            };
            basis.held(days, state)
        };
        let held = |state: &NodeState, events: &Column, days: &[_]| {
            held_with(state, events, &output, days)
        };
        let inputs = [Some(&events)];
        let basis = |until| Basis {
            node,
            until,
            inputs: &inputs,
            output: Some(&output),
        };
        // Planned until day 5, all fresh: the memo of days 0..=5.
        let yesterday = basis(Day(JAN_1 + 5))
            .memo(&days[..6], &NodeState::default())
            .unwrap();
        assert_eq!(yesterday.last, day_column(days[5]));
        let state = NodeState {
            memo: Some(yesterday),
            ..NodeState::default()
        };

        // Until day 9: the first six are held, the other four are not.
        assert_eq!(held(&state, &events, &days), 6);
        // The memo of every day stored: every day is held.
        let whole = basis(until).memo(&days, &state);
        assert_eq!(whole.unwrap().last, day_column(days[9]));
        let stored = NodeState {
            memo: whole,
            ..NodeState::default()
        };
        assert_eq!(held(&stored, &events, &days), 10);

        // Day 5 reads days 2..=5 (a 2-day window and its hop tail): a day
        // after them rewritten changes no held day, one of them does.
        assert_eq!(
            held(&state, &column("raw.events", 0..=9, Some(7)), &days),
            6
        );
        assert_eq!(
            held(&state, &column("raw.events", 0..=9, Some(5)), &days),
            0
        );
        // An output partition of a held day changed; one after them did not.
        let output_changed = column("out.t_gb_v1", 0..=9, Some(3));
        assert_eq!(held_with(&state, &events, &output_changed, &days), 0);
        let output_later = column("out.t_gb_v1", 0..=9, Some(8));
        assert_eq!(held_with(&state, &events, &output_later, &days), 6);
        // Days from a later start (--from) are other days.
        assert_eq!(held(&state, &events, &days[1..]), 0);
        // A failure, or days that end before the memo's last: nothing held.
        let failed = NodeState {
            memo: Some(yesterday),
            failed: [(day_column(days[8]), 1)].into_iter().collect(),
            ..NodeState::default()
        };
        assert_eq!(held(&failed, &events, &days), 0);
        assert_eq!(held(&state, &events, &days[..4]), 0);
    }
}
