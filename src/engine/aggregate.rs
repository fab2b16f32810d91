//! Aggregations over one key's events, at many query times at once.
//!
//! A query at time `t` with a window `w` sees the events with
//! `tail(t - w) <= ts < t`, where the tail hops as Chronon's sawtooth
//! windows do (`window_start`): it is `t - w` rounded down to a day for
//! windows of 12 days or more, to an hour for 12 hours or more, and to five
//! minutes below that. Unwindowed, every event before `t`. Queries come in
//! ascending order, so each window slides: events enter at its head and
//! leave at its tail, and no day rescans the window. FIRST, LAST and their
//! `_K` forms, and COUNT, read the window's ends directly; the moment
//! operations keep running sums; the order operations keep a counted
//! multiset.
//!
//! Semantics the tests check by brute force: null inputs are skipped; a
//! window with no input gives null for every operation (COUNT included, as
//! in Chronon); events with equal timestamps are ordered by value, so FIRST
//! and LAST are deterministic; APPROX_UNIQUE_COUNT and APPROX_PERCENTILE are
//! exact; a percentile `p` of `n` values is the value at zero-based
//! position `min(floor(p * n), n - 1)`, as a 32-bit float, as Chronon's KLL
//! sketch gives it while it holds every value; VARIANCE is the population
//! variance; SKEW (below 3 values) and KURTOSIS (excess, below 4 values)
//! are null, and both when the variance is 0.

use std::collections::BTreeMap;

use rusqlite::types::Value;

use super::sql::compare_values;
use super::{EngineError, Result};
use crate::config::{Aggregation, Operation, TimeUnit, Window};

pub const DAY_MS: i64 = 86_400_000;

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Count,
    Sum,
    Average,
    Min,
    Max,
    First,
    Last,
    FirstK(usize),
    LastK(usize),
    TopK(usize),
    BottomK(usize),
    UniqueCount { approx: bool },
    Variance,
    Skew,
    Kurtosis,
    Percentile(Vec<f64>),
    Histogram,
}

impl Op {
    /// The operation's part of a column name, as Chronon writes it.
    pub fn suffix(&self) -> String {
        match self {
            Op::Count => "count".into(),
            Op::Sum => "sum".into(),
            Op::Average => "average".into(),
            Op::Min => "min".into(),
            Op::Max => "max".into(),
            Op::First => "first".into(),
            Op::Last => "last".into(),
            Op::FirstK(k) => format!("first{k}"),
            Op::LastK(k) => format!("last{k}"),
            Op::TopK(k) => format!("top{k}"),
            Op::BottomK(k) => format!("bottom{k}"),
            Op::UniqueCount { approx: false } => "unique_count".into(),
            Op::UniqueCount { approx: true } => "approx_unique_count".into(),
            Op::Variance => "variance".into(),
            Op::Skew => "skew".into(),
            Op::Kurtosis => "kurtosis".into(),
            Op::Percentile(_) => "approx_percentile".into(),
            Op::Histogram => "histogram".into(),
        }
    }

    /// The declared SQLite type of the output column; empty keeps the input's
    /// type as is.
    pub fn sql_type(&self) -> &'static str {
        match self {
            Op::Count | Op::UniqueCount { .. } => "INTEGER",
            Op::Average | Op::Variance | Op::Skew | Op::Kurtosis => "REAL",
            Op::FirstK(_)
            | Op::LastK(_)
            | Op::TopK(_)
            | Op::BottomK(_)
            | Op::Percentile(_)
            | Op::Histogram => "TEXT",
            Op::Sum | Op::Min | Op::Max | Op::First | Op::Last => "",
        }
    }
}

/// One output column: an operation on an input column over a window.
#[derive(Clone, Debug)]
pub struct Feature {
    pub name: String,
    /// Index of the input column.
    pub input: usize,
    pub op: Op,
    /// The window in milliseconds; `None` reads all history.
    pub window: Option<i64>,
}

