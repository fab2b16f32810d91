//! The local engine through the binary: random events, every operation and
//! window, and the point-in-time join in both accuracies, each compared with
//! a brute-force computation written here with plain loops; unsupported
//! features; and the demo end to end.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{Output, assert_contains, chronon_build, copy_dir, show_rows, testdata};

const DAY_MS: i64 = 86_400_000;
/// 2025-01-01 as days since the epoch.
const FIRST_DAY: i64 = 20_089;
const DAYS: i64 = 10;

fn day_text(day: i64) -> String {
    chronon_build::testing::Day(day as i32).to_string()
}

/// A small deterministic generator (64-bit LCG), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Debug)]
struct Event {
    key: i64,
    ts: i64,
    v: Option<f64>,
    s: Option<String>,
}

/// Events over ten days for five keys: equal timestamps, null values, a day
/// with only nulls, and a key silent for days.
fn random_events(seed: u64) -> Vec<Event> {
    let mut rng = Rng(seed);
    let mut events = Vec::new();
    for day in FIRST_DAY..FIRST_DAY + DAYS {
        let n = 4 + rng.below(12);
        for _ in 0..n {
            let key = 1 + rng.below(5) as i64;
            if key == 5 && (day - FIRST_DAY) % 4 != 0 {
                continue;
            }
            let ts = day * DAY_MS + rng.below(DAY_MS as u64) as i64;
            let only_nulls = day == FIRST_DAY + 4;
            let v = (!only_nulls && rng.below(7) != 0).then(|| {
                if rng.below(2) == 0 {
                    rng.below(100) as f64
                } else {
                    (rng.below(100_000) as f64) / 100.0
                }
            });
            let s = (!only_nulls && rng.below(6) != 0).then(|| format!("c{}", rng.below(4)));
            events.push(Event { key, ts, v, s });
            if rng.below(5) == 0 {
                // A tie: another event of the same key at the same time.
                let v = Some(rng.below(50) as f64);
                events.push(Event {
                    key,
                    ts,
                    v,
                    s: Some("c9".into()),
                });
            }
        }
    }
    events
}

fn events_csv(events: &[Event]) -> String {
    let mut out = String::from("k,ts,v,s,ds\n");
    for e in events {
        let v = e.v.map(|v| v.to_string()).unwrap_or_default();
        let day = e.ts.div_euclid(DAY_MS);
        out.push_str(&format!(
            "{},{},{},{},{}\n",
            e.key,
            e.ts,
            v,
            e.s.clone().unwrap_or_default(),
            day_text(day)
        ));
    }
    out
}

/// A repository in the Chronon layout with the given configs (path under
/// `production/`, JSON) and seeded CSV sources.
struct Repo {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Repo {
    fn new(configs: &[(&str, Value)], sources: &[(&str, String)]) -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        let mut seed = String::from("[warehouse.seed]\n");
        for (table, csv) in sources {
            let file = format!("data/{table}.csv");
            std::fs::create_dir_all(root.join("data")).unwrap();
            std::fs::write(root.join(&file), csv).unwrap();
            seed.push_str(&format!("{table:?} = {file:?}\n"));
        }
        std::fs::write(root.join("chronon-build.toml"), seed).unwrap();
        std::fs::write(root.join("teams.json"), r#"{"t": {"namespace": "out"}}"#).unwrap();
        for (path, config) in configs {
            let file = root.join("production").join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, serde_json::to_string_pretty(config).unwrap()).unwrap();
        }
        Repo { _dir: dir, root }
    }

    fn run(&self, args: &[&str]) -> Output {
        chronon_build(&self.root, args)
    }
}

/// Every row of one partition, as JSON objects.
fn rows(repo: &Path, table: &str, day: &str) -> Vec<Value> {
    match show_rows(repo, table, day) {
        Value::Array(rows) => rows,
        other => panic!("expected rows, got {other}"),
    }
}

fn window_ms(window: &str) -> Option<i64> {
    if window.is_empty() {
        return None;
    }
    let (n, unit) = window.split_at(window.len() - 1);
    let n: i64 = n.parse().ok()?;
    Some(match unit {
        "d" => n * DAY_MS,
        "h" => n * 3_600_000,
        _ => return None,
    })
}

/// The brute-force value of `op` over the values, in (time, value) order.
fn brute(op: &str, values: &[(i64, Value)]) -> Value {
    if values.is_empty() {
        return Value::Null;
    }
    let nums: Vec<f64> = values.iter().filter_map(|(_, v)| v.as_f64()).collect();
    let n = nums.len() as f64;
    let mean = nums.iter().sum::<f64>() / n;
    let central = |p: i32| nums.iter().map(|x| (x - mean).powi(p)).sum::<f64>() / n;
    let mut sorted: Vec<Value> = values.iter().map(|(_, v)| v.clone()).collect();
    sorted.sort_by(compare);
    let distinct = {
        let mut d = sorted.clone();
        d.dedup();
        d
    };
    let list = |items: Vec<Value>| Value::String(Value::Array(items).to_string());
    match op {
        "count" => json!(values.len()),
        "sum" => json!(nums.iter().sum::<f64>()),
        "average" => json!(mean),
        "variance" => json!(central(2)),
        // Chronon's SimpleAggregators.scala: NaN (NULL in a table) below
        // three (skew) and four (kurtosis) values, or with no variance.
        "skew" if nums.len() < 3 || central(2) == 0.0 => Value::Null,
        "kurtosis" if nums.len() < 4 || central(2) == 0.0 => Value::Null,
        "skew" => json!(central(3) / central(2).powf(1.5)),
        "kurtosis" => json!(central(4) / central(2).powi(2) - 3.0),
        "min" => sorted[0].clone(),
        "max" => sorted[sorted.len() - 1].clone(),
        "first" => values[0].1.clone(),
        "last" => values[values.len() - 1].1.clone(),
        "first3" => list(values.iter().take(3).map(|(_, v)| v.clone()).collect()),
        "last3" => list(
            values
                .iter()
                .rev()
                .take(3)
                .map(|(_, v)| v.clone())
                .collect(),
        ),
        "top2" => list(sorted.iter().rev().take(2).cloned().collect()),
        "bottom2" => list(sorted.iter().take(2).cloned().collect()),
        "unique_count" | "approx_unique_count" => json!(distinct.len()),
        "approx_percentile" => list(
            [0.5, 0.9]
                .iter()
                .map(|p: &f64| {
                    // datasketches' posOfPhi: position floor(p * n), at
                    // most n - 1; the value as a 32-bit float.
                    let n = sorted.len();
                    let position = ((p * n as f64).floor() as usize).min(n - 1);
                    json!(sorted[position].as_f64().unwrap() as f32 as f64)
                })
                .collect(),
        ),
        "histogram" => {
            let mut counts: BTreeMap<String, u64> = BTreeMap::new();
            for (_, v) in values {
                *counts.entry(v.as_str().unwrap().to_string()).or_default() += 1;
            }
            Value::String(json!(counts).to_string())
        }
        other => panic!("no brute force for {other}"),
    }
}

