//! Chronon's own quickstart (`testdata/quickstart`: the configs compiled by
//! the real chronon-ai compiler, the data as airbnb/chronon ships it) on
//! the embedded default, as a new user runs it.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Output, assert_contains, chronon_build, copy_dir, show_rows, testdata};

const DAY_MS: i64 = 86_400_000;
/// 2023-11-30 00:00 UTC: where a batch uploaded for 2023-11-29 ends.
const BATCH_END: i64 = 1_701_302_400_000;

fn quickstart() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("quickstart");
    copy_dir(&testdata("quickstart"), &root);
    let _ = std::fs::remove_dir_all(root.join(".chronon-build"));
    (dir, root)
}

/// The returns as the sample data has them: (user, ds, ts, refund).
fn returns(root: &Path) -> Vec<(String, String, i64, f64)> {
    let text = std::fs::read_to_string(root.join("data/returns.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (user, ds, ts, refund) = (at("user_id"), at("ds"), at("ts"), at("refund_amt"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[user].to_string(),
                f[ds].to_string(),
                f[ts].parse().unwrap(),
                f[refund].parse().unwrap(),
            )
        })
        .collect()
}

fn built(out: &Output) -> usize {
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix("ok: "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no ok line:\n{}\n{}", out.stdout, out.stderr))
}

#[test]
fn chronon_s_quickstart_runs_end_to_end_and_serves_the_streaming_head() {
    let (_dir, root) = quickstart();
    let serving = [
        "run",
        "--until",
        "2023-11-29",
        "--select",
        "quickstart.{purchases,returns,users}.v1",
    ];
    let first = chronon_build(&root, &serving);
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    assert_contains(
        &first.stdout,
        "ran     group-by-streaming:quickstart.returns.v1",
    );
    assert_contains(
        &first.stdout,
        "ran     upload-to-kv:quickstart.users.v1@2023-11-29",
    );
    let again = chronon_build(&root, &serving);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(built(&again), 0, "{}", again.stdout);

    // A user with a return on 2023-11-30 before noon, after the batch: the
    // TEMPORAL returns features include it. The reference reads the batch
    // as Chronon does (partitions up to 2023-11-29, times before the batch
    // end) and the topic by time (every event at or after the batch end).
    let request = BATCH_END + 12 * 3_600_000;
    let all = returns(&root);
    let (user, _, _, _) = all
        .iter()
        .find(|(_, _, ts, _)| (BATCH_END..request).contains(ts))
        .expect("a return on 2023-11-30 before noon")
        .clone();
    let seen: Vec<(i64, f64)> = all
        .iter()
        .filter(|(u, ds, ts, _)| *u == user && (ds.as_str() <= "2023-11-29" || *ts >= BATCH_END))
        .map(|(_, _, ts, r)| (*ts, *r))
        .collect();
    let fetch = chronon_build(
        &root,
        &[
            "fetch",
            "quickstart.training_set.v2",
            "--key",
            &format!("user_id={user}"),
            "--ts",
            "2023-11-30 12:00:00",
        ],
    );
    assert_eq!(fetch.code, 0, "{}", fetch.stderr);
    let served: Value = serde_json::from_str(&fetch.stdout).unwrap();
    let features = &served["features"];
    let mut head_counted = false;
    for days in [3, 14, 30] {
        // Windows of 12 days and more hop by a day, shorter ones by an hour.
        let hop = if days >= 12 { DAY_MS } else { 3_600_000 };
        let start = (request - days * DAY_MS).div_euclid(hop) * hop;
        let window: Vec<f64> = seen
            .iter()
            .filter(|(ts, _)| (start..request).contains(ts))
            .map(|(_, r)| *r)
            .collect();
        let count = &features[format!("quickstart_returns_v1_refund_amt_count_{days}d")];
        assert_eq!(
            count.as_u64(),
            Some(window.len() as u64),
            "{days}d: {features}"
        );
        let sum = features[format!("quickstart_returns_v1_refund_amt_sum_{days}d")]
            .as_f64()
            .unwrap();
        assert!(
            (sum - window.iter().sum::<f64>()).abs() < 1e-9,
            "{days}d sum"
        );
        head_counted |= seen
            .iter()
            .any(|(ts, _)| (BATCH_END..request).contains(ts) && *ts >= start);
    }
    assert!(head_counted, "the head event is in a window");

    // The join backfill, on the day the checkouts have.
    let training = [
        "run",
        "--until",
        "2023-11-30",
        "--select",
        "quickstart.training_set.*",
    ];
    let joins = chronon_build(&root, &training);
    assert_eq!(joins.code, 0, "{}\n{}", joins.stdout, joins.stderr);
    assert_contains(
        &joins.stdout,
        "ran     join-final:quickstart.training_set.v2@2023-11-30",
    );
    let rows = show_rows(&root, "default.quickstart_training_set_v2", "2023-11-30");
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 200, "one row per checkout");
    let features = rows
        .iter()
        .filter(|r| !r["quickstart_returns_v1_refund_amt_sum_30d"].is_null())
        .count();
    assert!(
        features > 100,
        "{features} of 200 rows have a 30-day refund sum"
    );
    let again = chronon_build(&root, &training);
    assert_eq!(built(&again), 0, "{}", again.stdout);

    // Everything: what the sample data cannot feed is blocked, and only
    // that (exit 3). The fetch logged in Chronon's layout, so the
    // quickstart's own schema group-by reads the published schema.
    let all = chronon_build(&root, &["run", "--until", "2023-11-30"]);
    assert_eq!(all.code, 3, "{}\n{}", all.stdout, all.stderr);
    for line in all.stdout.lines().filter(|l| l.starts_with("blocked ")) {
        let users = line.contains(":quickstart.users.v1@2023-11-30 ")
            && line.contains("missing data.users ds=2023-11-30");
        let schema = line.contains("group-by-backfill:quickstart.schema.v1@")
            && line.contains("missing default.chronon_log_table");
        assert!(users || schema, "unexpected: {line}");
    }
    assert_contains(
        &all.stdout,
        "ran     group-by-backfill:quickstart.schema.v1@2023-11-30",
    );
    let schema = show_rows(&root, "default.quickstart_schema_v1", "2023-11-30");
    let published: Value =
        serde_json::from_str(schema[0]["schema_value_last"].as_str().unwrap()).unwrap();
    assert_eq!(
        published["key_schema"],
        serde_json::json!(["user_id"]),
        "{published}"
    );
}