/// The features of a list of aggregations, in Chronon's column order: per
/// aggregation, per window. `inputs` collects the distinct input columns.
pub fn features(aggregations: &[Aggregation], inputs: &mut Vec<String>) -> Result<Vec<Feature>> {
    let mut out = Vec::new();
    for (i, agg) in aggregations.iter().enumerate() {
        let at = format!("aggregations[{i}]");
        if !agg.buckets.is_empty() {
            return Err(EngineError::unsupported(format!(
                "{at}.buckets: bucketed aggregations are not supported"
            )));
        }
        let op = op(agg).map_err(|e| EngineError {
            message: format!("{at}: {}", e.message),
            unsupported: e.unsupported,
        })?;
        let input = match inputs.iter().position(|c| c == &agg.input_column) {
            Some(i) => i,
            None => {
                inputs.push(agg.input_column.clone());
                inputs.len() - 1
            }
        };
        let base = format!("{}_{}", agg.input_column, op.suffix());
        if agg.windows.is_empty() {
            out.push(Feature {
                name: base,
                input,
                op,
                window: None,
            });
            continue;
        }
        for window in &agg.windows {
            if window.length <= 0 {
                return Err(EngineError::failed(format!(
                    "{at}.windows: expected a positive length"
                )));
            }
            out.push(Feature {
                name: format!("{base}_{}", window_suffix(window)),
                input,
                op: op.clone(),
                window: Some(window_millis(window)),
            });
        }
    }
    Ok(out)
}

pub fn window_suffix(window: &Window) -> String {
    match window.unit {
        TimeUnit::Days => format!("{}d", window.length),
        TimeUnit::Hours => format!("{}h", window.length),
    }
}

/// The longest window of `features`; `None` when one reads all history.
pub fn longest_window(features: &[Feature]) -> Option<i64> {
    features
        .iter()
        .map(|f| f.window)
        .try_fold(0, |acc, w| w.map(|w| acc.max(w)))
}

/// Where a window of `w` milliseconds starts for a query at `t`: Chronon's
/// sawtooth tail, `t - w` rounded down to the window's tail hop
/// (airbnb/chronon `aggregator/src/main/scala/ai/chronon/aggregator/windowing/Resolution.scala`,
/// `FiveMinuteResolution.calculateTailHop`: a day for windows of 12 days or
/// more, an hour for 12 hours or more, five minutes below; the
/// `SawtoothAggregator` reads the hops whose start is at or after it).
/// Queries at day boundaries (snapshots) see exact windows.
pub fn window_start(t: i64, w: i64) -> i64 {
    const HOUR: i64 = 3_600_000;
    let hop = if w >= 12 * DAY_MS {
        DAY_MS
    } else if w >= 12 * HOUR {
        HOUR
    } else {
        5 * 60_000
    };
    (t - w).div_euclid(hop) * hop
}

pub fn window_millis(window: &Window) -> i64 {
    match window.unit {
        TimeUnit::Days => window.length * DAY_MS,
        TimeUnit::Hours => window.length * 3_600_000,
    }
}

fn op(agg: &Aggregation) -> Result<Op> {
    let k = || -> std::result::Result<usize, String> {
        let text = agg
            .arg_map
            .get("k")
            .ok_or("argMap.k: expected the number of values to keep")?;
        text.trim()
            .parse::<usize>()
            .ok()
            .filter(|k| *k > 0)
            .ok_or_else(|| format!("argMap.k: expected a positive integer, got {text:?}"))
    };
    Ok(match agg.operation {
        Operation::Count => Op::Count,
        Operation::Sum => Op::Sum,
        Operation::Average => Op::Average,
        Operation::Min => Op::Min,
        Operation::Max => Op::Max,
        Operation::First => Op::First,
        Operation::Last => Op::Last,
        Operation::FirstK => Op::FirstK(k().map_err(EngineError::failed)?),
        Operation::LastK => Op::LastK(k().map_err(EngineError::failed)?),
        Operation::TopK => Op::TopK(k().map_err(EngineError::failed)?),
        Operation::BottomK => Op::BottomK(k().map_err(EngineError::failed)?),
        Operation::UniqueCount => Op::UniqueCount { approx: false },
        Operation::ApproxUniqueCount => Op::UniqueCount { approx: true },
        Operation::Variance => Op::Variance,
        Operation::Skew => Op::Skew,
        Operation::Kurtosis => Op::Kurtosis,
        Operation::Histogram => Op::Histogram,
        Operation::ApproxPercentile => {
            let text = agg.arg_map.get("percentiles").ok_or_else(|| {
                EngineError::failed("argMap.percentiles: expected a list such as [0.5, 0.99]")
            })?;
            let list: Vec<f64> = serde_json::from_str(text)
                .ok()
                .filter(|l: &Vec<f64>| !l.is_empty() && l.iter().all(|p| (0.0..=1.0).contains(p)))
                .ok_or_else(|| {
                    EngineError::failed(format!(
                        "argMap.percentiles: expected a list of numbers in [0, 1], got {text:?}"
                    ))
                })?;
            Op::Percentile(list)
        }
        Operation::ApproxHistogramK => {
            return Err(EngineError::unsupported(
                "operation APPROX_HISTOGRAM_K is not supported",
            ));
        }
        Operation::BoundedUniqueCount => {
            return Err(EngineError::unsupported(
                "operation BOUNDED_UNIQUE_COUNT is not supported",
            ));
        }
    })
}

