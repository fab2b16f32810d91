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
    chronon_build::testing::Day(FIRST + d).to_string()
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

/// Per column of `table`: its declared type, and per partition its values
/// with their SQLite types, read from the namespace file.
fn table_dump(warehouse: &Path, table: &str) -> (Vec<(String, String)>, Vec<String>) {
    let (ns, name) = table.split_once('.').unwrap();
    let conn = rusqlite::Connection::open_with_flags(
        warehouse.join(format!("{ns}.sqlite")),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let declared: Vec<(String, String)> = conn
        .prepare(&format!("PRAGMA table_info(\"{name}\")"))
        .unwrap()
        .query_map([], |r| Ok((r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let typed: Vec<String> = declared
        .iter()
        .map(|(c, _)| format!("\"{c}\", typeof(\"{c}\")"))
        .collect();
    let mut stmt = conn
        .prepare(&format!("SELECT {} FROM \"{name}\"", typed.join(", ")))
        .unwrap();
    let n = declared.len() * 2;
    let mut rows: Vec<String> = stmt
        .query_map([], |r| {
            let values: Vec<rusqlite::types::Value> =
                (0..n).map(|i| r.get(i)).collect::<Result<_, _>>()?;
            Ok(format!("{values:?}"))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows.sort();
    (declared, rows)
}

fn import(root: &Path, warehouse: &Path, table: &str, file: &str) {
    let out = chronon_build(
        root,
        &[
            "warehouse",
            "import",
            table,
            &root.join(file).display().to_string(),
            "--warehouse",
            &warehouse.display().to_string(),
        ],
    );
    assert_eq!(out.code, 0, "import {file}: {}", out.stderr);
}

#[test]
fn a_reimport_whose_inferred_types_change_equals_a_fresh_import_of_the_same_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let write = |name: &str, text: &str| std::fs::write(root.join(name), text).unwrap();
    // Two files feed one table: a.csv the first days, b.csv the next.
    write(
        "a.csv",
        "user_id,price,ds\n1,10.5,2025-09-01\n2,0.30000000000000004,2025-09-02\n",
    );
    write(
        "b1.csv",
        "user_id,price,ds\n3,7.25,2025-09-03\n4,8.5,2025-09-04\n",
    );
    // The new b: a guest user (ids become text), whole prices (INTEGER).
    write(
        "b2.csv",
        "user_id,price,ds\n3,7,2025-09-03\nguest,8,2025-09-04\n",
    );
    // The new a: whole prices too.
    write(
        "a2.csv",
        "user_id,price,ds\n1,10,2025-09-01\n2,3,2025-09-02\n",
    );
    let (old, fresh) = (root.join("old"), root.join("fresh"));
    let table = "data.purchases";
    import(root, &old, table, "a.csv");
    import(root, &old, table, "b1.csv");
    for files in [
        vec!["a.csv", "b2.csv"],
        vec!["a.csv", "b1.csv"],
        vec!["a2.csv", "b2.csv"],
        vec!["a2.csv", "b1.csv"],
    ] {
        // Over the old warehouse: only the file that changed.
        for file in &files {
            import(root, &old, table, file);
        }
        let _ = std::fs::remove_dir_all(&fresh);
        for file in &files {
            import(root, &fresh, table, file);
        }
        let (a, b) = (table_dump(&old, table), table_dump(&fresh, table));
        assert_eq!(a, b, "{files:?}: a re-import against a fresh import");
        let ls = |w: &Path| {
            let out = chronon_build(
                root,
                &["warehouse", "ls", table, "--format", "json", "--warehouse"]
                    .into_iter()
                    .chain([w.to_str().unwrap()])
                    .collect::<Vec<_>>(),
            );
            let entries: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
            entries
                .iter()
                .map(|e| (e["partition"].clone(), e["fingerprint"].clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(ls(&old), ls(&fresh), "{files:?}: fingerprints");
    }
}

#[test]
fn a_source_whose_user_ids_gain_a_guest_builds_as_a_clean_checkout_does() {
    let dir = tempfile::tempdir().unwrap();
    let incremental = demo(dir.path(), "incremental");
    run(&incremental, &day(28));
    // Two purchases by a guest: a fresh import reads user_id as text.
    let path = incremental.join("data/purchases.csv");
    let mut csv = std::fs::read_to_string(&path).unwrap();
    for (i, d) in [(0, 10), (1, 20)] {
        let ts = (FIRST + d) as i64 * 86_400_000 + 3_600_000;
        csv.push_str(&format!("p-guest-{i},guest,12.5,{ts},{}\n", day(d)));
    }
    std::fs::write(&path, csv).unwrap();
    run(&incremental, &day(28));
    let clean = dir.path().join("clean");
    copy_dir(&incremental, &clean);
    std::fs::remove_dir_all(clean.join(".chronon-build")).unwrap();
    run(&clean, &day(28));
    let warehouse = |root: &Path| root.join(".chronon-build/warehouse");
    assert_eq!(
        table_dump(&warehouse(&incremental), "data.purchases"),
        table_dump(&warehouse(&clean), "data.purchases"),
        "the source, re-imported over the old one and imported fresh"
    );
    assert_same_partitions(
        &clean,
        &incremental,
        "an incremental build against a clean one",
    );
}
