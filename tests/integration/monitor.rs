//! Monitoring through the real binary, on states prepared by real runs of
//! the scenario with the fake zipline: `status`, `history`, `logs`, the
//! alerting hooks, `run --metrics-file` (checked by the `prometheus_client`
//! parser), `graph --format mermaid` and the HTML report (rendered by
//! headless Chromium).

use std::path::Path;

use serde_json::Value;

use crate::run::Pipeline;
use crate::{assert_contains, assert_error};

const UNTIL: &str = "2025-01-10";
const FAIL_MERCHANTS: (&str, &str) = ("FAKE_ZIPLINE_FAIL", "staging-query:risk.merchants.v1");

/// `run --until UNTIL --progress plain --backoff 0s` and more arguments,
/// with more environment.
fn run(p: &Pipeline, more: &[&str], env: &[(&str, &str)]) -> crate::Output {
    let mut args = vec![
        "run",
        "--until",
        UNTIL,
        "--progress",
        "plain",
        "--backoff",
        "0s",
    ];
    args.extend(more);
    p.run_with(&args, env)
}

/// A pipeline whose first run failed the merchants staging query.
fn failed_once(settings: &str, more: &[&str]) -> (Pipeline, crate::Output) {
    let p = Pipeline::new(settings);
    let out = run(&p, more, &[FAIL_MERCHANTS]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    (p, out)
}

fn json(out: &crate::Output) -> Value {
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

fn node<'a>(status: &'a Value, target: &str) -> &'a Value {
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["target"] == target)
        .unwrap_or_else(|| panic!("no {target} in {status:#}"))
}