/// The feature at each query time. `events` are one key's non-null values
/// of the feature's input, sorted by (time, value); `queries` ascend.
pub fn evaluate(events: &[(i64, Value)], feature: &Feature, queries: &[i64]) -> Vec<Value> {
    let mut out = Vec::with_capacity(queries.len());
    let mut acc = Accumulator::new(&feature.op);
    let (mut lo, mut hi) = (0, 0);
    for &t in queries {
        let start = feature.window.map(|w| window_start(t, w));
        let mut new_hi = hi;
        while new_hi < events.len() && events[new_hi].0 < t {
            new_hi += 1;
        }
        let mut new_lo = lo;
        if let Some(start) = start {
            while new_lo < new_hi && events[new_lo].0 < start {
                new_lo += 1;
            }
        }
        if let Some(acc) = acc.as_mut() {
            // Leave before entering, so the multiset never holds an event
            // both old and new.
            for (_, v) in &events[lo..new_lo.min(hi)] {
                acc.remove(v);
            }
            for (_, v) in &events[hi.max(new_lo)..new_hi] {
                acc.add(v);
            }
        }
        lo = new_lo;
        hi = new_hi;
        let window = &events[lo..hi];
        out.push(if window.is_empty() {
            Value::Null
        } else {
            match (&feature.op, acc.as_ref()) {
                (_, Some(acc)) => acc.result(&feature.op),
                (op, None) => from_slice(op, window),
            }
        });
    }
    out
}

/// The operations read straight off the window.
fn from_slice(op: &Op, window: &[(i64, Value)]) -> Value {
    let list = |values: Vec<&Value>| -> Value {
        Value::Text(
            serde_json::Value::Array(values.into_iter().map(crate::warehouse::json).collect())
                .to_string(),
        )
    };
    match op {
        Op::Count => Value::Integer(window.len() as i64),
        Op::First => window[0].1.clone(),
        Op::Last => window[window.len() - 1].1.clone(),
        Op::FirstK(k) => list(window.iter().take(*k).map(|(_, v)| v).collect()),
        // Most recent first, as Chronon returns them.
        Op::LastK(k) => list(window.iter().rev().take(*k).map(|(_, v)| v).collect()),
        _ => unreachable!("only slice operations are read off the window"),
    }
}

/// A value ordered as Spark compares values, for the multiset.
#[derive(Clone, Debug)]
pub(super) struct Ordered(pub(super) Value);

impl PartialEq for Ordered {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}
impl Eq for Ordered {}
impl PartialOrd for Ordered {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ordered {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        compare_values(&self.0, &other.0)
    }
}

pub(super) enum Accumulator {
    Moments(Moments),
    Multiset(BTreeMap<Ordered, usize>),
}

