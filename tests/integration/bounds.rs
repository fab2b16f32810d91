//! Bounds on the local engine's jobs (issue 31): a runaway query fails its
//! target within a memory or time bound, on by default, with a message
//! naming the target, the bound and the setting to raise; the run goes on
//! with the rest, and nothing is recorded for the failed target.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{Output, assert_contains, chronon_build, copy_dir, show_rows, testdata};

/// Runs the binary, but gives up on it after `limit`: then the run is sent
/// SIGTERM (which stops its jobs too) and the test fails. A runaway job
/// without a bound would otherwise hold the test (and the machine) for as
/// long as it lives.
fn run_within(repo: &Path, args: &[&str], limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = crate::command(repo)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            // SAFETY: signals the child this test started.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let out = Output::from(child.wait_with_output().unwrap());
            panic!(
                "{args:?} did not finish within {limit:?}\n{}\n{}",
                out.stdout, out.stderr
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (
        Output::from(child.wait_with_output().unwrap()),
        started.elapsed(),
    )
}

/// Generous: the machine may be busy, and the bounds are seconds.
const FINISHED: Duration = Duration::from_secs(600);

/// Per recorded target of a step: (day, key, output, write sequence).
fn recorded(repo: &Path, step: &str) -> Vec<(i64, String, String, i64)> {
    let hex = |bytes: &[u8]| -> String { bytes.iter().map(|b| format!("{b:02X}")).collect() };
    crate::state_db::StateDb::open(repo)
        .rows(
            "SELECT t.day, t.key, t.output, t.seq FROM targets t \
             JOIN nodes n ON n.id = t.node WHERE n.step = ?1 ORDER BY t.day",
            &[crate::state_db::Cell::Text(step.to_string())],
        )
        .iter()
        .map(|r| (r[0].int(), hex(r[1].bytes()), hex(r[2].bytes()), r[3].int()))
        .collect()
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut value: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut value);
    std::fs::write(path, serde_json::to_string_pretty(&value).unwrap()).unwrap();
}

/// An endless recursive CTE, the one typo a pull request needs.
const ENDLESS: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c)\n";

/// The demo's staging query turned into a runaway (an endless recursive
/// CTE crossed with its table) fails within the default bounds (the test
/// sets none: half the machine's memory shared by the run's jobs), naming
/// itself, the bound and the setting; what does not read it is built;
/// what it had recorded, and its table, stay as they were.
#[test]
fn an_endless_recursive_staging_query_fails_within_the_default_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("demo");
    copy_dir(&testdata("demo"), &root);
    let _ = std::fs::remove_dir_all(root.join(".chronon-build"));
    let (first, _) = run_within(&root, &["run", "--until", "2025-09-01"], FINISHED);
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    let table = "quickstart.quickstart_checkouts_v1";
    let before = recorded(&root, "staging-query");
    assert_eq!(before.len(), 1, "{before:?}");
    let rows_before = show_rows(&root, table, "2025-09-01");

    edit_json(
        &root.join("production/staging_queries/quickstart/checkouts.v1"),
        |sq| {
            sq["query"] = json!(format!(
                "{ENDLESS}SELECT checkout_id, user_id, ts, ds, printf('%.1000c', 'x') AS note\n\
                 FROM data.checkouts, c\n\
                 WHERE ds BETWEEN '{{{{ start_date }}}}' AND '{{{{ end_date }}}}' AND user_id IS NOT NULL"
            ))
        },
    );
    let (out, took) = run_within(&root, &["run", "--until", "2025-09-02"], FINISHED);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let target = "staging-query:quickstart.checkouts.v1@2025-09-01..2025-09-02";
    assert_contains(
        &out.stdout,
        &format!("FAILED  {target} (stopped after using "),
    );
    assert_contains(
        &out.stdout,
        ", the memory bound (the default: half of this machine's ",
    );
    assert_contains(
        &out.stdout,
        "raise [bounds] memory (or [bounds.steps.staging-query] memory) in chronon-build.toml",
    );
    // The job's own log says it too, under its target's name.
    assert_contains(
        &out.stdout,
        &format!("| error: {target}: stopped after using "),
    );
    // What does not read it was built; what does was not run.
    assert_contains(
        &out.stdout,
        "ran     group-by-backfill:quickstart.purchases.v1@2025-09-02",
    );
    assert_contains(
        &out.stdout,
        "upstream-failed join-left:quickstart.training_set.v1@2025-09-01..2025-09-02",
    );
    assert_eq!(recorded(&root, "staging-query"), before);
    assert_eq!(show_rows(&root, table, "2025-09-01"), rows_before);
    let ls = chronon_build(&root, &["warehouse", "ls", table]);
    let partitions: Vec<&str> = ls
        .stdout
        .split_whitespace()
        .filter(|w| w.starts_with("2025-"))
        .collect();
    assert_eq!(partitions, ["2025-09-01"], "{}", ls.stdout);
    eprintln!("the runaway run ended in {took:?}");
}

