//! Batch IRs: what a TEMPORAL upload stores so that the fetcher can answer
//! at any request time after the batch, as Chronon's
//! `SawtoothOnlineAggregator` does (airbnb/chronon
//! `aggregator/src/main/scala/ai/chronon/aggregator/windowing/SawtoothOnlineAggregator.scala`
//! and `SawtoothMutationAggregator.scala`).
//!
//! For a batch ending at `B` (the start of the day after the upload's day,
//! `GroupByUpload.scala`'s `batchEndDate`), each feature with window `w`
//! keeps:
//! - a *collapsed* partial aggregate of the events with
//!   `B - w + 2 days <= ts < B` (all events before `B` when unwindowed):
//!   they stay in the window for any request within the two-day tail
//!   buffer;
//! - the *tail*: the events with `B - w < ts < B - w + 2 days`, which leave
//!   the window as the request time moves on. Chronon keeps them as hop
//!   IRs (a day, an hour or five minutes wide); a hop is read when its start
//!   is at or after the request's window start, which is itself a hop
//!   boundary, so keeping the events and reading those at or after the
//!   window start gives the same result.
//!
//! At a request time `q >= B` a feature is the collapsed part, plus the tail
//! events at or after `window_start(q, w)`, plus the streaming head: the
//! events with `B <= ts < q` in the window (`updateIr`, `mergeTailHops`).
//! So within the buffer the online value equals the offline sawtooth value
//! at `q`, except for an event exactly at `B - w`: Chronon's batch leaves it
//! out (`rowTs > tail`), the offline window keeps it. Beyond the buffer the
//! collapsed part holds events that have left the window: Chronon's
//! "degraded" counters; the engine computes the same.

use std::collections::BTreeMap;

use rusqlite::types::Value;
use serde_json::{Value as Json, json};

use super::aggregate::{
    Accumulator, DAY_MS, Feature, Moments, Op, Ordered, longest_window, multiset_result,
    window_start,
};
use super::sql::compare_values;
use crate::warehouse::{from_json, json as to_json};

/// Chronon's `tailBufferMillis`: two days.
pub const TAIL_BUFFER: i64 = 2 * DAY_MS;

/// One feature's partial aggregate (Chronon's IR): events can be added to
/// it, and it gives the feature's value.
#[derive(Clone)]
pub(super) enum Partial {
    Count(i64),
    Moments(Moments),
    Multiset(BTreeMap<Ordered, usize>),
    /// `(ts, value)` in (time, value) order: the first `k` for FIRST and
    /// FIRST_K, the last `k` for LAST and LAST_K.
    Ends(Vec<(i64, Value)>),
}

impl Partial {
    pub fn new(op: &Op) -> Partial {
        match Accumulator::new(op) {
            Some(Accumulator::Moments(moments)) => Partial::Moments(moments),
            Some(Accumulator::Multiset(set)) => Partial::Multiset(set),
            None if *op == Op::Count => Partial::Count(0),
            None => Partial::Ends(Vec::new()),
        }
    }