impl Accumulator {
    /// The running state of an operation that keeps one; `None` for those
    /// read off the window's ends (COUNT, FIRST, LAST and their `_K`).
    pub(super) fn new(op: &Op) -> Option<Accumulator> {
        match op {
            Op::Count | Op::First | Op::Last | Op::FirstK(_) | Op::LastK(_) => None,
            Op::Sum | Op::Average | Op::Variance | Op::Skew | Op::Kurtosis => {
                Some(Accumulator::Moments(Moments::default()))
            }
            Op::Min
            | Op::Max
            | Op::TopK(_)
            | Op::BottomK(_)
            | Op::UniqueCount { .. }
            | Op::Percentile(_)
            | Op::Histogram => Some(Accumulator::Multiset(BTreeMap::new())),
        }
    }

    fn add(&mut self, value: &Value) {
        match self {
            Accumulator::Moments(m) => m.update(value, 1),
            Accumulator::Multiset(set) => {
                *set.entry(Ordered(value.clone())).or_default() += 1;
            }
        }
    }

    fn remove(&mut self, value: &Value) {
        match self {
            Accumulator::Moments(m) => m.update(value, -1),
            Accumulator::Multiset(set) => {
                let key = Ordered(value.clone());
                if let Some(count) = set.get_mut(&key) {
                    *count -= 1;
                    if *count == 0 {
                        set.remove(&key);
                    }
                }
            }
        }
    }

    fn result(&self, op: &Op) -> Value {
        match self {
            Accumulator::Moments(m) => m.result(op),
            Accumulator::Multiset(set) => multiset_result(set, op),
        }
    }
}

pub(super) fn multiset_result(set: &BTreeMap<Ordered, usize>, op: &Op) -> Value {
    let expand = |iter: &mut dyn Iterator<Item = (&Ordered, &usize)>, k: usize| {
        let mut out = Vec::new();
        for (v, n) in iter {
            for _ in 0..*n {
                if out.len() == k {
                    return out;
                }
                out.push(crate::warehouse::json(&v.0));
            }
        }
        out
    };
    let array =
        |items: Vec<serde_json::Value>| Value::Text(serde_json::Value::Array(items).to_string());
    match op {
        Op::Min => set.keys().next().map_or(Value::Null, |v| v.0.clone()),
        Op::Max => set.keys().next_back().map_or(Value::Null, |v| v.0.clone()),
        Op::TopK(k) => array(expand(&mut set.iter().rev(), *k)),
        Op::BottomK(k) => array(expand(&mut set.iter(), *k)),
        Op::UniqueCount { .. } => Value::Integer(set.len() as i64),
        Op::Histogram => {
            let mut map = serde_json::Map::new();
            for (v, n) in set {
                let key = crate::warehouse::text(&v.0);
                let count = map
                    .get(&key)
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0);
                map.insert(key, (count + *n as u64).into());
            }
            Value::Text(serde_json::Value::Object(map).to_string())
        }
        Op::Percentile(ps) => {
            // Chronon's KllFloatsSketch (datasketches sketches-core 0.13.4,
            // `QuantilesHelper.posOfPhi`) in its exact mode: the value at
            // zero-based position floor(p * n), at most n - 1, as a float.
            let total: usize = set.values().sum();
            let values: Vec<serde_json::Value> = ps
                .iter()
                .map(|p| {
                    let position = ((p * total as f64).floor() as usize).min(total - 1);
                    let mut seen = 0;
                    for (v, n) in set {
                        seen += n;
                        if seen > position {
                            return as_float(&v.0);
                        }
                    }
                    serde_json::Value::Null
                })
                .collect();
            array(values)
        }
        _ => unreachable!("only order operations keep a multiset"),
    }
}

/// A number as a 32-bit float, written as its shortest decimal (Chronon's
/// percentiles are `Array[Float]`).
fn as_float(value: &Value) -> serde_json::Value {
    let x = match value {
        Value::Integer(i) => *i as f32,
        Value::Real(r) => *r as f32,
        other => return crate::warehouse::json(other),
    };
    serde_json::from_str(&format!("{x:?}")).unwrap_or(serde_json::Value::Null)
}

/// Running power sums. Integer inputs sum exactly; real inputs sum with
/// Neumaier's compensation, so removing what was added leaves no drift.
#[derive(Clone, Default)]
pub(super) struct Moments {
    n: i64,
    reals: i64,
    int_sum: i128,
    real_sum: Compensated,
    s2: Compensated,
    s3: Compensated,
    s4: Compensated,
}