/// A repository on the embedded warehouse: a group-by `t.g` over seeded
/// `raw.events`, and a staging query `t.sq` running `query`, both from
/// 2025-01-02; `settings` first in chronon-build.toml.
fn repo(query: &str, settings: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    std::fs::create_dir_all(root.join("data")).unwrap();
    let mut csv = String::from("k,v,ts,ds\n");
    for day in 1..=3 {
        let ts = 1_735_689_600_000i64 + (day - 1) * 86_400_000 + 1000;
        csv.push_str(&format!("1,{day},{ts},2025-01-0{day}\n"));
    }
    std::fs::write(root.join("data/events.csv"), csv).unwrap();
    std::fs::write(root.join("teams.json"), r#"{"t": {"namespace": "out"}}"#).unwrap();
    write_settings(&root, settings);
    let group_by = json!({
        "metaData": {"name": "t.g", "team": "t", "outputNamespace": "out"},
        "sources": [{"events": {"table": "raw.events", "query": {
            "selects": {"k": "k", "v": "v"}, "timeColumn": "ts"}}}],
        "keyColumns": ["k"],
        "aggregations": [{"inputColumn": "v", "operation": 7, "windows": [{"length": 2, "timeUnit": 1}]}],
        "backfillStartDate": "2025-01-02"
    });
    let staging = json!({
        "metaData": {"name": "t.sq", "team": "t", "outputNamespace": "out"},
        "query": query,
        "startPartition": "2025-01-02"
    });
    for (path, config) in [
        ("production/group_bys/t/g", group_by),
        ("production/staging_queries/t/sq", staging),
    ] {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    }
    (dir, root)
}

fn write_settings(root: &Path, settings: &str) {
    std::fs::write(
        root.join("chronon-build.toml"),
        format!("{settings}\n[warehouse.seed]\n\"raw.events\" = \"data/events.csv\"\n"),
    )
    .unwrap();
}

/// A tight memory bound set for one step stops its job as the result it
/// builds grows past it (some 250 MB of rows, of which the engine would
/// write three); the other step's job is built. Raised, the same job
/// builds: the bound, not the query, stopped it.
#[test]
fn a_tight_memory_bound_stops_a_job_building_a_big_result() {
    let query = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 200000)\n\
                 SELECT x AS id, printf('%.1000c', 'x') AS note,\n\
                 CASE WHEN x <= 3 THEN '{{ start_date }}' ELSE '1970-01-01' END AS ds FROM c";
    let (_dir, root) = repo(query, "[bounds.steps.staging-query]\nmemory = \"64MiB\"\n");
    let (out, _) = run_within(&root, &["run", "--until", "2025-01-02"], FINISHED);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert_contains(
        &out.stdout,
        "FAILED  staging-query:t.sq@2025-01-02 (stopped after using 64 MiB, the memory bound; \
         raise [bounds.steps.staging-query] memory in chronon-build.toml, 1 attempt(s))",
    );
    assert_contains(
        &out.stdout,
        "| error: staging-query:t.sq@2025-01-02: stopped after using 64 MiB, the memory bound",
    );
    assert_contains(&out.stdout, "ran     group-by-backfill:t.g@2025-01-02");
    assert!(recorded(&root, "staging-query").is_empty());
    assert_eq!(recorded(&root, "group-by-backfill").len(), 1);

    write_settings(&root, "[bounds.steps.staging-query]\nmemory = \"1GiB\"\n");
    let (out, _) = run_within(&root, &["run", "--until", "2025-01-02"], FINISHED);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_contains(&out.stdout, "ran     staging-query:t.sq@2025-01-02");
    assert_eq!(
        show_rows(&root, "out.t_sq", "2025-01-02")
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

/// A tight time bound stops a job that runs without end and holds no more
/// memory as it goes (counting an endless CTE): the job stops itself at
/// the bound, long before the runner's own backstop would.
#[test]
fn a_tight_time_bound_stops_an_endless_job() {
    let query = format!("{ENDLESS}SELECT count(*) AS n, '{{{{ start_date }}}}' AS ds FROM c");
    let settings = "[bounds]\ntime = \"2s\"\n[bounds.steps.group-by-backfill]\ntime = \"10m\"\n";
    let (_dir, root) = repo(&query, settings);
    let (out, took) = run_within(&root, &["run", "--until", "2025-01-02"], FINISHED);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert_contains(
        &out.stdout,
        "FAILED  staging-query:t.sq@2025-01-02 (stopped after 2s, the time bound; \
         raise [bounds] time (or [bounds.steps.staging-query] time) in chronon-build.toml, 1 attempt(s))",
    );
    assert_contains(
        &out.stdout,
        "| error: staging-query:t.sq@2025-01-02: stopped after 2s, the time bound",
    );
    assert_contains(&out.stdout, "ran     group-by-backfill:t.g@2025-01-02");
    assert!(recorded(&root, "staging-query").is_empty());
    eprintln!("the endless run ended in {took:?}");
}