    pub fn add(&mut self, op: &Op, ts: i64, value: &Value) {
        match self {
            Partial::Count(n) => *n += 1,
            Partial::Moments(m) => m.update(value, 1),
            Partial::Multiset(set) => *set.entry(Ordered(value.clone())).or_default() += 1,
            Partial::Ends(ends) => {
                let at = ends.partition_point(|(t, v)| {
                    t.cmp(&ts).then_with(|| compare_values(v, value)).is_le()
                });
                ends.insert(at, (ts, value.clone()));
                match op {
                    Op::First => ends.truncate(1),
                    Op::FirstK(k) => ends.truncate(*k),
                    Op::Last => keep_last(ends, 1),
                    Op::LastK(k) => keep_last(ends, *k),
                    _ => {}
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Partial::Count(n) => *n == 0,
            Partial::Moments(m) => m.count() == 0,
            Partial::Multiset(set) => set.is_empty(),
            Partial::Ends(ends) => ends.is_empty(),
        }
    }

    /// The feature's value; null when no event was added, as for an empty
    /// window offline.
    pub fn result(&self, op: &Op) -> Value {
        if self.is_empty() {
            return Value::Null;
        }
        let list = |values: Vec<&Value>| {
            Value::Text(Json::Array(values.into_iter().map(to_json).collect()).to_string())
        };
        match (self, op) {
            (Partial::Count(n), _) => Value::Integer(*n),
            (Partial::Moments(m), op) => m.result(op),
            (Partial::Multiset(set), op) => multiset_result(set, op),
            (Partial::Ends(ends), Op::First) => ends[0].1.clone(),
            (Partial::Ends(ends), Op::Last) => ends[ends.len() - 1].1.clone(),
            (Partial::Ends(ends), Op::FirstK(_)) => list(ends.iter().map(|(_, v)| v).collect()),
            // Most recent first, as Chronon returns them.
            (Partial::Ends(ends), _) => list(ends.iter().rev().map(|(_, v)| v).collect()),
        }
    }

    fn to_json(&self) -> Json {
        match self {
            Partial::Count(n) => json!({ "count": n }),
            Partial::Moments(m) => json!({ "moments": m.to_json() }),
            Partial::Multiset(set) => json!({
                "multiset": set.iter().map(|(v, n)| json!([to_json(&v.0), n])).collect::<Vec<_>>()
            }),
            Partial::Ends(ends) => json!({ "ends": timed_json(ends) }),
        }
    }

    fn from_json(value: &Json) -> Option<Partial> {
        if let Some(n) = value.get("count") {
            return n.as_i64().map(Partial::Count);
        }
        if let Some(m) = value.get("moments") {
            return Moments::from_json(m).map(Partial::Moments);
        }
        if let Some(list) = value.get("multiset") {
            let mut set = BTreeMap::new();
            for pair in list.as_array()? {
                let n = pair.get(1)?.as_u64()? as usize;
                *set.entry(Ordered(from_json(pair.get(0)?))).or_default() += n;
            }
            return Some(Partial::Multiset(set));
        }
        timed_from_json(value.get("ends")?).map(Partial::Ends)
    }
}

fn keep_last(ends: &mut Vec<(i64, Value)>, k: usize) {
    if ends.len() > k {
        ends.drain(..ends.len() - k);
    }
}

/// One feature's part of a batch IR.
pub(super) struct FeatureIr {
    pub(super) collapsed: Partial,
    /// Events that leave the window within the tail buffer, in time order.
    pub tail: Vec<(i64, Value)>,
}

impl FeatureIr {
    /// Nothing from the batch: the key had no event before it.
    pub fn empty(feature: &Feature) -> FeatureIr {
        FeatureIr {
            collapsed: Partial::new(&feature.op),
            tail: Vec::new(),
        }
    }

    /// Folds one key's events of the feature's input (sorted by time) that
    /// precede `end`, as `SawtoothMutationAggregator.update` sorts them into
    /// the collapsed part and the tail hops.
    pub fn build(feature: &Feature, events: &[(i64, Value)], end: i64) -> FeatureIr {
        let mut ir = FeatureIr::empty(feature);
        for (ts, value) in events.iter().take_while(|(ts, _)| *ts < end) {
            match feature.window {
                None => ir.collapsed.add(&feature.op, *ts, value),
                Some(w) if *ts <= end - w => {}
                Some(w) if *ts >= end - w + TAIL_BUFFER => {
                    ir.collapsed.add(&feature.op, *ts, value)
                }
                Some(_) => ir.tail.push((*ts, value.clone())),
            }
        }
        ir
    }

    /// The feature at `query` (at or after the batch end), with `head`: the
    /// streaming events after the batch end, in time order.
    pub fn value_at(&self, feature: &Feature, head: &[(i64, Value)], query: i64) -> Value {
        let start = feature.window.map_or(i64::MIN, |w| window_start(query, w));
        let mut partial = self.collapsed.clone();
        for (ts, value) in self.tail.iter().chain(head) {
            if *ts >= start && *ts < query {
                partial.add(&feature.op, *ts, value);
            }
        }
        partial.result(&feature.op)
    }

    pub fn to_json(&self) -> Json {
        json!({ "collapsed": self.collapsed.to_json(), "tail": timed_json(&self.tail) })
    }

    pub fn from_json(value: &Json) -> Option<FeatureIr> {
        Some(FeatureIr {
            collapsed: Partial::from_json(value.get("collapsed")?)?,
            tail: timed_from_json(value.get("tail")?)?,
        })
    }
}

/// The name under which a batch IR keeps whether the key had any event in
/// the longest window (a group-by's row exists only then).
pub const ROWS: &str = "__rows";

/// The row-count feature over the longest window, for [`ROWS`].
pub fn rows_feature(features: &[Feature]) -> Feature {
    Feature {
        name: ROWS.into(),
        input: usize::MAX,
        op: Op::Count,
        window: longest_window(features),
    }
}

/// Timed values as JSON: `[[ts, value], ...]`.
pub fn timed_json<'v>(pairs: impl IntoIterator<Item = &'v (i64, Value)>) -> Json {
    Json::Array(
        pairs
            .into_iter()
            .map(|(t, v)| json!([t, to_json(v)]))
            .collect(),
    )
}

/// Timed values back from `timed_json`; `None` when it is not that shape.
pub fn timed_from_json(value: &Json) -> Option<Vec<(i64, Value)>> {
    value
        .as_array()?
        .iter()
        .map(|pair| Some((pair.get(0)?.as_i64()?, from_json(pair.get(1)?))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feature(op: Op, window: Option<i64>) -> Feature {
        Feature {
            name: "f".into(),
            input: 0,
            op,
            window,
        }
    }

    #[test]
    fn an_event_exactly_at_the_batch_tail_is_left_out_as_chronon_does() {
        let (end, w) = (10 * DAY_MS, DAY_MS);
        let sum = feature(Op::Sum, Some(w));
        let events = [
            (end - w, Value::Integer(5)),
            (end - w + 1, Value::Integer(7)),
        ];
        let ir = FeatureIr::build(&sum, &events, end);
        // Offline, the window at `end` starts at `end - w` and holds both.
        assert_eq!(ir.value_at(&sum, &[], end), Value::Integer(7));
    }

    #[test]
    fn batch_irs_survive_their_json_for_every_kind_of_partial() {
        let events: Vec<(i64, Value)> = (0..40)
            .map(|i| (i * 3_600_000, Value::Real((i % 7) as f64 * 1.5)))
            .collect();
        let end = 40 * 3_600_000;
        for op in [
            Op::Count,
            Op::Variance,
            Op::Percentile(vec![0.5]),
            Op::LastK(3),
            Op::First,
        ] {
            for window in [None, Some(30 * 3_600_000)] {
                let f = feature(op.clone(), window);
                let ir = FeatureIr::build(&f, &events, end);
                let back = FeatureIr::from_json(&ir.to_json()).expect("parses");
                for q in [end, end + 3_600_000, end + DAY_MS] {
                    assert_eq!(ir.value_at(&f, &[], q), back.value_at(&f, &[], q), "{op:?}");
                }
            }
        }
    }
}
