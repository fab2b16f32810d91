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
//! state, that each is still fresh (`held`): all of its targets, or, when
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

/// The memo of `node` planned for `days` (at `until` when unpartitioned);
/// `None` when its targets cannot all be fresh from the state alone (a
/// failure or forced mark, or a pending input).
pub fn memo(
    node: &Node,
    days: &[Option<Day>],
    until: Day,
    inputs: &[Option<&Column>],
    output: Option<&Column>,
    state: &NodeState,
) -> Option<Memo> {
    let last = day_column(*days.last()?);
    if !state.failed.is_empty() || !state.forced.is_empty() {
        return None;
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update(&MEMO_VERSION.to_le_bytes());
    hasher.update(&KEY_VERSION.to_le_bytes());
    hasher.update(node.step.name().as_bytes());
    hasher.update(&node.slice_hash.0);
    // Only an unpartitioned target reads at `until`: a daily one reads at
    // its day, so a memo of days holds whatever `--until` is.
    if days.contains(&None) {
        hasher.update(&until.0.to_le_bytes());
    }
    for day in days {
        hasher.update(&day_column(*day).to_le_bytes());
    }
    // How each input reads: with the days, these fix every target's range.
    hasher.update(&serde_json::to_vec(&node.inputs).expect("serializing to memory cannot fail"));
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
        output.filter(|_| node.probed_output),
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
    })
}

/// How many of a node's first targets the stored memo vouches for, and the
/// memo of all of `days`: every target when the stored memo is that memo;
/// when the days run past the stored memo's last day (the `--until` moved
/// on), those up to it if the stored memo is the memo of those; else none.
pub fn held(
    node: &Node,
    days: &[Option<Day>],
    until: Day,
    inputs: &[Option<&Column>],
    output: Option<&Column>,
    state: &NodeState,
) -> (usize, Option<Memo>) {
    let whole = memo(node, days, until, inputs, output, state);
    let Some(stored) = state.memo else {
        return (0, whole);
    };
    if whole == Some(stored) {
        return (days.len(), whole);
    }
    // Days are in order: the first ones up to the stored memo's last day.
    let upto = days.partition_point(|d| day_column(*d) <= stored.last);
    if upto == 0 || upto == days.len() || day_column(days[upto - 1]) != stored.last {
        return (0, whole);
    }
    match memo(node, &days[..upto], until, inputs, output, state) {
        Some(memo) if memo == stored => (upto, whole),
        _ => (0, whole),
    }
}