fn compare(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        _ => a.as_str().cmp(&b.as_str()),
    }
}

/// Equal, numbers within a relative 1e-6; JSON lists and maps compared as
/// parsed values.
fn close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => {
            let (x, y) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            (x - y).abs() <= 1e-6 * x.abs().max(y.abs()).max(1.0)
        }
        (Value::String(x), Value::String(y)) if x.starts_with(['[', '{']) => {
            let (x, y): (Value, Value) = (
                serde_json::from_str(x).unwrap(),
                serde_json::from_str(y).unwrap(),
            );
            match (&x, &y) {
                (Value::Array(xs), Value::Array(ys)) => {
                    xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| close(x, y))
                }
                _ => x == y,
            }
        }
        _ => a == b,
    }
}

/// The input values of `column` of one key's events in `[from, to)`,
/// sorted by (time, value), nulls left out.
/// Chronon's sawtooth window tail, written here from
/// `aggregator/.../windowing/Resolution.scala` (`FiveMinuteResolution`)
/// independently of the engine: the window of length `w` seen at `at`
/// starts at `at - w` rounded down to a day (windows of 12 days or more),
/// an hour (12 hours or more) or five minutes.
fn sawtooth_start(at: i64, w: i64) -> i64 {
    let hop = if w >= 12 * DAY_MS {
        DAY_MS
    } else if w >= 12 * 3_600_000 {
        3_600_000
    } else {
        300_000
    };
    let tail = at - w;
    tail - tail.rem_euclid(hop)
}

fn window_values(
    events: &[Event],
    key: i64,
    column: &str,
    from: i64,
    to: i64,
) -> Vec<(i64, Value)> {
    let mut out: Vec<(i64, Value)> = events
        .iter()
        .filter(|e| e.key == key && e.ts >= from && e.ts < to)
        .filter_map(|e| {
            let v = match column {
                "v" => e.v.map(number)?,
                _ => Value::String(e.s.clone()?),
            };
            Some((e.ts, v))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| compare(&a.1, &b.1)));
    out
}

/// Whole numbers as integers, as the CSV import types them.
fn number(v: f64) -> Value {
    if v.fract() == 0.0 {
        json!(v as i64)
    } else {
        json!(v)
    }
}

fn aggregation(column: &str, op: i64, args: Value, windows: &[(i64, i64)]) -> Value {
    let windows: Vec<Value> = windows
        .iter()
        .map(|(length, unit)| json!({"length": length, "timeUnit": unit}))
        .collect();
    let mut agg = json!({"inputColumn": column, "operation": op, "argMap": args});
    if !windows.is_empty() {
        agg["windows"] = Value::Array(windows);
    }
    agg
}

fn events_group_by(name: &str, aggregations: Vec<Value>, accuracy: Option<i64>) -> Value {
    let mut gb = json!({
        "metaData": {"name": name, "team": "t", "outputNamespace": "out"},
        "sources": [{"events": {"table": "raw.events", "query": {
            "selects": {"k": "k", "v": "v", "s": "s"}, "timeColumn": "ts"}}}],
        "keyColumns": ["k"],
        "aggregations": aggregations,
        "backfillStartDate": "2025-01-03"
    });
    if let Some(accuracy) = accuracy {
        gb["accuracy"] = json!(accuracy);
    }
    gb
}

/// (operation code, argMap, column suffix, input column) for every
/// operation.
fn every_operation() -> Vec<(i64, Value, &'static str, &'static str)> {
    vec![
        (6, json!({}), "count", "v"),
        (7, json!({}), "sum", "v"),
        (8, json!({}), "average", "v"),
        (0, json!({}), "min", "v"),
        (1, json!({}), "max", "v"),
        (2, json!({}), "first", "v"),
        (3, json!({}), "last", "v"),
        (14, json!({"k": "3"}), "first3", "v"),
        (13, json!({"k": "3"}), "last3", "v"),
        (15, json!({"k": "2"}), "top2", "v"),
        (16, json!({"k": "2"}), "bottom2", "v"),
        (4, json!({}), "unique_count", "v"),
        (5, json!({}), "approx_unique_count", "s"),
        (9, json!({}), "variance", "v"),
        (10, json!({}), "skew", "v"),
        (11, json!({}), "kurtosis", "v"),
        (
            12,
            json!({"percentiles": "[0.5, 0.9]"}),
            "approx_percentile",
            "v",
        ),
        (17, json!({}), "histogram", "s"),
        (3, json!({}), "last", "s"),
    ]
}

