//! Outputs that do not depend on how the repository got there: daily runs
//! and one backfill write the same partitions even with late events, and a
//! warehouse re-imported over an old one equals a fresh import when a
//! source's inferred column types change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::{chronon_build, copy_dir, show_rows, testdata};

/// A fresh copy of the demo, without the demo's built state.
fn demo(dir: &Path, name: &str) -> PathBuf {
    let root = dir.join(name);
    copy_dir(&testdata("demo"), &root);
    let _ = std::fs::remove_dir_all(root.join(".chronon-build"));
    root
}

fn run(root: &Path, until: &str) {
    let out = chronon_build(root, &["run", "--until", until]);
    assert_eq!(
        out.code, 0,
        "run --until {until}\n{}\n{}",
        out.stdout, out.stderr
    );
}

/// Every partition of every table: (table, partition) -> fingerprint (the
/// rows, with their values' types).
fn partitions(root: &Path) -> BTreeMap<(String, String), String> {
    let ls = chronon_build(root, &["warehouse", "ls", "--format", "json"]);
    assert_eq!(ls.code, 0, "{}", ls.stderr);
    let entries: Vec<Value> = serde_json::from_str(&ls.stdout).unwrap();
    entries
        .iter()
        .map(|e| {
            let text = |k: &str| e[k].as_str().unwrap().to_string();
            ((text("table"), text("partition")), text("fingerprint"))
        })
        .collect()
}

/// Asserts that every partition of `clean` is in `other` with the same
/// rows (and `other` has no table `clean` lacks); names the first few that
/// differ, with their rows.
fn assert_same_partitions(clean: &Path, other: &Path, what: &str) {
    let (a, b) = (partitions(clean), partitions(other));
    let tables = |m: &BTreeMap<(String, String), String>| {
        m.keys()
            .map(|(t, _)| t.clone())
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(tables(&a), tables(&b), "{what}: the tables differ");
    let differ: Vec<&(String, String)> = a
        .iter()
        .filter(|(k, f)| b.get(*k) != Some(*f))
        .map(|(k, _)| k)
        .collect();
    if let Some((table, day)) = differ.first() {
        let rows = |root: &Path| {
            let rows = show_rows(root, table, day);
            let mut rows: Vec<String> = rows
                .as_array()
                .unwrap()
                .iter()
                .map(Value::to_string)
                .collect();
            rows.sort();
            rows
        };
        let (x, y) = (rows(clean), rows(other));
        let only_clean: Vec<&String> = x.iter().filter(|r| !y.contains(r)).take(3).collect();
        let only_other: Vec<&String> = y.iter().filter(|r| !x.contains(r)).take(3).collect();
        panic!(
            "{what}: {} partition(s) differ, first {table} {day}:\n  clean only: {only_clean:?}\n  \
             other only: {only_other:?}\n  all: {differ:?}",
            differ.len()
        );
    }
}

const FIRST: i32 = 20_332; // 2025-09-01

fn day(d: i32) -> String {
    chronon_build::partition::Day(FIRST + d).to_string()
}

#[test]
fn daily_runs_and_one_backfill_agree_with_late_and_time_zone_shifted_events() {
    let dir = tempfile::tempdir().unwrap();
    let daily = demo(dir.path(), "daily");
    // A purchase of 2025-09-09 12:00 that lands in 2025-09-29 (late), and
    // one of 2025-09-14 23:30 UTC in the next day's partition (a producer
    // east of UTC), for users with other purchases.
    let late = (FIRST as i64 + 8) * 86_400_000 + 12 * 3_600_000;
    let shifted = (FIRST as i64 + 13) * 86_400_000 + 23 * 3_600_000 + 1_800_000;
    let mut csv = std::fs::read_to_string(daily.join("data/purchases.csv")).unwrap();
    csv.push_str(&format!("p-late-0,14,99.5,{late},{}\n", day(28)));
    csv.push_str(&format!("p-shifted-0,9,42.25,{shifted},{}\n", day(14)));
    std::fs::write(daily.join("data/purchases.csv"), csv).unwrap();
    let backfill = dir.path().join("backfill");
    copy_dir(&daily, &backfill);

    for d in 0..29 {
        run(&daily, &day(d));
    }
    run(&backfill, &day(28));
    assert_same_partitions(&backfill, &daily, "one backfill against daily runs");
}