#[test]
fn status_says_per_config_and_step_what_is_fresh_failed_and_behind() {
    let (p, _) = failed_once("", &[]);
    let status = json(&p.run(&["status", "--until", UNTIL, "--format", "json"]));
    assert_eq!(status["until"], UNTIL);
    crate::assert_valid(
        &crate::schema("status.schema.json"),
        &status,
        "status --format json",
    );

    // Its step_days is 7: two jobs, both failed.
    let merchants = node(&status, "staging-query:risk.merchants.v1");
    assert_eq!(merchants["failed"], 10, "{merchants:#}");
    assert_eq!(merchants["fresh"], 0);
    assert_eq!(merchants["built"], false);
    assert_eq!(merchants["last_built"], Value::Null);
    assert_eq!(merchants["behind_days"], Value::Null);
    let attempt = &merchants["last_attempt"];
    assert_eq!(attempt["result"], "failed");
    assert_eq!(attempt["exit_code"], 1);
    assert_eq!(attempt["run"], 1);
    assert!(
        attempt["log"].as_str().unwrap().ends_with(".attempt1.log"),
        "{attempt:#}"
    );

    // Downstream of the failure: not built, and not failed itself.
    let profile = node(&status, "group-by-backfill:risk.merchant_profile.v1");
    assert_eq!(profile["failed"], 0);
    assert_eq!(profile["fresh"], 0);
    let waiting = profile["waiting"].as_u64().unwrap() + profile["stale"].as_u64().unwrap();
    assert_eq!(waiting, 6, "{profile:#}");
    assert_eq!(profile["last_attempt"], Value::Null);

    let purchases = node(&status, "group-by-backfill:risk.purchases.v1");
    // Its 4-day window starts it on the 5th.
    assert_eq!(purchases["fresh"], 6, "{purchases:#}");
    assert_eq!(purchases["stale"], 0);
    assert_eq!(purchases["last_built"], UNTIL);
    assert_eq!(purchases["behind_days"], 0);
    assert_eq!(purchases["last_attempt"]["result"], "ok");
    assert_eq!(status["lag_days"]["risk.purchases.v1"], 0);
    assert_eq!(status["lag_days"]["risk.merchants.v1"], Value::Null);

    // A day later, the fresh partitions are one day behind.
    let later = json(&p.run(&["status", "--until", "2025-01-11", "--format", "json"]));
    let purchases = node(&later, "group-by-backfill:risk.purchases.v1");
    assert_eq!(purchases["behind_days"], 1);
    assert_eq!(purchases["blocked"], 1, "{purchases:#}");

    let text = p.run(&["status", "--until", UNTIL, "--select", "risk.merchants.v1"]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert_contains(&text.stdout, "risk.merchants.v1  [risk]");
    assert!(
        text.stdout.lines().any(|l| l.starts_with("  staging-query")
            && l.contains("never")
            && l.contains("failed in run 1 @2025-01-")
            && l.contains("exit 1")),
        "{}",
        text.stdout
    );
    assert_contains(
        &text.stdout,
        "0 of 1 config(s) fresh up to 2025-01-10; 10 failed partition(s)",
    );
    assert!(
        !text.stdout.contains("risk.purchases.v1"),
        "{}",
        text.stdout
    );
    assert_eq!(p.run(&["status", "--until", UNTIL, "--exit-code"]).code, 4);
    let staging = json(&p.run(&[
        "status",
        "--until",
        UNTIL,
        "--step",
        "staging-query",
        "--format",
        "json",
    ]));
    let nodes = staging["nodes"].as_array().unwrap();
    assert!(!nodes.is_empty());
    assert!(
        nodes.iter().all(|n| n["step"] == "staging-query"),
        "{staging:#}"
    );

    // The failure mended: the next run builds it, and status says so.
    p.build(&[], 0);
    let status = json(&p.run(&["status", "--until", UNTIL, "--format", "json"]));
    let merchants = node(&status, "staging-query:risk.merchants.v1");
    assert_eq!(merchants["failed"], 0);
    assert_eq!(merchants["fresh"], 10);
    assert_eq!(merchants["last_attempt"]["result"], "ok");
    assert_eq!(merchants["last_attempt"]["run"], 2);

    // Forced stale, then failed: failed, though the planner names `forced`
    // first.
    let forced = p.run(&[
        "invalidate",
        "staging-query:risk.merchants.v1",
        "--from",
        "2025-01-09",
        "--to",
        UNTIL,
    ]);
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    let out = run(&p, &[], &[FAIL_MERCHANTS]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    let status = json(&p.run(&["status", "--until", UNTIL, "--format", "json"]));
    let merchants = node(&status, "staging-query:risk.merchants.v1");
    assert_eq!(
        (merchants["fresh"].as_u64(), merchants["failed"].as_u64()),
        (Some(8), Some(2)),
        "{merchants:#}"
    );
    assert_eq!(merchants["stale"], 0);
}

#[test]
fn history_lists_runs_and_attempts_and_logs_prints_the_latest_log() {
    let (p, _) = failed_once("", &[]);
    p.build(&[], 0);

    let text = p.run(&["history"]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    let run2 = text.stdout.find("run 2 ").expect("run 2 listed");
    let run1 = text.stdout.find("run 1 ").expect("run 1 listed");
    assert!(run2 < run1, "newest first:\n{}", text.stdout);
    assert_contains(
        &text.stdout,
        "  FAILED staging-query:risk.merchants.v1@2025-01-01..2025-01-07  attempt 1  exit 1",
    );
    assert_contains(&text.stdout, "  failed in ");
    assert_contains(&text.stdout, " run --until 2025-01-10 --progress plain");
    assert_contains(&text.stdout, "log: ");
    // Compact by default: a line per run, the failed attempts with their
    // logs; every attempt and its command with --verbose.
    assert_contains(&text.stdout, " attempt(s), 2 failed  ");
    assert!(!text.stdout.contains("--mode backfill"), "{}", text.stdout);
    assert!(!text.stdout.contains("  ok     "), "{}", text.stdout);
    let verbose = p.run(&["history", "-v"]);
    assert_contains(
        &verbose.stdout,
        "compiled/staging_queries/risk/risk.merchants.v1 --mode backfill",
    );
    assert_contains(&verbose.stdout, "  ok     ");
    assert!(verbose.stdout.lines().count() > text.stdout.lines().count());

    let failed = json(&p.run(&["history", "--failed", "--format", "json"]));
    let runs = failed.as_array().unwrap();
    assert_eq!(runs.len(), 1, "{failed:#}");
    assert_eq!(runs[0]["id"], 1);
    assert_eq!(runs[0]["result"], "failed");
    let attempts = runs[0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "the staging query's two jobs");
    let a = attempts
        .iter()
        .find(|a| a["start_ds"] == "2025-01-01")
        .expect("the first job");
    assert_eq!(
        a["target"],
        "staging-query:risk.merchants.v1@2025-01-01..2025-01-07"
    );
    assert_eq!(a["exit_code"], 1);
    assert_eq!(a["attempt"], 1);
    assert!(
        a["argv"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x == "compiled/staging_queries/risk/risk.merchants.v1")
    );
    let log = a["log"].as_str().unwrap();
    assert!(
        std::fs::read_to_string(log)
            .unwrap()
            .contains("failing staging-query")
    );

    let all = json(&p.run(&[
        "history",
        "--format",
        "json",
        "--select",
        "risk.purchases.*",
    ]));
    let runs = all.as_array().unwrap();
    assert_eq!(runs.len(), 1, "only run 1 built risk.purchases.v1: {all:#}");
    for a in runs[0]["attempts"].as_array().unwrap() {
        assert_eq!(a["config"], "risk.purchases.v1");
        assert_eq!(a["exit_code"], 0);
        assert!(a["duration_seconds"].as_f64().unwrap() >= 0.0);
    }
    let none = p.run(&["history", "--since", "2999-01-01"]);
    assert_eq!(none.code, 0);
    assert_contains(&none.stdout, "no runs in the history");
    assert_eq!(
        json(&p.run(&["history", "--limit", "1", "--format", "json"]))
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // The latest attempt of the target is run 2's, which succeeded.
    let logs = p.run(&["logs", "staging-query:risk.merchants.v1"]);
    assert_eq!(logs.code, 0, "{}", logs.stderr);
    assert_contains(&logs.stdout, "fake-zipline: wrote");
    assert_contains(&logs.stderr, "run 2 attempt 1 (exit 0)");
    let path = p.run(&[
        "logs",
        "staging-query:risk.merchants.v1@2025-01-03",
        "--path",
    ]);
    assert!(
        path.stdout
            .trim()
            .ends_with("run-2/staging-query/risk.merchants.v1/2025-01-01_2025-01-07.attempt1.log"),
        "{}",
        path.stdout
    );
    assert_error(
        &p.run(&["logs", "staging-query:risk.merchants.v1@2025-01-11"]),
        "no attempt in the history",
    );
    assert_error(
        &p.run(&["logs", "risk.merchants.v1"]),
        "expected STEP:CONFIG",
    );
}

/// A hook that writes its arguments and `CHRONON_BUILD_*` variables to a
/// file per call, then exits with `$HOOK_EXIT` (default 0).
fn hook_script(dir: &Path) -> String {
    let path = dir.join("hook.sh");
    std::fs::write(
        &path,
        "#!/bin/sh\nmkdir -p \"$HOOK_OUT\"\n\
         { echo \"args=$*\"; env | grep '^CHRONON_BUILD_' | sort; } > \"$HOOK_OUT/call$$\"\n\
         echo hook ran\nexit \"${HOOK_EXIT:-0}\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

/// Each call of the hook: its variables by name.
fn hook_calls(dir: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut calls: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_else(|_| Vec::new());
    calls.sort();
    calls
        .iter()
        .map(|path| {
            std::fs::read_to_string(path)
                .unwrap()
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

#[test]
fn on_failure_runs_once_per_failed_job_after_retries_with_its_details() {
    let dir = tempfile::tempdir().unwrap();
    let script = hook_script(dir.path());
    let out_dir = dir.path().join("calls");
    let settings = format!(
        "[hooks]\non_failure = [{script:?}, \"--channel\", \"#risk alerts\"]\non_success_run = [{script:?}, \"success\"]\n"
    );
    let p = Pipeline::new(&settings);
    let out = run(
        &p,
        &["--retries", "1"],
        &[FAIL_MERCHANTS, ("HOOK_OUT", out_dir.to_str().unwrap())],
    );
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let calls = hook_calls(&out_dir);
    // The staging query runs in two jobs of at most 7 days: both failed.
    assert_eq!(
        calls.len(),
        2,
        "one call per failed job, not per attempt, and no success hook: {calls:#?}"
    );
    let call = calls
        .iter()
        .find(|c| c["CHRONON_BUILD_START_DS"] == "2025-01-01")
        .expect("the first job's call");
    assert_eq!(
        calls
            .iter()
            .map(|c| c["CHRONON_BUILD_END_DS"].as_str())
            .collect::<std::collections::BTreeSet<_>>(),
        ["2025-01-07", "2025-01-10"].into()
    );
    let want = [
        ("args", "--channel #risk alerts"),
        ("CHRONON_BUILD_EVENT", "failure"),
        ("CHRONON_BUILD_RUN_ID", "1"),
        ("CHRONON_BUILD_CONFIG", "risk.merchants.v1"),
        ("CHRONON_BUILD_STEP", "staging-query"),
        ("CHRONON_BUILD_PART", ""),
        ("CHRONON_BUILD_TEAM", "risk"),
        ("CHRONON_BUILD_START_DS", "2025-01-01"),
        ("CHRONON_BUILD_END_DS", "2025-01-07"),
        ("CHRONON_BUILD_EXIT_CODE", "1"),
        ("CHRONON_BUILD_REASON", "exit code 1"),
        ("CHRONON_BUILD_ATTEMPTS", "2"),
        (
            "CHRONON_BUILD_TARGET",
            "staging-query:risk.merchants.v1@2025-01-01..2025-01-07",
        ),
    ];
    for (key, value) in want {
        assert_eq!(
            call.get(key).map(String::as_str),
            Some(value),
            "{key} in {call:#?}"
        );
    }
    let log = &call["CHRONON_BUILD_LOG"];
    assert!(log.ends_with("2025-01-01_2025-01-07.attempt2.log"), "{log}");
    assert_contains(
        &std::fs::read_to_string(log).unwrap(),
        "failing staging-query:risk.merchants.v1",
    );
    assert!(
        call["CHRONON_BUILD_FILE"].ends_with("risk.merchants.v1"),
        "{call:#?}"
    );
    // The hook's output went to its own log.
    let hook_log =
        p.s.repo
            .join(".chronon-build/logs/run-1/hooks/on-failure.1.log");
    assert_contains(&std::fs::read_to_string(hook_log).unwrap(), "hook ran");

    // The next run ends well: on_success_run, once, with the summary.
    std::fs::remove_dir_all(&out_dir).unwrap();
    let out = run(&p, &[], &[("HOOK_OUT", out_dir.to_str().unwrap())]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let calls = hook_calls(&out_dir);
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let call = &calls[0];
    assert_eq!(call["args"], "success");
    assert_eq!(call["CHRONON_BUILD_EVENT"], "success-run");
    assert_eq!(call["CHRONON_BUILD_RUN_ID"], "2");
    assert_eq!(call["CHRONON_BUILD_OUTCOME"], "ok");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(&call["CHRONON_BUILD_SUMMARY"]).unwrap())
            .unwrap();
    assert_eq!(summary["outcome"], "ok");
    assert_eq!(summary["run_id"], 2);
    assert_eq!(call["CHRONON_BUILD_BUILT"], summary["built"].to_string());
    assert!(summary["built"].as_u64().unwrap() > 0);

    // A run with nothing to do still ends well and says so.
    std::fs::remove_dir_all(&out_dir).unwrap();
    run(&p, &[], &[("HOOK_OUT", out_dir.to_str().unwrap())]);
    assert_eq!(hook_calls(&out_dir)[0]["CHRONON_BUILD_BUILT"], "0");
}

#[test]
fn a_failing_or_missing_hook_does_not_change_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let script = hook_script(dir.path());
    let out_dir = dir.path().join("calls");
    let env = [
        FAIL_MERCHANTS,
        ("HOOK_OUT", out_dir.to_str().unwrap()),
        ("HOOK_EXIT", "7"),
    ];
    let p = Pipeline::new("");
    let out = run(&p, &["--on-failure", &script, "--format", "json"], &env);
    assert_eq!(
        out.code, 1,
        "the run's own result: {}\n{}",
        out.stdout, out.stderr
    );
    let summary: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(summary["outcome"], "failed");
    let problems = summary["hook_failures"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{summary:#}");
    assert_contains(problems[0].as_str().unwrap(), "exited with exit status: 7");
    assert_eq!(hook_calls(&out_dir).len(), 2);
    // What the run built was recorded: only the failed part remains.
    let status = json(&p.run(&["status", "--until", UNTIL, "--format", "json"]));
    assert_eq!(
        node(&status, "group-by-backfill:risk.purchases.v1")["stale"],
        0
    );
    assert_eq!(
        node(&status, "staging-query:risk.merchants.v1")["failed"],
        10
    );

    // A success hook that cannot start: the run is still ok, with a warning.
    let out = run(&p, &["--on-success-run", "/nonexistent/notify"], &[]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_contains(
        &out.stdout,
        "warning: on_success_run hook [\"/nonexistent/notify\"]: cannot start",
    );
    assert_contains(&out.stdout, "ok: ");
    let history = json(&p.run(&["history", "--limit", "1", "--format", "json"]));
    assert_eq!(history[0]["result"], "ok");

    // A hook that hangs is killed after hooks.timeout; the run goes on.
    let hang = dir.path().join("hang.sh");
    std::fs::write(&hang, "#!/bin/sh\nexec sleep 30\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hang, std::fs::Permissions::from_mode(0o755)).unwrap();
    let p = Pipeline::new("[hooks]\ntimeout = \"1s\"\n");
    let started = std::time::Instant::now();
    let out = run(
        &p,
        &["--on-failure", hang.to_str().unwrap()],
        &[FAIL_MERCHANTS],
    );
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert_contains(&out.stdout, "killed after its timeout of 1s");
    assert!(started.elapsed() < std::time::Duration::from_secs(25));
}

/// The metrics file's samples as the `prometheus_client` parser reads them:
/// (name, labels, value).
fn parse_prometheus(path: &Path) -> Vec<(String, std::collections::BTreeMap<String, String>, f64)> {
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
text = open(sys.argv[1]).read()
out = []
for family in text_string_to_metric_families(text):
    assert family.documentation, family.name
    assert family.type in ("gauge", "histogram"), (family.name, family.type)
    for s in family.samples:
        out.append([s.name, s.labels, s.value])
print(json.dumps(out))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .output()
        .expect("python3 runs (.ci/run installs prometheus_client)");
    assert!(
        out.status.success(),
        "the prometheus_client parser refused the file:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(path).unwrap()
    );
    let samples: Vec<(String, std::collections::BTreeMap<String, String>, f64)> =
        serde_json::from_slice(&out.stdout).unwrap();
    samples
}

#[test]
fn metrics_file_is_prometheus_text_with_targets_durations_failures_and_lag() {
    let parser = std::process::Command::new("python3")
        .args(["-c", "import prometheus_client"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !crate::tool_or_skip(
        "metrics_file_is_prometheus_text_with_targets_durations_failures_and_lag",
        parser,
        "python3 with prometheus_client is missing",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("chronon.prom");
    let (p, out) = failed_once(
        "",
        &[
            "--retries",
            "1",
            "--metrics-file",
            metrics.to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    let summary: Value = serde_json::from_str(&out.stdout).unwrap();
    let samples = parse_prometheus(&metrics);
    let get = |name: &str, labels: &[(&str, &str)]| -> f64 {
        let hits: Vec<f64> = samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
            .collect();
        assert_eq!(hits.len(), 1, "{name} {labels:?} in {samples:#?}");
        hits[0]
    };
    assert_eq!(
        get(
            "chronon_build_run_info",
            &[("run_id", "1"), ("result", "failed")]
        ),
        1.0
    );
    assert_eq!(
        get("chronon_build_run_targets", &[("status", "built")]),
        summary["built"].as_f64().unwrap()
    );
    let upstream: u64 = summary["left"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["outcome"] == "upstream-failed")
        .map(|l| l["count"].as_u64().unwrap())
        .sum();
    assert!(upstream > 0);
    assert_eq!(
        get(
            "chronon_build_run_targets",
            &[("status", "upstream_failed")]
        ),
        upstream as f64
    );
    // Two jobs of the staging query, each tried twice.
    assert_eq!(
        get("chronon_build_job_failures", &[("step", "staging-query")]),
        2.0
    );
    assert_eq!(
        get("chronon_build_job_retries", &[("step", "staging-query")]),
        2.0
    );
    assert_eq!(
        get(
            "chronon_build_job_failures",
            &[("step", "group-by-backfill")]
        ),
        0.0
    );
    assert_eq!(
        get(
            "chronon_build_targets",
            &[("step", "staging-query"), ("status", "failed")]
        ),
        10.0
    );
    // Every attempt is in the histogram: four of the staging query, one
    // per other job.
    let jobs = summary["ran"].as_array().unwrap().len() as f64;
    let counted: f64 = samples
        .iter()
        .filter(|(n, _, _)| n == "chronon_build_job_duration_seconds_count")
        .map(|(_, _, v)| v)
        .sum();
    assert_eq!(counted, jobs + 4.0);
    let inf = get(
        "chronon_build_job_duration_seconds_bucket",
        &[("step", "staging-query"), ("le", "+Inf")],
    );
    assert_eq!(inf, 4.0);
    assert_eq!(
        get(
            "chronon_build_freshness_lag_days",
            &[("config", "risk.purchases.v1"), ("team", "risk")]
        ),
        0.0
    );
    assert_eq!(
        get(
            "chronon_build_config_never_fresh",
            &[("config", "risk.merchants.v1")]
        ),
        1.0
    );
    assert!(get("chronon_build_run_duration_seconds", &[]) > 0.0);

    // The next run replaces the file.
    p.build(&["--metrics-file", metrics.to_str().unwrap()], 0);
    let samples = parse_prometheus(&metrics);
    assert!(samples.iter().any(|(n, l, v)| n == "chronon_build_run_info"
        && l["run_id"] == "2"
        && l["result"] == "ok"
        && *v == 1.0));
    assert!(
        !samples
            .iter()
            .any(|(n, _, _)| n == "chronon_build_config_never_fresh")
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left beside it");
}

/// `graph --format mermaid` lines, checked for shape: a header, node
/// declarations, and edges between declared ids only.
fn mermaid(p: &Pipeline, select: &str) -> Vec<String> {
    let out = p.run(&["graph", "--format", "mermaid", "--select", select]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<String> = out.stdout.lines().map(str::to_string).collect();
    assert_eq!(lines[0], "flowchart LR");
    let is_edge = |l: &str| l.contains(" --> ") || l.contains(" -.-> ");
    let declared: Vec<&str> = lines[1..]
        .iter()
        .filter(|l| !is_edge(l))
        .map(|l| l.trim().split(['[', '(']).next().unwrap())
        .collect();
    for edge in lines.iter().filter(|l| is_edge(l)) {
        let parts: Vec<&str> = edge.split_whitespace().collect();
        assert_eq!(parts.len(), 3, "{edge}");
        assert!(
            declared.contains(&parts[0]) && declared.contains(&parts[2]),
            "{edge}\n{}",
            out.stdout
        );
    }
    lines
}

fn mermaid_id(lines: &[String], declaration: &str) -> String {
    let line = lines
        .iter()
        .find(|l| l.ends_with(declaration))
        .unwrap_or_else(|| panic!("{declaration} in\n{}", lines.join("\n")));
    line.trim().split(['[', '(']).next().unwrap().to_string()
}

#[test]
fn graph_mermaid_draws_targets_and_edges_with_names_escaped() {
    let p = Pipeline::new("");
    let lines = mermaid(&p, "risk.purchases.v1");
    let upload = mermaid_id(&lines, "[\"group-by-upload<br/>risk.purchases.v1\"]");
    let kv = mermaid_id(&lines, "[\"upload-to-kv<br/>risk.purchases.v1\"]");
    let raw = mermaid_id(&lines, "[(\"raw.purchases\")]");
    let backfill = mermaid_id(&lines, "[\"group-by-backfill<br/>risk.purchases.v1\"]");
    for edge in [
        format!("  {upload} --> {kv}"),
        format!("  {raw} --> {backfill}"),
    ] {
        assert!(lines.contains(&edge), "{edge} in\n{}", lines.join("\n"));
    }

    // A producer outside the selection is drawn as such; characters that
    // mean something to Mermaid (`=`, `:`) become entities.
    let lines = mermaid(&p, "risk.merchant_profile.v1");
    let staging = mermaid_id(&lines, "([\"staging-query#58;risk.merchants.v1\"])");
    let mutations = mermaid_id(&lines, "[(\"raw.merchant_mutations/hr#61;00#58;00\")]");
    let backfill = mermaid_id(
        &lines,
        "[\"group-by-backfill<br/>risk.merchant_profile.v1\"]",
    );
    for edge in [
        format!("  {staging} --> {backfill}"),
        format!("  {mutations} --> {backfill}"),
    ] {
        assert!(lines.contains(&edge), "{edge} in\n{}", lines.join("\n"));
    }
}

/// Headless Chromium (Debian's `chromium`), as `.ci/run` installs it.
fn chromium(args: &[&str]) -> std::process::Output {
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--window-size=1400,900",
        ])
        .args(args)
        .output()
        .expect("chromium runs (.ci/run installs Debian's chromium package)");
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Appended to a copy of the report: every grid cell's row, days, health,
/// computed colour, tooltip and box, and the page's other parts, as JSON in
/// `<pre id="probe">`.
const PROBE: &str = r#"<script>
(function () {
  var cells = [];
  document.querySelectorAll('.grid .row[data-target] .track i').forEach(function (i) {
    var r = i.getBoundingClientRect();
    cells.push({target: i.closest('.row').dataset.target, from: i.dataset.from, to: i.dataset.to,
      health: i.dataset.health, color: getComputedStyle(i).backgroundColor, title: i.title,
      x: r.x, y: r.y, w: r.width, h: r.height});
  });
  var links = [];
  document.querySelectorAll('tr.failure a').forEach(function (a) { links.push(a.getAttribute('href')); });
  var charts = [];
  document.querySelectorAll('.chart').forEach(function (c) {
    var text = function (cls) { var t = c.querySelector('text.' + cls); return t ? t.textContent : null; };
    charts.push({step: c.dataset.step, points: c.querySelectorAll('circle').length,
      yMax: text('y-max'), xFrom: text('x-from'), xTo: text('x-to')});
  });
  var pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify({cells: cells, links: links, charts: charts,
    scripts: document.scripts.length, external: document.querySelectorAll('[src],link,img').length});
  document.body.appendChild(pre);
})();
</script>"#;

#[test]
fn report_is_a_self_contained_page_whose_grid_chromium_renders_in_the_right_colours() {
    let present = std::process::Command::new("chromium")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !crate::tool_or_skip(
        "report_is_a_self_contained_page_whose_grid_chromium_renders_in_the_right_colours",
        present,
        "Chromium is missing",
    ) {
        return;
    }
    let (p, _) = failed_once("", &["--retries", "1"]);
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.html");
    let out = p.run(&[
        "report",
        "--until",
        "2025-01-11",
        "--days",
        "14",
        "--out",
        report.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let html = std::fs::read_to_string(&report).unwrap();
    for external in ["http://", "https://", "<link", " src=", "@import", "url("] {
        assert!(!html.contains(external), "{external} in the page");
    }

    // --select narrows the rows; --failures bounds the list; --days 0 is refused.
    let narrow = dir.path().join("narrow.html");
    let out = p.run(&[
        "report",
        "--until",
        "2025-01-11",
        "--days",
        "14",
        "--select",
        "risk.merchants.v1",
        "--failures",
        "1",
        "--out",
        narrow.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let narrow = std::fs::read_to_string(&narrow).unwrap();
    assert_eq!(narrow.matches("<div class=\"row\" data-target=").count(), 1);
    assert!(narrow.contains("data-target=\"staging-query:risk.merchants.v1\""));
    assert_eq!(narrow.matches("<tr class=\"failure\">").count(), 1);
    assert_error(
        &p.run(&["report", "--days", "0", "--out", "x.html"]),
        "--days: expected at least 1",
    );

    // Probe a copy in Chromium, at the size of the screenshot.
    let probe = dir.path().join("probe.html");
    std::fs::write(&probe, html.replace("</body>", &format!("{PROBE}</body>"))).unwrap();
    let dom = chromium(&[
        "--virtual-time-budget=5000",
        "--dump-dom",
        &format!("file://{}", probe.display()),
    ]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    let start = dom.find("<pre id=\"probe\">").expect("the probe ran") + "<pre id=\"probe\">".len();
    let end = start + dom[start..].find("</pre>").unwrap();
    let text = dom[start..end]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    let probed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(probed["external"], 0);
    assert_eq!(probed["scripts"], 2, "the page's own script and the probe");

    let cells = probed["cells"].as_array().unwrap();
    let cell = |target: &str, day: &str| -> &Value {
        cells
            .iter()
            .find(|c| {
                c["target"] == target
                    && c["from"].as_str().unwrap() <= day
                    && day <= c["to"].as_str().unwrap()
            })
            .unwrap_or_else(|| panic!("no cell of {target} on {day}"))
    };
    let expect = [
        (
            "staging-query:risk.merchants.v1",
            "2025-01-05",
            "failed",
            "rgb(207, 34, 46)",
        ),
        (
            "staging-query:risk.merchants.v1",
            "2024-12-30",
            "not-wanted",
            "rgb(234, 238, 242)",
        ),
        (
            "staging-query:risk.merchants.v1",
            "2025-01-11",
            "blocked",
            "rgb(130, 80, 223)",
        ),
        (
            "group-by-backfill:risk.purchases.v1",
            "2025-01-07",
            "fresh",
            "rgb(45, 164, 78)",
        ),
        (
            "group-by-backfill:risk.purchases.v1",
            "2025-01-04",
            "not-wanted",
            "rgb(234, 238, 242)",
        ),
        (
            "group-by-backfill:risk.purchases.v1",
            "2025-01-11",
            "blocked",
            "rgb(130, 80, 223)",
        ),
        (
            "group-by-backfill:risk.merchant_profile.v1",
            "2025-01-06",
            "stale",
            "rgb(212, 167, 44)",
        ),
    ];
    for (target, day, health, color) in expect {
        let c = cell(target, day);
        assert_eq!(c["health"], health, "{target} {day}: {c:#}");
        assert_eq!(c["color"], color, "{target} {day}: {c:#}");
        assert!(
            c["w"].as_f64().unwrap() > 0.0 && c["h"].as_f64().unwrap() > 0.0,
            "{c:#}"
        );
    }
    let failed = cell("staging-query:risk.merchants.v1", "2025-01-05");
    assert_eq!(failed["from"], "2025-01-01");
    assert_eq!(failed["to"], "2025-01-10");
    assert_contains(
        failed["title"].as_str().unwrap(),
        "2025-01-01..2025-01-10 (10 days): stale: previous-run-failed (run 1)",
    );
    let blocked = cell("group-by-backfill:risk.purchases.v1", "2025-01-11");
    assert_contains(
        blocked["title"].as_str().unwrap(),
        "blocked: missing raw.purchases ds=2025-01-11",
    );

    // Every row covers the 14 days, edge to edge, on one line.
    let mut rows: std::collections::BTreeMap<&str, Vec<&Value>> = Default::default();
    for c in cells {
        rows.entry(c["target"].as_str().unwrap())
            .or_default()
            .push(c);
    }
    let day_width = 14.0;
    for (target, row) in &rows {
        let width: f64 = row.iter().map(|c| c["w"].as_f64().unwrap()).sum();
        assert!((width - 14.0 * day_width).abs() < 0.5, "{target}: {width}");
        for pair in row.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            assert!(
                (a["x"].as_f64().unwrap() + a["w"].as_f64().unwrap() - b["x"].as_f64().unwrap())
                    .abs()
                    < 0.5
            );
            assert_eq!(a["y"], b["y"], "{target}");
        }
    }

    // Durations: one chart per step that ran, one point per attempt.
    let charts = probed["charts"].as_array().unwrap();
    let staging = charts
        .iter()
        .find(|c| c["step"] == "staging-query")
        .expect("a staging-query chart");
    assert_eq!(staging["points"], 4, "two jobs, two attempts each");
    // Readable axes on a history of seconds: a round, non-zero top, and
    // two distinct times (not the same date twice).
    for chart in charts {
        let top = chart["yMax"].as_str().unwrap();
        let number: f64 = top
            .trim_end_matches(|c: char| c.is_ascii_alphabetic())
            .parse()
            .unwrap_or(0.0);
        assert!(number > 0.0 && top.ends_with('s'), "{chart}");
        if let Some(to) = chart["xTo"].as_str() {
            assert_ne!(chart["xFrom"].as_str().unwrap(), to, "{chart}");
            assert!(to.len() > 10, "a time, not a date: {chart}");
        }
    }
    // Failures: the latest first, each linking to its log, relative to the page.
    let links = probed["links"].as_array().unwrap();
    assert_eq!(links.len(), 4, "{links:#?}");
    for link in links {
        let path = dir.path().join(link.as_str().unwrap());
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .contains("failing staging-query"),
            "{}",
            path.display()
        );
    }

    // The screenshot shows the failed cell red and the fresh one green.
    let shot = dir.path().join("report.png");
    chromium(&[
        &format!("--screenshot={}", shot.display()),
        &format!("file://{}", report.display()),
    ]);
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    let channels = frame.line_size / frame.width as usize;
    let pixel = |c: &Value| -> [u8; 3] {
        let x = (c["x"].as_f64().unwrap() + c["w"].as_f64().unwrap() / 2.0) as usize;
        let y = (c["y"].as_f64().unwrap() + c["h"].as_f64().unwrap() / 2.0) as usize;
        assert!(
            y < frame.height as usize,
            "the cell is inside the screenshot: {c:#}"
        );
        let at = y * frame.line_size + x * channels;
        [pixels[at], pixels[at + 1], pixels[at + 2]]
    };
    assert_eq!(pixel(failed), [207, 34, 46]);
    assert_eq!(
        pixel(cell("group-by-backfill:risk.purchases.v1", "2025-01-07")),
        [45, 164, 78]
    );
    assert_eq!(pixel(blocked), [130, 80, 223]);
}