impl Moments {
    pub(super) fn update(&mut self, value: &Value, sign: i64) {
        let x = match value {
            Value::Integer(i) => {
                self.int_sum += (*i as i128) * sign as i128;
                *i as f64
            }
            Value::Real(r) => {
                self.reals += sign;
                self.real_sum.add(r * sign as f64);
                *r
            }
            // Inputs are checked numeric before they get here.
            _ => return,
        };
        self.n += sign;
        let s = sign as f64;
        self.s2.add(s * x * x);
        self.s3.add(s * x * x * x);
        self.s4.add(s * x * x * x * x);
    }

    fn sum(&self) -> f64 {
        self.int_sum as f64 + self.real_sum.value()
    }

    pub(super) fn result(&self, op: &Op) -> Value {
        if self.n == 0 {
            return Value::Null;
        }
        let n = self.n as f64;
        let mean = self.sum() / n;
        let m2 = (self.s2.value() / n - mean * mean).max(0.0);
        match op {
            Op::Sum if self.reals == 0 => {
                i64::try_from(self.int_sum).map_or(Value::Real(self.int_sum as f64), Value::Integer)
            }
            Op::Sum => Value::Real(self.sum()),
            Op::Average => Value::Real(mean),
            Op::Variance => Value::Real(m2),
            // Chronon's `Skew` and `Kurtosis` give NaN below 3 and 4 values
            // and for a zero variance (SimpleAggregators.scala); a table
            // holds NaN as NULL.
            Op::Skew if self.n < 3 => Value::Null,
            Op::Kurtosis if self.n < 4 => Value::Null,
            Op::Skew | Op::Kurtosis if m2 <= f64::EPSILON * mean.abs().max(1.0) => Value::Null,
            Op::Skew => {
                let (s2, s3) = (self.s2.value() / n, self.s3.value() / n);
                let m3 = s3 - 3.0 * mean * s2 + 2.0 * mean.powi(3);
                Value::Real(m3 / m2.powf(1.5))
            }
            Op::Kurtosis => {
                let (s2, s3, s4) = (
                    self.s2.value() / n,
                    self.s3.value() / n,
                    self.s4.value() / n,
                );
                let m4 = s4 - 4.0 * mean * s3 + 6.0 * mean * mean * s2 - 3.0 * mean.powi(4);
                Value::Real(m4 / (m2 * m2) - 3.0)
            }
            _ => unreachable!("only moment operations keep moments"),
        }
    }
}

impl Moments {
    pub(super) fn count(&self) -> i64 {
        self.n
    }

    /// The running sums as JSON (the integer sum as text: it is an i128).
    pub(super) fn to_json(&self) -> serde_json::Value {
        let pair = |c: &Compensated| serde_json::json!([c.sum, c.carry]);
        serde_json::json!({
            "n": self.n,
            "reals": self.reals,
            "int_sum": self.int_sum.to_string(),
            "sum": pair(&self.real_sum),
            "s2": pair(&self.s2),
            "s3": pair(&self.s3),
            "s4": pair(&self.s4),
        })
    }

    pub(super) fn from_json(value: &serde_json::Value) -> Option<Moments> {
        let pair = |name: &str| -> Option<Compensated> {
            let list = value.get(name)?.as_array()?;
            Some(Compensated {
                sum: list.first()?.as_f64()?,
                carry: list.get(1)?.as_f64()?,
            })
        };
        Some(Moments {
            n: value.get("n")?.as_i64()?,
            reals: value.get("reals")?.as_i64()?,
            int_sum: value.get("int_sum")?.as_str()?.parse().ok()?,
            real_sum: pair("sum")?,
            s2: pair("s2")?,
            s3: pair("s3")?,
            s4: pair("s4")?,
        })
    }
}

#[derive(Default, Clone, Copy)]
struct Compensated {
    sum: f64,
    carry: f64,
}

impl Compensated {
    fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.carry += (self.sum - t) + x;
        } else {
            self.carry += (x - t) + self.sum;
        }
        self.sum = t;
    }

    fn value(&self) -> f64 {
        self.sum + self.carry
    }
}