#[test]
fn every_operation_and_window_matches_a_brute_force_computation() {
    let events = random_events(7);
    let windowed = [(12, 0), (1, 1), (3, 1)];
    let ops = every_operation();
    let gb_windowed = events_group_by(
        "t.windowed",
        ops.iter()
            .map(|(op, args, _, col)| aggregation(col, *op, args.clone(), &windowed))
            .collect(),
        None,
    );
    let gb_all = events_group_by(
        "t.all_history",
        ops.iter()
            .map(|(op, args, _, col)| aggregation(col, *op, args.clone(), &[]))
            .collect(),
        None,
    );
    let repo = Repo::new(
        &[
            ("group_bys/t/windowed", gb_windowed),
            ("group_bys/t/all_history", gb_all),
        ],
        &[("raw.events", events_csv(&events))],
    );
    let out = repo.run(&["run", "--until", "2025-01-10"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);

    let mut checked = 0;
    for (table, windows) in [
        ("out.t_windowed", vec!["12h", "1d", "3d"]),
        ("out.t_all_history", vec![""]),
    ] {
        for day in FIRST_DAY + 2..FIRST_DAY + DAYS {
            let end = (day + 1) * DAY_MS;
            let found = rows(&repo.root, table, &day_text(day));
            let longest = windows.iter().filter_map(|w| window_ms(w)).max();
            let mut expected_keys: Vec<i64> = (1..=5)
                .filter(|k| {
                    let from = longest.map_or(i64::MIN, |w| end - w);
                    events
                        .iter()
                        .any(|e| e.key == *k && e.ts >= from && e.ts < end)
                })
                .collect();
            expected_keys.sort();
            let mut keys: Vec<i64> = found.iter().map(|r| r["k"].as_i64().unwrap()).collect();
            keys.sort();
            assert_eq!(keys, expected_keys, "{table} keys on {}", day_text(day));
            for row in &found {
                let key = row["k"].as_i64().unwrap();
                for (_, _, suffix, column) in &ops {
                    for window in &windows {
                        let name = if window.is_empty() {
                            format!("{column}_{suffix}")
                        } else {
                            format!("{column}_{suffix}_{window}")
                        };
                        let from = window_ms(window).map_or(i64::MIN, |w| sawtooth_start(end, w));
                        let values = window_values(&events, key, column, from, end);
                        let want = brute(suffix, &values);
                        let got = &row[&name];
                        assert!(
                            close(got, &want),
                            "{table} {name} key {key} on {}: got {got}, want {want} from {values:?}",
                            day_text(day)
                        );
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked > 1000, "only {checked} values checked");
}

/// The join's left: checkouts of users `u`, some at the same time as events.
fn left_csv(events: &[Event], seed: u64) -> (String, Vec<(i64, i64, i64)>) {
    let mut rng = Rng(seed);
    let mut out = String::from("uid,ts,ds\n");
    let mut rows = Vec::new();
    for day in FIRST_DAY + 2..FIRST_DAY + DAYS {
        for _ in 0..6 {
            let uid = 1 + rng.below(6) as i64;
            // Some left rows share an event's timestamp: strictly before
            // excludes it.
            let ts = match events
                .iter()
                .find(|e| e.ts.div_euclid(DAY_MS) == day && e.key == uid)
            {
                Some(e) if rng.below(3) == 0 => e.ts,
                _ => day * DAY_MS + rng.below(DAY_MS as u64) as i64,
            };
            out.push_str(&format!("{uid},{ts},{}\n", day_text(day)));
            rows.push((uid, ts, day));
        }
    }
    (out, rows)
}

#[test]
fn the_join_is_point_in_time_correct_in_both_accuracies() {
    let events = random_events(11);
    let (left, left_rows) = left_csv(&events, 3);
    let aggs = || {
        vec![
            aggregation("v", 7, json!({}), &[(1, 1), (6, 0)]),
            aggregation("v", 6, json!({}), &[]),
            aggregation("s", 3, json!({}), &[(2, 1)]),
        ]
    };
    let temporal = events_group_by("t.temporal", aggs(), Some(0));
    let snapshot = events_group_by("t.snapshot", aggs(), Some(1));
    let join = json!({
        "metaData": {"name": "t.training", "team": "t", "outputNamespace": "out"},
        "left": {"events": {"table": "raw.checkouts", "query": {
            "selects": {"uid": "uid"}, "timeColumn": "ts", "startPartition": "2025-01-03"}}},
        "joinParts": [
            {"groupBy": temporal, "keyMapping": {"uid": "k"}},
            {"groupBy": snapshot, "keyMapping": {"uid": "k"}, "prefix": "snap"}
        ],
        "derivations": [
            {"name": "*", "expression": "*"},
            {"name": "both_sums", "expression": "IF(t_temporal_v_sum_1d IS NULL, -1, t_temporal_v_sum_1d + NVL(snap_t_snapshot_v_sum_1d, 0))"}
        ]
    });
    let repo = Repo::new(
        &[("joins/t/training", join)],
        &[("raw.events", events_csv(&events)), ("raw.checkouts", left)],
    );
    let out = repo.run(&["run", "--until", "2025-01-10"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);

    let features = [
        ("v", "sum", "1d"),
        ("v", "sum", "6h"),
        ("v", "count", ""),
        ("s", "last", "2d"),
    ];
    let mut checked = 0;
    for day in FIRST_DAY + 2..FIRST_DAY + DAYS {
        let found = rows(&repo.root, "out.t_training", &day_text(day));
        let mut expected: Vec<(i64, i64)> = left_rows
            .iter()
            .filter(|r| r.2 == day)
            .map(|r| (r.0, r.1))
            .collect();
        let mut got: Vec<(i64, i64)> = found
            .iter()
            .map(|r| (r["uid"].as_i64().unwrap(), r["ts"].as_i64().unwrap()))
            .collect();
        expected.sort();
        got.sort();
        assert_eq!(got, expected, "left rows on {}", day_text(day));
        for row in &found {
            let (uid, ts) = (row["uid"].as_i64().unwrap(), row["ts"].as_i64().unwrap());
            for (prefix, at) in [("t_temporal", ts), ("snap_t_snapshot", day * DAY_MS)] {
                for (column, op, window) in features {
                    let name = if window.is_empty() {
                        format!("{prefix}_{column}_{op}")
                    } else {
                        format!("{prefix}_{column}_{op}_{window}")
                    };
                    let from = window_ms(window).map_or(i64::MIN, |w| sawtooth_start(at, w));
                    let values = window_values(&events, uid, column, from, at);
                    let want = brute(op, &values);
                    assert!(
                        close(&row[&name], &want),
                        "{name} for uid {uid} at {ts} on {}: got {}, want {want}",
                        day_text(day),
                        row[&name]
                    );
                    checked += 1;
                }
            }
            let temporal_sum = &row["t_temporal_v_sum_1d"];
            let want = if temporal_sum.is_null() {
                json!(-1)
            } else {
                json!(
                    temporal_sum.as_f64().unwrap()
                        + row["snap_t_snapshot_v_sum_1d"].as_f64().unwrap_or(0.0)
                )
            };
            assert!(close(&row["both_sums"], &want), "derivation: {row}");
        }
    }
    assert!(checked > 300, "only {checked} values checked");
}

#[test]
fn unsupported_features_fail_the_target_with_a_clear_error_and_write_nothing() {
    let events = random_events(5);
    let mut bucketed = aggregation("v", 7, json!({}), &[(1, 1)]);
    bucketed["buckets"] = json!(["s"]);
    let spark_only = {
        let mut gb = events_group_by(
            "t.spark_only",
            vec![aggregation("v", 7, json!({}), &[(1, 1)])],
            None,
        );
        gb["sources"][0]["events"]["query"]["selects"]["v"] = json!("approx_count_distinct(v)");
        gb
    };
    let repo = Repo::new(
        &[
            (
                "group_bys/t/bucketed",
                events_group_by("t.bucketed", vec![bucketed], None),
            ),
            ("group_bys/t/spark_only", spark_only),
            (
                "group_bys/t/histogram_k",
                events_group_by(
                    "t.histogram_k",
                    vec![aggregation("s", 18, json!({"k": "3"}), &[])],
                    None,
                ),
            ),
        ],
        &[("raw.events", events_csv(&events))],
    );
    let out = repo.run(&["run", "--until", "2025-01-05"]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let said = format!("{}{}", out.stdout, out.stderr);
    assert_contains(
        &said,
        "aggregations[0].buckets: bucketed aggregations are not supported",
    );
    assert_contains(
        &said,
        "the SQL function approx_count_distinct is not available in the local engine",
    );
    assert_contains(&said, "operation APPROX_HISTOGRAM_K is not supported");
    assert_contains(&said, "run this config with the zipline");
    assert_contains(&said, "production/group_bys/t/bucketed");
    let ls = repo.run(&["warehouse", "ls"]);
    assert_eq!(ls.code, 0, "{}", ls.stderr);
    assert!(
        !ls.stdout.contains("out."),
        "nothing may be written:\n{}",
        ls.stdout
    );
}

fn demo() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("demo");
    copy_dir(&testdata("demo"), &root);
    let _ = std::fs::remove_dir_all(root.join(".chronon-build"));
    (dir, root)
}

/// The demo's purchases: (user, ts, price).
fn demo_purchases(root: &Path) -> Vec<(i64, i64, f64)> {
    let text = std::fs::read_to_string(root.join("data/purchases.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (user, ts, price) = (at("user_id"), at("ts"), at("purchase_price"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[user].parse().unwrap(),
                f[ts].parse().unwrap(),
                f[price].parse().unwrap(),
            )
        })
        .collect()
}

/// The targets a run built, as `step:config@range` lines of its summary.
fn ran(out: &Output) -> Vec<String> {
    let mut lines: Vec<String> = out
        .stdout
        .lines()
        .chain(out.stderr.lines())
        .filter_map(|l| l.strip_prefix("ran"))
        .map(|l| l.trim().split(" in ").next().unwrap().to_string())
        .collect();
    lines.sort();
    lines
}

#[test]
fn the_demo_runs_end_to_end_reruns_only_what_an_edit_changes_and_serves_features() {
    let (_dir, root) = demo();
    let run = |until: &str| chronon_build(&root, &["run", "--until", until]);
    let first = run("2025-09-29");
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    assert_contains(&first.stdout, "ok: 272 built");
    assert_contains(
        &first.stdout,
        "ran     group-by-streaming:quickstart.purchases.v1",
    );
    let again = run("2025-09-29");
    assert_eq!(again.code, 0);
    assert_contains(&again.stdout, "0 built in 0 job(s), 272 fresh");

    // The backfill's last day and the served values agree.
    let backfill = rows(&root, "quickstart.quickstart_purchases_v1", "2025-09-29");
    let user = backfill
        .iter()
        .find(|r| r["user_id"] == json!(14))
        .expect("user 14 bought in the last 30 days")
        .clone();
    let fetch = chronon_build(
        &root,
        &[
            "fetch",
            "quickstart.training_set.v1",
            "--key",
            "user_id=14",
            "--ts",
            "2025-09-30 09:00:00",
        ],
    );
    assert_eq!(fetch.code, 0, "{}", fetch.stderr);
    let served: Value = serde_json::from_str(&fetch.stdout).unwrap();
    for column in [
        "purchase_price_sum_30d",
        "purchase_price_count_14d",
        "purchase_price_last10",
    ] {
        assert_eq!(
            served["features"][format!("quickstart_purchases_v1_{column}")],
            user[column],
            "{column}"
        );
    }
    let sum = user["purchase_price_sum_30d"].as_f64().unwrap();
    let refunds = served["features"]["quickstart_returns_v1_refund_amt_sum_30d"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(close(
        &served["features"]["net_spend_30d"],
        &json!(sum - refunds)
    ));
    // The streaming head: a user who bought on 2025-09-30, after the last
    // batch upload (it ends at 2025-09-30 00:00), is served that purchase,
    // as a brute-force sawtooth count over the seed file says.
    let request = 1_759_233_600_000; // 2025-09-30 12:00 UTC
    let batch_end = 1_759_190_400_000; // 2025-09-30 00:00 UTC
    let purchases = demo_purchases(&root);
    let (buyer, _, _) = purchases
        .iter()
        .find(|(_, ts, _)| (batch_end..request).contains(ts))
        .expect("a purchase on 2025-09-30 before noon");
    let fetched = chronon_build(
        &root,
        &[
            "fetch",
            "quickstart.training_set.v1",
            "--key",
            &format!("user_id={buyer}"),
            "--ts",
            "2025-09-30 12:00:00",
        ],
    );
    assert_eq!(fetched.code, 0, "{}", fetched.stderr);
    let served: Value = serde_json::from_str(&fetched.stdout).unwrap();
    for (days, hop) in [(3, 3_600_000), (14, DAY_MS), (30, DAY_MS)] {
        let start = (request - days * DAY_MS).div_euclid(hop) * hop;
        let window: Vec<f64> = purchases
            .iter()
            .filter(|(u, ts, _)| u == buyer && (start..request).contains(ts))
            .map(|(_, _, price)| *price)
            .collect();
        assert_eq!(
            served["features"][format!("quickstart_purchases_v1_purchase_price_count_{days}d")],
            json!(window.len()),
            "count over {days}d for user {buyer}"
        );
        assert!(close(
            &served["features"][format!("quickstart_purchases_v1_purchase_price_sum_{days}d")],
            &json!(window.iter().sum::<f64>())
        ));
    }
    let unknown = chronon_build(
        &root,
        &["fetch", "quickstart.training_set.v1", "--key", "nope=1"],
    );
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);
    assert_contains(&unknown.stderr, "needs user_id");
    for user in 1..=6 {
        let ts = format!("2025-09-30 1{user}:00:00");
        let out = chronon_build(
            &root,
            &[
                "fetch",
                "quickstart.training_set.v1",
                "--key",
                &format!("user_id={user}"),
                "--ts",
                &ts,
            ],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
    }

    // The consistency chain runs on the logged requests.
    let next = run("2025-09-30");
    assert_eq!(next.code, 0, "{}\n{}", next.stdout, next.stderr);
    let metrics = rows(
        &root,
        "quickstart.quickstart_training_set_v1_consistency",
        "2025-09-30",
    );
    assert_eq!(metrics.len(), 23, "one row per served feature");
    for m in &metrics {
        assert_eq!(m["row_count"], json!(8));
        // Online (batch IR, tail hops and streaming head) and offline
        // (sawtooth windows at the request time) agree on every feature.
        assert_eq!(m["mismatch_count"], json!(0), "{m}");
        for rate in ["mismatch_rate", "online_null_rate", "offline_null_rate"] {
            let r = m[rate].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&r), "{rate} {r}");
        }
    }
    // The user snapshot is served as of the day before: no mismatch.
    let verified = metrics
        .iter()
        .find(|m| m["feature"] == json!("u_quickstart_users_v1_email_verified"))
        .unwrap();
    assert_eq!(verified["mismatch_count"], json!(0));

    // One aggregation edited: only that group-by's targets and what embeds
    // it rerun.
    let path = root.join("production/joins/quickstart/training_set.v1");
    let mut join: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    join["joinParts"][1]["groupBy"]["aggregations"][0]["windows"][0]["length"] = json!(7);
    std::fs::write(&path, serde_json::to_string_pretty(&join).unwrap()).unwrap();
    let path = root.join("production/group_bys/quickstart/returns.v1");
    let mut gb: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    gb["aggregations"][0]["windows"][0]["length"] = json!(7);
    std::fs::write(&path, serde_json::to_string_pretty(&gb).unwrap()).unwrap();
    let edited = run("2025-09-30");
    assert_eq!(edited.code, 0, "{}\n{}", edited.stdout, edited.stderr);
    assert_eq!(
        ran(&edited),
        vec![
            "build-comparison-table:quickstart.training_set.v1@2025-09-30",
            "consistency-metrics-compute:quickstart.training_set.v1@2025-09-30",
            "group-by-backfill:quickstart.returns.v1@2025-09-01..2025-09-30",
            "group-by-upload:quickstart.returns.v1@2025-09-30",
            "join-final:quickstart.training_set.v1@2025-09-01..2025-09-30",
            "join-part:quickstart.training_set.v1#quickstart_returns_v1@2025-09-01..2025-09-30",
            "metadata-upload:quickstart.returns.v1",
            "metadata-upload:quickstart.training_set.v1",
            "upload-to-kv:quickstart.returns.v1@2025-09-30",
        ]
    );
    let final_row = rows(&root, "quickstart.quickstart_training_set_v1", "2025-09-20");
    assert!(
        final_row[0]
            .get("quickstart_returns_v1_refund_amt_sum_7d")
            .is_some()
    );
}

#[test]
fn a_changed_seed_file_is_imported_again_and_what_reads_it_reruns() {
    let events = vec![Event {
        key: 1,
        ts: (FIRST_DAY + 2) * DAY_MS + 5,
        v: Some(2.0),
        s: None,
    }];
    let gb = events_group_by(
        "t.sums",
        vec![aggregation("v", 7, json!({}), &[(1, 1)])],
        None,
    );
    let mut csv = events_csv(&events);
    for day in FIRST_DAY..FIRST_DAY + 3 {
        // Every day has a partition; only 2025-01-03 has a value.
        csv.push_str(&format!("2,{},,,{}\n", day * DAY_MS, day_text(day)));
    }
    let repo = Repo::new(&[("group_bys/t/sums", gb)], &[("raw.events", csv.clone())]);
    let first = repo.run(&["run", "--until", "2025-01-03"]);
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    let sum = |repo: &Repo| -> Value {
        rows(&repo.root, "out.t_sums", "2025-01-03")
            .into_iter()
            .find(|r| r["k"] == json!(1))
            .map_or(Value::Null, |r| r["v_sum_1d"].clone())
    };
    assert_eq!(sum(&repo), json!(2));

    csv.push_str(&format!(
        "1,{},5,,2025-01-03\n",
        (FIRST_DAY + 2) * DAY_MS + 9
    ));
    std::fs::write(repo.root.join("data/raw.events.csv"), csv).unwrap();
    let again = repo.run(&["run", "--until", "2025-01-03"]);
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    assert_contains(&again.stderr, "seeded raw.events");
    assert_eq!(
        ran(&again),
        vec!["group-by-backfill:t.sums@2025-01-03"],
        "{}",
        again.stdout
    );
    assert_eq!(sum(&repo), json!(7));
    let unchanged = repo.run(&["run", "--until", "2025-01-03"]);
    assert!(!unchanged.stderr.contains("seeded"), "{}", unchanged.stderr);
}

/// Label joins as airbnb's `LabelJoin` computes them: per label_ds L, the
/// left rows of `[L - (leftStartOffset - 1), L - (leftEndOffset - 1)]` keyed
/// by their row identifier, an entities label as of L and a windowed events
/// label ending with L, in `{output}_labels` partitioned by `label_ds`.
#[test]
fn label_joins_label_the_left_days_of_each_label_ds() {
    // Left: two rows per day on 2025-01-01..10, uid 1..3; one duplicate
    // (uid, ds) a day, which the row identifier drops.
    let mut left = String::from("uid,ts,ds\n");
    let mut status = String::from("k,fraud,ds\n");
    let mut refunds = String::from("k,amt,ts,ds\n");
    for day in 0..10i64 {
        let ds = day_text(FIRST_DAY + day);
        let base = (FIRST_DAY + day) * DAY_MS;
        let uid = 1 + day % 3;
        left.push_str(&format!("{uid},{},{ds}\n", base + 1000));
        left.push_str(&format!("{uid},{},{ds}\n", base + 2000));
        left.push_str(&format!("{},{},{ds}\n", 1 + (day + 1) % 3, base + 3000));
        for k in 1..=3 {
            status.push_str(&format!("{k},{},{ds}\n", (k + day) % 2));
            refunds.push_str(&format!("{k},{},{},{ds}\n", k * 10 + day, base + 5000));
        }
    }
    let status_gb = json!({
        "metaData": {"name": "t.status", "team": "t", "outputNamespace": "out"},
        "sources": [{"entities": {"snapshotTable": "raw.status", "query": {
            "selects": {"k": "k", "fraud": "fraud"}}}}],
        "keyColumns": ["k"]
    });
    let refunds_gb = json!({
        "metaData": {"name": "t.refunds", "team": "t", "outputNamespace": "out"},
        "sources": [{"events": {"table": "raw.refunds", "query": {
            "selects": {"k": "k", "amt": "amt"}, "timeColumn": "ts"}}}],
        "keyColumns": ["k"],
        "aggregations": [aggregation("amt", 7, json!({}), &[(3, 1)])]
    });
    let join = |name: &str, labels: Vec<Value>, start: i64, end: i64| {
        json!({
            "metaData": {"name": name, "team": "t", "outputNamespace": "out"},
            "left": {"events": {"table": "raw.checkouts", "query": {
                "selects": {"uid": "uid"}, "timeColumn": "ts", "startPartition": "2025-01-01"}}},
            "joinParts": [],
            "labelPart": {"labels": labels, "leftStartOffset": start, "leftEndOffset": end}
        })
    };
    let repo = Repo::new(
        &[
            (
                "joins/t/with_agg",
                join(
                    "t.with_agg",
                    vec![
                        json!({"groupBy": status_gb.clone(), "keyMapping": {"uid": "k"}}),
                        json!({"groupBy": refunds_gb, "keyMapping": {"uid": "k"}}),
                    ],
                    3,
                    3,
                ),
            ),
            (
                "joins/t/wide",
                join(
                    "t.wide",
                    vec![json!({"groupBy": status_gb.clone(), "keyMapping": {"uid": "k"}})],
                    4,
                    2,
                ),
            ),
        ],
        &[
            ("raw.checkouts", left),
            ("raw.status", status),
            ("raw.refunds", refunds),
        ],
    );
    let out = repo.run(&["run", "--until", "2025-01-10"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_contains(&out.stdout, "label-join:t.wide");

    // The expected label rows for one label_ds.
    let expected = |label_ds: i64, start: i64, end: i64, with_sum: bool| {
        let mut rows = Vec::new();
        for day in label_ds - (start - 1)..=label_ds - (end - 1) {
            let d = day - FIRST_DAY;
            if !(0..10).contains(&d) {
                continue;
            }
            let mut uids = vec![1 + d % 3, 1 + (d + 1) % 3];
            uids.dedup();
            for uid in uids {
                let fraud = (uid + (label_ds - FIRST_DAY)) % 2;
                let sum: i64 = (label_ds - 2..=label_ds)
                    .filter(|x| (0..10).contains(&(x - FIRST_DAY)))
                    .map(|x| uid * 10 + (x - FIRST_DAY))
                    .sum();
                rows.push((uid, day_text(day), fraud, with_sum.then_some(sum)));
            }
        }
        rows.sort();
        rows
    };
    let mut checked = 0;
    for (table, start, end, with_sum, first) in [
        ("out.t_with_agg_labels", 3, 3, true, FIRST_DAY + 2),
        ("out.t_wide_labels", 4, 2, false, FIRST_DAY + 1),
    ] {
        for label_ds in first..FIRST_DAY + 10 {
            let found = rows(&repo.root, table, &day_text(label_ds));
            let mut got: Vec<(i64, String, i64, Option<i64>)> = found
                .iter()
                .map(|r| {
                    assert_eq!(r["label_ds"], json!(day_text(label_ds)), "{r}");
                    (
                        r["uid"].as_i64().unwrap(),
                        r["ds"].as_str().unwrap().to_string(),
                        r["t_status_fraud"].as_i64().unwrap(),
                        r.get("t_refunds_amt_sum_3d")
                            .map(|v| v.as_f64().unwrap() as i64),
                    )
                })
                .collect();
            got.sort();
            assert_eq!(
                got,
                expected(label_ds, start, end, with_sum),
                "{table} label_ds {}",
                day_text(label_ds)
            );
            checked += got.len();
        }
        // Nothing before the first label_ds whose window reaches the left.
        let before = repo.run(&["warehouse", "show", table, "--ds", &day_text(first - 1)]);
        assert_contains(&before.stderr, "no partition");
    }
    assert!(checked > 30, "only {checked} rows checked");
    let again = repo.run(&["run", "--until", "2025-01-10"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_contains(&again.stdout, "built in 0 job(s)");
}

/// What airbnb's Driver refuses in a label join, the engine refuses with the
/// Driver's words, and the target fails without writing.
#[test]
fn label_joins_the_driver_refuses_fail_with_its_message() {
    let mut left = String::from("uid,ts,ds\n");
    let mut status = String::from("k,fraud,ds\n");
    for day in 0..4i64 {
        let ds = day_text(FIRST_DAY + day);
        left.push_str(&format!("1,{},{ds}\n", (FIRST_DAY + day) * DAY_MS));
        status.push_str(&format!("1,1,{ds}\n"));
    }
    // An entities group-by with aggregations, as chronon-ai's own
    // sample_label_join_with_agg: the Driver asserts Events.
    let join = json!({
        "metaData": {"name": "t.bad", "team": "t", "outputNamespace": "out"},
        "left": {"events": {"table": "raw.checkouts", "query": {
            "selects": {"uid": "uid"}, "timeColumn": "ts", "startPartition": "2025-01-01"}}},
        "joinParts": [],
        "labelPart": {"labels": [{"groupBy": {
            "metaData": {"name": "t.status", "team": "t", "outputNamespace": "out"},
            "sources": [{"entities": {"snapshotTable": "raw.status", "query": {
                "selects": {"k": "k", "fraud": "fraud"}}}}],
            "keyColumns": ["k"],
            "aggregations": [aggregation("fraud", 7, json!({}), &[(1, 1)])]
        }, "keyMapping": {"uid": "k"}}], "leftStartOffset": 1, "leftEndOffset": 1}
    });
    let repo = Repo::new(
        &[("joins/t/bad", join)],
        &[("raw.checkouts", left), ("raw.status", status)],
    );
    let out = repo.run(&["run", "--until", "2025-01-04", "--step", "label-join"]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let logs = repo.run(&["logs", "label-join:t.bad"]);
    assert_contains(
        &format!("{}{}{}", out.stderr, logs.stdout, logs.stderr),
        "groupBy.dataModel must be Events for label join with aggregations t.status",
    );
    let shown = repo.run(&[
        "warehouse",
        "show",
        "out.t_bad_labels",
        "--ds",
        "2025-01-02",
    ]);
    assert_contains(&shown.stderr, "no such table");
}

/// Chronon's sawtooth windows on a TEMPORAL join, one window per size class
/// (5-minute, hour and day tail hops), with events placed on and around the
/// hop boundaries: the tail exactly at its hop (included), a millisecond
/// before it (excluded), between the hop and `ts - w` (included, where an
/// exact window would leave it out), and at `ts` (excluded).
#[test]
fn temporal_windows_hop_at_the_tail_as_chronon_s_sawtooth() {
    const HOUR: i64 = 3_600_000;
    // (window length, unit, its length in ms).
    let windows = [(1i64, 0i64, HOUR), (1, 1, DAY_MS), (14, 1, 14 * DAY_MS)];
    // Left rows on the last day, at times that are not on any hop.
    let last = FIRST_DAY + DAYS - 1;
    let lefts: Vec<i64> = vec![
        last * DAY_MS + 7 * HOUR + 17 * 60_000 + 4321,
        last * DAY_MS + 13 * HOUR + 42 * 60_000 + 999,
    ];
    let mut events = Vec::new();
    let mut value = 1.0;
    for &at in &lefts {
        for (_, _, w) in windows {
            let tail = sawtooth_start(at, w);
            assert!(tail < at - w, "the tail must hop below ts - w");
            for ts in [tail, tail - 1, (tail + at - w) / 2, at - 1, at] {
                events.push(Event {
                    key: 1,
                    ts,
                    v: Some(value),
                    s: Some(format!("x{value}")),
                });
                value += 1.0;
            }
        }
    }
    events.sort_by_key(|e| e.ts);
    let aggs = vec![
        aggregation("v", 7, json!({}), &windows.map(|(l, u, _)| (l, u))),
        aggregation("v", 6, json!({}), &windows.map(|(l, u, _)| (l, u))),
    ];
    let gb = events_group_by("t.hops", aggs, Some(0));
    let mut left = String::from("uid,ts,ds\n");
    for at in &lefts {
        left.push_str(&format!("1,{at},{}\n", day_text(last)));
    }
    let join = json!({
        "metaData": {"name": "t.sawtooth", "team": "t", "outputNamespace": "out"},
        "left": {"events": {"table": "raw.checkouts", "query": {
            "selects": {"uid": "uid"}, "timeColumn": "ts", "startPartition": day_text(last)}}},
        "joinParts": [{"groupBy": gb, "keyMapping": {"uid": "k"}}]
    });
    let repo = Repo::new(
        &[("joins/t/sawtooth", join)],
        &[("raw.events", events_csv(&events)), ("raw.checkouts", left)],
    );
    let out = repo.run(&["run", "--until", &day_text(last)]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let found = rows(&repo.root, "out.t_sawtooth", &day_text(last));
    assert_eq!(found.len(), lefts.len());
    let mut differs_from_exact = 0;
    for row in &found {
        let at = row["ts"].as_i64().unwrap();
        for (length, unit, w) in windows {
            let suffix = if unit == 0 {
                format!("{length}h")
            } else {
                format!("{length}d")
            };
            let sawtooth = window_values(&events, 1, "v", sawtooth_start(at, w), at);
            let exact = window_values(&events, 1, "v", at - w, at);
            if sawtooth.len() != exact.len() {
                differs_from_exact += 1;
            }
            for (op, name) in [("sum", "sum"), ("count", "count")] {
                let column = format!("t_hops_v_{name}_{suffix}");
                let want = brute(op, &sawtooth);
                assert!(
                    close(&row[&column], &want),
                    "{column} at {at}: got {}, want {want} (exact window: {})",
                    row[&column],
                    brute(op, &exact)
                );
            }
        }
    }
    assert_eq!(
        differs_from_exact, 6,
        "every window class must differ from an exact window"
    );
}

/// What `fetch` serves for a TEMPORAL group-by with a topic equals the
/// offline sawtooth value at the request time, for every operation and
/// window size class (under 12 hours, 12 hours to 12 days, 12 days and
/// over, unwindowed), at requests from the batch end to the end of the
/// two-day tail buffer: the batch IR (collapsed part and tail hops) plus
/// the streaming head the deployed job folds. A request before the batch
/// end gets no values and Chronon's exception.
#[test]
fn online_values_match_the_offline_sawtooth_at_the_request_time() {
    let events = random_events(23);
    let windows = [(6, 0), (12, 0), (1, 1), (2, 1), (5, 1), (12, 1)];
    let ops = every_operation();
    let mut aggregations: Vec<Value> = ops
        .iter()
        .map(|(op, args, _, col)| aggregation(col, *op, args.clone(), &windows))
        .collect();
    aggregations.extend(
        ops.iter()
            .map(|(op, args, _, col)| aggregation(col, *op, args.clone(), &[])),
    );
    let mut gb = events_group_by("t.online", aggregations, None);
    gb["metaData"]["online"] = json!(1);
    gb["sources"][0]["events"]["topic"] = json!("kafka://events");
    let join = json!({
        "metaData": {"name": "t.serve", "team": "t", "outputNamespace": "out", "online": 1},
        "left": {"events": {"table": "raw.events", "query": {
            "selects": {"k": "k"}, "timeColumn": "ts", "startPartition": "2025-01-09"}}},
        "joinParts": [{"groupBy": gb.clone()}]
    });
    let repo = Repo::new(
        &[("group_bys/t/online", gb), ("joins/t/serve", join)],
        &[("raw.events", events_csv(&events))],
    );
    // The batch ends at the start of 2025-01-07; 2025-01-07..10 are the head.
    let out = repo.run(&["run", "--until", "2025-01-06"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_contains(&out.stdout, "ran     group-by-streaming:t.online");
    let batch_end = (FIRST_DAY + 6) * DAY_MS;
    let window_names = ["6h", "12h", "1d", "2d", "5d", "12d", ""];
    let fetch = |key: i64, at: i64| -> Value {
        let out = repo.run(&[
            "fetch",
            "t.serve",
            "--key",
            &format!("k={key}"),
            "--ts",
            &at.to_string(),
        ]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        serde_json::from_str(&out.stdout).unwrap()
    };
    let mut checked = 0;
    let offsets = [
        0,
        1,
        299_999,
        3_600_000,
        13 * 3_600_000 + 7,
        DAY_MS,
        2 * DAY_MS - 1,
    ];
    for offset in offsets {
        let at = batch_end + offset;
        for key in 1..=5 {
            let served = fetch(key, at);
            for window in window_names {
                if let Some(w) = window_ms(window) {
                    // Chronon's batch leaves out an event exactly at the
                    // batch's window tail; none is there in this data.
                    assert!(!events.iter().any(|e| e.ts == batch_end - w));
                }
                let from = window_ms(window).map_or(i64::MIN, |w| sawtooth_start(at, w));
                for (_, _, suffix, column) in &ops {
                    let name = if window.is_empty() {
                        format!("t_online_{column}_{suffix}")
                    } else {
                        format!("t_online_{column}_{suffix}_{window}")
                    };
                    let values = window_values(&events, key, column, from, at);
                    let want = brute(suffix, &values);
                    let got = &served["features"][&name];
                    assert!(
                        close(got, &want),
                        "{name} key {key} at batch end + {offset} ms: got {got}, want {want} \
                         from {values:?}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 3000, "only {checked} values checked");

    let early = fetch(1, batch_end - 1);
    assert!(early["features"]["t_online_v_sum_1d"].is_null(), "{early}");
    assert_contains(
        &early["exceptions"]["t_online_exception"].to_string(),
        "is less than batch time",
    );
}
