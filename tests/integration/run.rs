//! `run`, `adopt` and `invalidate` through the real binary, with a fixture
//! standing in for `zipline` (tests/fixtures/fake-zipline): it records its
//! argv and writes the output partitions into the hive-dir warehouse.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::scenario::seed_sources;
use crate::{Output, Scenario, assert_contains};

const UNTIL: &str = "2025-01-10";

/// The scenario with the fake zipline as its executor.
pub struct Pipeline {
    pub s: Scenario,
    pub env: BTreeMap<String, String>,
}

pub fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-zipline")
}

impl Pipeline {
    pub fn new(settings: &str) -> Pipeline {
        let s = Scenario::copy("scenario");
        seed_sources(&s, 10);
        std::fs::write(
            s.repo.join("chronon-build.toml"),
            format!(
                "[executor]\nkind = \"zipline\"\nprogram = [{:?}]\n{settings}\n[warehouse]\nkind = \"hive-dir\"\nfingerprint = \"content\"\n",
                fixture().display().to_string()
            ),
        )
        .unwrap();
        let mut env = BTreeMap::new();
        env.insert(
            "FAKE_ZIPLINE_LOG".into(),
            s.repo.join("calls").display().to_string(),
        );
        env.insert(
            "FAKE_ZIPLINE_WAREHOUSE".into(),
            s.repo.join("warehouse").display().to_string(),
        );
        Pipeline { s, env }
    }

    pub fn command(&self, args: &[&str], extra: &[(&str, &str)]) -> Command {
        let mut cmd = crate::command(&self.s.repo);
        cmd.args(args).envs(&self.env);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn run_with(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let out = self.command(args, extra).output().unwrap();
        Output::from(out)
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &[])
    }

    /// `run --until UNTIL` and more arguments; asserts the exit code.
    pub fn build(&self, more: &[&str], code: i32) -> Output {
        let mut args = vec!["run", "--until", UNTIL, "--progress", "plain"];
        args.extend(more);
        let out = self.run(&args);
        assert_eq!(
            out.code, code,
            "stdout:\n{}\nstderr:\n{}",
            out.stdout, out.stderr
        );
        out
    }

    /// Every argv the fake zipline got, in order (program name left out).
    pub fn calls(&self) -> Vec<Vec<String>> {
        let text = std::fs::read_to_string(self.s.repo.join("calls")).unwrap_or_default();
        text.lines()
            .map(|l| {
                l.split('\u{1f}')
                    .filter(|a| !a.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .collect()
    }

    pub fn clear_calls(&self) {
        let _ = std::fs::remove_file(self.s.repo.join("calls"));
    }

    /// Calls as `mode conf-file [selected part] start..end`, sorted.
    pub fn call_summary(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .calls()
            .iter()
            .map(|argv| {
                let get = |flag: &str| {
                    argv.iter()
                        .position(|a| a == flag)
                        .and_then(|i| argv.get(i + 1))
                        .cloned()
                };
                // zipline-ai >= 1.0.13: the config is the first argument.
                let conf = argv.first().cloned().unwrap_or_default();
                let conf = conf.rsplit('/').next().unwrap_or_default().to_string();
                let mut line = format!("{} {conf}", get("--mode").unwrap_or_default());
                if let Some(part) = get("--selected-join-parts") {
                    line.push_str(&format!(" #{part}"));
                }
                match (get("--start-ds"), get("--end-ds"), get("--ds")) {
                    (Some(a), Some(b), _) => line.push_str(&format!(" {a}..{b}")),
                    (_, _, Some(d)) => line.push_str(&format!(" {d}")),
                    _ => {}
                }
                line
            })
            .collect();
        out.sort();
        out
    }

    /// No two calls for one (mode, config, part) cover the same day.
    pub fn assert_no_day_ran_twice(&self) {
        let mut ranges: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for call in self.call_summary() {
            let Some((target, days)) = call.rsplit_once(' ') else {
                continue;
            };
            let (from, to) = days.split_once("..").unwrap_or((days, days));
            if from.len() == 10 && to.len() == 10 {
                let range = (from.to_string(), to.to_string());
                ranges.entry(target.to_string()).or_default().push(range);
            }
        }
        for (target, mut days) in ranges {
            days.sort();
            for pair in days.windows(2) {
                assert!(pair[0].1 < pair[1].0, "{target} ran twice: {pair:?}");
            }
        }
    }

    /// Plan JSON: ranges not fresh, as `target from..to why`.
    pub fn not_fresh(&self) -> Vec<String> {
        let out = self.run(&["plan", "--until", UNTIL, "--format", "json"]);
        crate::not_fresh(&out)
    }

    /// How many targets are not fresh.
    pub fn not_fresh_count(&self) -> u64 {
        let out = self.run(&["plan", "--until", UNTIL, "--format", "json"]);
        crate::plan_groups(&out)
            .iter()
            .filter(|g| g["status"] != "fresh")
            .map(|g| g["count"].as_u64().unwrap())
            .sum()
    }

    pub fn spawn(&self, args: &[&str], extra: &[(&str, &str)]) -> Child {
        self.command(args, extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    pub fn wait_for_calls(&self, n: usize) {
        wait_until("no calls came", || self.calls().len() >= n);
    }
}

/// How many job processes of runs of the repository at `repo` still run:
/// those that carry their runner's tag in their environment and name the
/// repository's configs on their command line.
pub fn jobs_left(repo: &Path) -> usize {
    let repo = repo.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            std::fs::read(e.path().join("environ"))
                .is_ok_and(|env| String::from_utf8_lossy(&env).contains("CHRONON_BUILD_RUNNER="))
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&repo))
        .count()
}

/// Polls `done` until it holds; fails after 30 s with `what`.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(30), "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn finish(child: Child) -> Output {
    let out = child.wait_with_output().unwrap();
    Output::from(out)
}

#[test]
fn only_stale_targets_run_and_a_second_run_runs_nothing() {
    let p = Pipeline::new("");
    let out = p.build(&["-j", "2"], 0);
    // How ready days batch into range jobs depends on which upstream jobs
    // end together (53 jobs usually, 52 when both staging-query jobs end
    // before the runner looks), so the count is read, not assumed.
    let jobs: usize = out
        .stdout
        .split_once("ok: 124 built in ")
        .and_then(|(_, rest)| rest.split_once(" job(s), 0 fresh"))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary line in:\n{}", out.stdout));
    assert!((40..=53).contains(&jobs), "{jobs} jobs");
    assert_eq!(p.calls().len(), jobs);
    p.assert_no_day_ran_twice();
    assert_eq!(p.not_fresh(), Vec::<String>::new());

    p.clear_calls();
    let out = p.build(&[], 0);
    assert_contains(&out.stdout, "ok: 0 built in 0 job(s), 124 fresh");
    assert!(p.calls().is_empty());
}

#[test]
fn dry_run_prints_the_commands_in_order_and_runs_nothing() {
    let p = Pipeline::new("");
    let out = p.build(&["--dry-run"], 0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 50, "{}", out.stdout);
    assert!(lines[49].starts_with("dry run: 49 command(s)"));
    let first = lines
        .iter()
        .position(|l| l.contains("compiled/joins/risk/risk.checkout.v1 --mode backfill-left"))
        .unwrap();
    let part = lines
        .iter()
        .position(|l| l.contains("--selected-join-parts risk_purchases_v1"))
        .unwrap();
    let last = lines
        .iter()
        .position(|l| l.contains("compiled/joins/risk/risk.checkout.v1 --mode backfill-final"))
        .unwrap();
    assert!(first < part && part < last, "{}", out.stdout);
    assert!(p.calls().is_empty());
    assert_eq!(p.not_fresh_count(), 124);
}

#[test]
fn argv_for_each_mode_follows_the_zipline_cli() {
    let p = Pipeline::new(
        "artifact_prefix = \"gs://zipline-artifacts\"\nversion = \"0.1.4\"\nextra_args = [\"--online-jar-fetch\", \"x\"]\n\
         [streaming]\nkafka_bootstrap = \"kafka:9092\"\nflink_state_uri = \"gs://state\"\n",
    );
    p.build(&[], 0);
    let calls = p.calls();
    let find = |needle: &[&str]| -> Vec<String> {
        calls
            .iter()
            .find(|argv| needle.iter().all(|n| argv.iter().any(|a| a == n)))
            .unwrap_or_else(|| panic!("no call with {needle:?} in {calls:#?}"))
            .clone()
    };
    let tail = [
        "--artifact-prefix",
        "gs://zipline-artifacts",
        "--version",
        "0.1.4",
        "--online-jar-fetch",
        "x",
    ];
    let expect = |needle: &[&str], args: &[&str]| {
        let mut want: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        want.extend(tail.iter().map(|a| a.to_string()));
        assert_eq!(find(needle), want);
    };
    let gb = "compiled/group_bys/risk/risk.purchases.v1";
    let join = "compiled/joins/risk/risk.checkout.v1";
    expect(
        &["backfill", gb, "2025-01-05"],
        &[
            gb,
            "--mode",
            "backfill",
            "--start-ds",
            "2025-01-05",
            "--end-ds",
            "2025-01-09",
        ],
    );
    expect(&["upload", gb], &[gb, "--mode", "upload", "--ds", UNTIL]);
    expect(
        &["upload-to-kv", gb],
        &[
            gb,
            "--mode",
            "upload-to-kv",
            "--ds",
            UNTIL,
            "--uploader",
            "spark",
        ],
    );
    expect(&["metadata-upload", gb], &[gb, "--mode", "metadata-upload"]);
    expect(
        &["streaming", gb],
        &[
            gb,
            "--mode",
            "streaming",
            "--streaming-mode",
            "deploy",
            "--kafka-bootstrap",
            "kafka:9092",
            "--flink-state-uri",
            "gs://state",
            "--no-savepoint",
        ],
    );
    expect(
        &["log-flattener", "2025-01-02"],
        &[
            join,
            "--mode",
            "log-flattener",
            "--log-table",
            "default.chronon_log_table",
            "--schema-table",
            "default.chronon_schema_table",
            "--ds",
            "2025-01-02",
        ],
    );
    expect(
        &["build-comparison-table", "2025-01-02"],
        &[
            join,
            "--mode",
            "build-comparison-table",
            "--ds",
            "2025-01-02",
        ],
    );
    expect(
        &["consistency-metrics-compute", "2025-01-02"],
        &[
            join,
            "--mode",
            "consistency-metrics-compute",
            "--ds",
            "2025-01-02",
        ],
    );
    expect(
        &["backfill-left", join],
        &[
            join,
            "--mode",
            "backfill-left",
            "--start-ds",
            "2025-01-03",
            "--end-ds",
            UNTIL,
        ],
    );
    expect(
        &["risk_purchases_v1", join],
        &[
            join,
            "--mode",
            "backfill",
            "--selected-join-parts",
            "risk_purchases_v1",
            "--use-cached-left",
            "--start-ds",
            "2025-01-03",
            "--end-ds",
            UNTIL,
        ],
    );
    // One job: the final's days are one block (`executor.step_days`),
    // however its parts' jobs end.
    expect(
        &["backfill-final", join, "2025-01-03"],
        &[
            join,
            "--mode",
            "backfill-final",
            "--start-ds",
            "2025-01-03",
            "--end-ds",
            UNTIL,
        ],
    );
    let sq = "compiled/staging_queries/risk/risk.merchants.v1";
    expect(
        &["backfill", sq, "2025-01-01"],
        &[
            sq,
            "--mode",
            "backfill",
            "--start-ds",
            "2025-01-01",
            "--end-ds",
            "2025-01-07",
        ],
    );
}

#[test]
fn whole_join_runs_are_one_backfill_per_join_range() {
    let p = Pipeline::new("joins = \"whole\"\n");
    let out = p.build(&["--select", "risk.returns_join.v1"], 0);
    assert_eq!(
        p.call_summary(),
        ["backfill risk.returns_join.v1 2025-01-03..2025-01-10"]
    );
    // Left, part and final are separate targets, recorded by the one job.
    assert_contains(&out.stdout, "ok: 24 built in 1 job(s)");
    assert_eq!(
        p.calls()[0],
        [
            "compiled/joins/risk/risk.returns_join.v1",
            "--mode",
            "backfill",
            "--start-ds",
            "2025-01-03",
            "--end-ds",
            UNTIL,
        ]
    );

    // A change to the part alone: the part and the final are stale, and one
    // backfill of the join runs for them.
    p.clear_calls();
    edit_purchases_aggregation(&p.s);
    let plan = p.run(&[
        "plan",
        "--until",
        UNTIL,
        "--select",
        "risk.returns_join.v1",
        "--step",
        "join-left",
    ]);
    assert_contains(&plan.stdout, "8 fresh");
    let out = p.run_with(
        &["run", "--until", UNTIL, "--select", "risk.returns_join.v1"],
        &[("FAKE_ZIPLINE_SALT", "v2")],
    );
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(
        p.call_summary(),
        ["backfill risk.returns_join.v1 2025-01-03..2025-01-10"]
    );
    assert_contains(&out.stdout, "ok: 16 built in 1 job(s)");
}

/// Edits `risk.purchases.v1`'s first aggregation in its config and in the
/// joins that inline it, as a recompile would.
fn edit_purchases_aggregation(s: &Scenario) {
    let edit = |v: &mut serde_json::Value| {
        v["aggregations"][0]["operation"] = serde_json::json!(6);
    };
    s.edit("compiled/group_bys/risk/risk.purchases.v1", edit);
    for join in ["risk.checkout.v1", "risk.returns_join.v1"] {
        s.edit(&format!("compiled/joins/risk/{join}"), |j| {
            for part in j["joinParts"].as_array_mut().unwrap() {
                if part["groupBy"]["metaData"]["name"] == "risk.purchases.v1" {
                    edit(&mut part["groupBy"]);
                }
            }
        });
    }
}

#[test]
fn an_aggregation_change_reruns_exactly_its_group_by_and_the_join_parts_that_embed_it() {
    let p = Pipeline::new("");
    p.build(&[], 0);
    p.clear_calls();
    edit_purchases_aggregation(&p.s);
    // The jobs write different data now.
    let out = p.run_with(&["run", "--until", UNTIL], &[("FAKE_ZIPLINE_SALT", "v2")]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    let mut expected = vec![
        "backfill risk.checkout.v1 #risk_purchases_v1 2025-01-03..2025-01-10".to_string(),
        // Chained on the join's output, which changed.
        "backfill risk.checkout_chain.v1 2025-01-06..2025-01-10".into(),
        "backfill risk.purchases.v1 2025-01-05..2025-01-09".into(),
        "backfill risk.purchases.v1 2025-01-10..2025-01-10".into(),
        "backfill risk.returns_join.v1 #risk_purchases_v1 2025-01-03..2025-01-10".into(),
        "backfill-final risk.checkout.v1 2025-01-03..2025-01-10".into(),
        "backfill-final risk.returns_join.v1 2025-01-03..2025-01-10".into(),
    ];
    for mode in ["build-comparison-table", "consistency-metrics-compute"] {
        for day in 1..=10 {
            expected.push(format!("{mode} risk.checkout.v1 2025-01-{day:02}"));
        }
    }
    expected.extend([
        "metadata-upload risk.checkout.v1".into(),
        "metadata-upload risk.purchases.v1".into(),
        "streaming risk.purchases.v1".into(),
        "upload risk.purchases.v1 2025-01-10".into(),
        "upload-to-kv risk.purchases.v1 2025-01-10".into(),
    ]);
    assert_eq!(p.call_summary(), expected, "{}", out.stdout);
    // The other join part of risk.checkout.v1 and everything of the other
    // group-bys stay as they are.
    assert!(
        !p.call_summary()
            .iter()
            .any(|c| c.contains("merchant_profile"))
    );
    assert_eq!(p.not_fresh(), Vec::<String>::new());
}

#[test]
fn one_changed_source_partition_reruns_exactly_the_windows_that_read_it() {
    let p = Pipeline::new("");
    p.build(&[], 0);
    p.clear_calls();
    p.s.write_partition("raw.purchases", "2025-01-06", "late correction");
    let out = p.build(&[], 0);
    // Windows of 3 days plus the hop tail read D-4..D: 01-06 is read by
    // 01-06..01-10. The upload at 01-10 reads it too. The join parts read
    // the group-by's source with the same lookback.
    assert_eq!(
        p.call_summary(),
        [
            "backfill risk.checkout.v1 #risk_purchases_v1 2025-01-06..2025-01-10",
            "backfill risk.purchases.v1 2025-01-06..2025-01-10",
            "backfill risk.returns_join.v1 #risk_purchases_v1 2025-01-06..2025-01-10",
            "build-comparison-table risk.checkout.v1 2025-01-06",
            "build-comparison-table risk.checkout.v1 2025-01-07",
            "build-comparison-table risk.checkout.v1 2025-01-08",
            "build-comparison-table risk.checkout.v1 2025-01-09",
            "build-comparison-table risk.checkout.v1 2025-01-10",
            "upload risk.purchases.v1 2025-01-10",
        ],
        "{}",
        out.stdout
    );
    assert_eq!(p.not_fresh(), Vec::<String>::new());
}

#[test]
fn early_cutoff_an_identical_rewrite_leaves_dependents_fresh_and_a_different_one_does_not() {
    let p = Pipeline::new("");
    p.build(&[], 0);
    p.clear_calls();
    let out = p.run(&[
        "invalidate",
        "staging-query:risk.merchants.v1",
        "--to",
        UNTIL,
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan = p.not_fresh();
    assert_eq!(
        plan[0],
        "staging-query:risk.merchants.v1 2025-01-01..2025-01-10 stale forced"
    );
    assert!(
        plan[1..].iter().all(|t| t.ends_with(" waiting")),
        "{plan:?}"
    );
    let out = p.build(&[], 0);
    assert_eq!(
        p.call_summary(),
        [
            "backfill risk.merchants.v1 2025-01-01..2025-01-07",
            "backfill risk.merchants.v1 2025-01-08..2025-01-10",
        ]
    );
    // merchant_profile reads the staging output and is fresh again, and so
    // is everything that waited on it.
    assert_contains(&out.stdout, "(47 by early cutoff)");

    p.clear_calls();
    p.run(&[
        "invalidate",
        "staging-query:risk.merchants.v1",
        "--from",
        "2025-01-09",
        "--to",
        UNTIL,
    ]);
    p.run_with(&["run", "--until", UNTIL], &[("FAKE_ZIPLINE_SALT", "v2")]);
    // Different bytes: everything downstream of those two days reruns.
    assert_eq!(
        p.call_summary(),
        [
            "backfill risk.checkout.v1 #m_risk_merchant_profile_v1 2025-01-09..2025-01-10",
            "backfill risk.checkout_chain.v1 2025-01-09..2025-01-10",
            "backfill risk.merchant_profile.v1 2025-01-09..2025-01-10",
            "backfill risk.merchants.v1 2025-01-09..2025-01-10",
            "backfill-final risk.checkout.v1 2025-01-09..2025-01-10",
            "build-comparison-table risk.checkout.v1 2025-01-09",
            "build-comparison-table risk.checkout.v1 2025-01-10",
            "consistency-metrics-compute risk.checkout.v1 2025-01-09",
            "consistency-metrics-compute risk.checkout.v1 2025-01-10",
        ]
    );
}

#[test]
fn a_failure_leaves_independent_work_done_and_marks_dependents_upstream_failed() {
    let p = Pipeline::new("");
    let out = p.run_with(
        &["run", "--until", UNTIL, "--progress", "plain"],
        &[("FAKE_ZIPLINE_FAIL", "staging-query:risk.merchants.v1")],
    );
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("FAILED  staging-query:risk.merchants.v1@2025-01-01..2025-01-07 (exit code 1, 1 attempt(s))"),
        "{}",
        out.stdout
    );
    assert_contains(
        &out.stdout,
        "| fake-zipline: failing staging-query:risk.merchants.v1 as asked",
    );
    assert_contains(
        &out.stdout,
        ".chronon-build/logs/run-1/staging-query/risk.merchants.v1/2025-01-01_2025-01-07.attempt1.log",
    );
    assert!(
        out.stdout.contains("upstream-failed group-by-backfill:risk.merchant_profile.v1@2025-01-05..2025-01-10 (6 partition(s)): staging-query:risk.merchants.v1 failed"),
        "{}",
        out.stdout
    );
    assert_contains(
        &out.stdout,
        "upstream-failed join-part:risk.checkout.v1#m_risk_merchant_profile_v1",
    );
    // Independent work went on.
    assert!(
        p.call_summary()
            .contains(&"backfill-final risk.returns_join.v1 2025-01-03..2025-01-10".to_string())
    );
    let plan = p.run(&["plan", "--until", UNTIL, "--select", "risk.merchants.v1"]);
    assert_contains(&plan.stdout, "stale: previous-run-failed (run 1)");

    // The next run picks up exactly what did not finish.
    p.clear_calls();
    p.build(&[], 0);
    assert!(p.call_summary().iter().all(|c| !c.contains("purchases")));
    assert_eq!(p.not_fresh(), Vec::<String>::new());
}

fn one_target(p: &Pipeline, more: &[&str], extra: &[(&str, &str)]) -> Output {
    let mut args = vec![
        "run",
        "--until",
        UNTIL,
        "--select",
        "risk.purchases.v1",
        "--step",
        "metadata-upload",
    ];
    args.extend(more);
    p.run_with(&args, extra)
}

#[test]
fn retries_back_off_and_succeed_or_give_up() {
    let p = Pipeline::new("");
    let counter = p.s.repo.join("counter").display().to_string();
    let flaky = [
        ("FAKE_ZIPLINE_FAIL_TIMES", "2"),
        ("FAKE_ZIPLINE_COUNTER", counter.as_str()),
    ];
    let out = one_target(&p, &["--retries", "2", "--backoff", "0s"], &flaky);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(p.calls().len(), 3);
    assert_contains(&out.stdout, "after 3 attempts");
    assert_contains(&out.stderr, "retry 1/2");

    let p = Pipeline::new("[retry]\nretries = 1\nbackoff = \"0s\"\n");
    let counter = p.s.repo.join("counter").display().to_string();
    let flaky = [
        ("FAKE_ZIPLINE_FAIL_TIMES", "5"),
        ("FAKE_ZIPLINE_COUNTER", counter.as_str()),
    ];
    let out = one_target(&p, &[], &flaky);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert_eq!(p.calls().len(), 2);
    assert!(
        out.stdout.contains("(exit code 3, 2 attempt(s))"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_job_over_its_timeout_is_killed_and_fails() {
    let p = Pipeline::new("");
    let out = one_target(&p, &["--timeout", "1s"], &[("FAKE_ZIPLINE_SLEEP", "30")]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains("(timed out after 1.0s, 1 attempt(s))"),
        "{}",
        out.stdout
    );
    assert_eq!(p.not_fresh_count(), 124);
}

#[test]
fn a_hostile_config_name_reaches_the_argv_literally_and_runs_nothing_else() {
    let p = Pipeline::new("");
    let name = "risk.evil; rm -rf x $(touch pwned) `touch pwned2` v1";
    let source = p.s.repo.join("compiled/group_bys/risk/risk.returns.v1");
    let mut value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&source).unwrap()).unwrap();
    value["metaData"]["name"] = serde_json::json!(name);
    let conf = format!("compiled/group_bys/risk/{name}");
    std::fs::write(p.s.repo.join(&conf), value.to_string()).unwrap();
    std::fs::create_dir_all(p.s.repo.join("x")).unwrap();
    let out = p.build(&["--select", "risk.evil*"], 0);
    let calls = p.calls();
    assert_eq!(calls.len(), 1, "{}", out.stdout);
    assert_eq!(
        calls[0],
        [
            conf.as_str(),
            "--mode",
            "backfill",
            "--start-ds",
            "2025-01-05",
            "--end-ds",
            UNTIL
        ]
    );
    assert!(p.s.repo.join("x").is_dir());
    for dir in [p.s.repo.clone(), std::env::current_dir().unwrap()] {
        assert!(!dir.join("pwned").exists() && !dir.join("pwned2").exists());
    }
}

#[test]
fn killing_the_runner_never_leaves_a_target_falsely_fresh() {
    let p = Pipeline::new("");
    let done = p.s.repo.join("done");
    let done_env = done.display().to_string();
    let mut child = p.spawn(
        &[
            "run",
            "--until",
            UNTIL,
            "-j",
            "2",
            "--progress",
            "plain",
            "-v",
        ],
        &[
            ("FAKE_ZIPLINE_SLEEP", "1"),
            ("FAKE_ZIPLINE_DONE", &done_env),
        ],
    );
    // Let some jobs finish and others be mid-way.
    p.wait_for_calls(5);
    child.kill().unwrap();
    child.wait().unwrap();
    // Each job's start is said (a line on standard error, unbuffered, with
    // `-v`) before it is spawned, so those lines bound the jobs the runner
    // started. Jobs die with the runner: its watchdog stops them (SIGTERM)
    // when it sees it gone.
    let mut said = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut said).unwrap();
    let started = said.lines().filter(|l| l.contains(" start ")).count();
    wait_until("jobs outlived their runner", || jobs_left(&p.s.repo) == 0);
    let finished = std::fs::read_to_string(&done).unwrap_or_default();
    assert!(finished.lines().count() <= p.calls().len());
    // Nothing started after the runner died, and no job ran but those it
    // started.
    let calls = p.calls().len();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(p.calls().len(), calls);
    assert!(
        (5..=started).contains(&calls),
        "{calls} calls, {started} started: {said}"
    );

    let not_fresh = p.not_fresh_count();
    assert!(not_fresh < 124 && not_fresh > 0, "{not_fresh}");
    // Every fresh target's output is there as recorded: a plan that checks
    // outputs would otherwise say output-missing, and nothing fresh is
    // downstream of something not fresh.
    let out = p.run(&["plan", "--until", UNTIL]);
    assert!(!out.stdout.contains("output-missing"), "{}", out.stdout);

    p.clear_calls();
    let out = p.build(&[], 0);
    assert!(
        out.stdout.contains(&format!("{not_fresh} built")),
        "{not_fresh}: {}",
        out.stdout
    );
    assert_eq!(p.not_fresh(), Vec::<String>::new());
}

#[test]
fn runs_share_the_state_while_adopt_and_gc_wait_for_them() {
    let p = Pipeline::new("");
    let mut first = p.spawn(
        &[
            "run",
            "--until",
            UNTIL,
            "--select",
            "risk.purchases.v1",
            "--step",
            "metadata-upload",
        ],
        &[("FAKE_ZIPLINE_SLEEP", "30")],
    );
    p.wait_for_calls(1);
    // Another run goes on beside it (claims keep them apart).
    let second = p.run(&["run", "--until", UNTIL, "--select", "risk.returns.v1"]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    // What writes across the whole state waits for the runs.
    for args in [
        &["adopt", "--until", UNTIL][..],
        &["gc", "--until", UNTIL][..],
    ] {
        let out = p.run(args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert_contains(&out.stderr, "is in use by one or more runs");
        assert_contains(&out.stderr, "--wait-lock");
    }
    first.kill().unwrap();
    first.wait().unwrap();
    // The lock went away with its holder.
    let out = p.run(&["adopt", "--until", UNTIL]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = p.run(&["run", "--until", UNTIL, "--select", "risk.returns.v1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn blocked_targets_are_reported_or_waited_for() {
    let p = Pipeline::new("");
    let last = p.s.partition_dir("raw.purchases", UNTIL);
    std::fs::remove_dir_all(&last).unwrap();
    let args = [
        "run",
        "--until",
        UNTIL,
        "--select",
        "risk.purchases.v1",
        "--step",
        "group-by-backfill",
    ];

    let out = p.run(&args);
    assert_eq!(out.code, 3, "{}", out.stdout);
    assert!(
        out.stdout.contains("blocked group-by-backfill:risk.purchases.v1@2025-01-10 (1 partition(s)): missing raw.purchases ds=2025-01-10"),
        "{}",
        out.stdout
    );

    let mut with_wait: Vec<&str> = args.to_vec();
    with_wait.extend(["--wait", "1s", "--poll", "1s"]);
    let out = p.run(&with_wait);
    assert_eq!(out.code, 3, "{}", out.stdout);
    assert_contains(&out.stdout, "missing raw.purchases ds=2025-01-10");

    p.clear_calls();
    let mut with_wait: Vec<&str> = args.to_vec();
    with_wait.extend(["--wait", "60s", "--poll", "1s", "--progress", "plain"]);
    let child = p.spawn(&with_wait, &[]);
    std::thread::sleep(Duration::from_millis(1500));
    p.s.write_partition("raw.purchases", UNTIL, "landed late");
    let out = finish(child);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_contains(&out.stderr, "input landed: raw.purchases");
    assert_eq!(
        p.call_summary(),
        ["backfill risk.purchases.v1 2025-01-10..2025-01-10"]
    );
}

#[test]
fn adopt_records_existing_outputs_so_nothing_is_recomputed() {
    let p = Pipeline::new("");
    p.build(&[], 0);
    crate::forget_state(&p.s.repo);
    p.clear_calls();
    let out = p.run(&["adopt", "--until", UNTIL]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    // Everything with a table output is adopted; KV uploads, the streaming
    // deploy and metadata uploads cannot be seen in the warehouse.
    assert_contains(&out.stdout, "ok: 120 adopted");
    assert!(
        out.stdout.contains("not run upload-to-kv:risk.purchases.v1@2025-01-10 (1 partition(s)): its result cannot be seen in the warehouse"),
        "{}",
        out.stdout
    );
    assert!(p.calls().is_empty());
    let mut left = p.not_fresh();
    left.sort();
    assert_eq!(
        left,
        [
            "group-by-streaming:risk.purchases.v1 - stale never-built",
            "metadata-upload:risk.checkout.v1 - stale never-built",
            "metadata-upload:risk.purchases.v1 - stale never-built",
            "upload-to-kv:risk.purchases.v1 2025-01-10..2025-01-10 stale never-built",
        ]
    );
    p.build(&[], 0);
    assert_eq!(p.calls().len(), 4);

    // A partition that is not there is not adopted, nor what reads it.
    let p = Pipeline::new("");
    p.build(&[], 0);
    crate::forget_state(&p.s.repo);
    std::fs::remove_dir_all(p.s.partition_dir("risk_db.risk_merchants_v1", "2025-01-09")).unwrap();
    let out = p.run(&["adopt", "--until", UNTIL]);
    assert_contains(&out.stdout, "1 not in the warehouse");
    p.clear_calls();
    p.build(&[], 0);
    let batch: Vec<String> = p
        .call_summary()
        .into_iter()
        .filter(|c| {
            !c.starts_with("metadata-upload")
                && !c.starts_with("upload-to-kv")
                && !c.starts_with("streaming")
        })
        .collect();
    assert_eq!(
        batch,
        [
            "backfill risk.checkout.v1 #m_risk_merchant_profile_v1 2025-01-09..2025-01-09",
            "backfill risk.checkout_chain.v1 2025-01-09..2025-01-10",
            "backfill risk.merchant_profile.v1 2025-01-09..2025-01-09",
            "backfill risk.merchants.v1 2025-01-09..2025-01-09",
            "backfill-final risk.checkout.v1 2025-01-09..2025-01-09",
            "build-comparison-table risk.checkout.v1 2025-01-09",
            "consistency-metrics-compute risk.checkout.v1 2025-01-09",
        ]
    );
    assert_eq!(p.not_fresh(), Vec::<String>::new());
}

#[test]
fn invalidate_forces_a_restatement_that_the_plan_shows() {
    let p = Pipeline::new("");
    p.build(&[], 0);
    let out = p.run(&[
        "invalidate",
        "group-by-backfill:risk.returns.v1",
        "--from",
        "2025-01-08",
        "--to",
        UNTIL,
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("forced group-by-backfill:risk.returns.v1 (3 partition(s))"),
        "{}",
        out.stdout
    );
    let plan = p.run(&["plan", "--until", UNTIL, "--select", "risk.returns.v1"]);
    assert_contains(&plan.stdout, "2025-01-08..2025-01-10 (3)  stale: forced");
    let out = p.run(&["invalidate", "nothing.matches"]);
    assert_eq!(out.code, 2);
}

#[test]
fn streaming_is_redeployed_when_not_running_or_running_an_older_config() {
    let status = fixture().with_file_name("fake-streaming-status");
    let p = Pipeline::new(&format!(
        "[streaming]\nstatus_command = [{:?}, \"{{config}}\"]\n",
        status.display().to_string()
    ));
    let state = p.s.repo.join("streaming-job").display().to_string();
    let env = [("FAKE_ZIPLINE_STREAMING", state.as_str())];
    let run = |p: &Pipeline| {
        let out = p.run_with(&["run", "--until", UNTIL], &env);
        assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    };
    let plan = |p: &Pipeline| {
        p.run_with(
            &[
                "plan",
                "--until",
                UNTIL,
                "--select",
                "risk.purchases.v1",
                "--step",
                "group-by-streaming",
            ],
            &env,
        )
        .stdout
    };
    run(&p);
    // Fresh, and so is the upstream the plan pulls in with it.
    assert!(
        plan(&p).contains("fresh, 0 stale, 0 blocked, 0 waiting"),
        "{}",
        plan(&p)
    );

    // The job died.
    std::fs::remove_file(&state).unwrap();
    assert!(
        plan(&p).contains("stale: streaming-not-running"),
        "{}",
        plan(&p)
    );
    p.clear_calls();
    run(&p);
    assert_eq!(p.call_summary(), ["streaming risk.purchases.v1"]);
    // Fresh, and so is the upstream the plan pulls in with it.
    assert!(
        plan(&p).contains("fresh, 0 stale, 0 blocked, 0 waiting"),
        "{}",
        plan(&p)
    );

    // Someone deployed another config by hand.
    std::fs::write(&state, "0123abcd").unwrap();
    assert!(
        plan(&p).contains("stale: streaming-outdated (running 0123abcd)"),
        "{}",
        plan(&p)
    );
    p.clear_calls();
    run(&p);
    assert_eq!(p.call_summary(), ["streaming risk.purchases.v1"]);
    // Fresh, and so is the upstream the plan pulls in with it.
    assert!(
        plan(&p).contains("fresh, 0 stale, 0 blocked, 0 waiting"),
        "{}",
        plan(&p)
    );
}

#[test]
fn the_first_interrupt_lets_running_jobs_finish_and_records_them() {
    let p = Pipeline::new("");
    let child = p.spawn(
        &["run", "--until", UNTIL, "-j", "2", "--progress", "plain"],
        &[("FAKE_ZIPLINE_SLEEP", "1")],
    );
    p.wait_for_calls(2);
    // SAFETY: signalling a child process we own.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = finish(child);
    assert_eq!(out.code, 130, "{}\n{}", out.stdout, out.stderr);
    assert_contains(&out.stderr, "interrupted: no new jobs");
    // The two running jobs finished and were recorded; nothing else started.
    assert_eq!(p.calls().len(), 2);
    let built = out.stdout.lines().filter(|l| l.starts_with("ran ")).count();
    assert_eq!(built, 2, "{}", out.stdout);
    assert_contains(&out.stdout, "not run");

    // A second interrupt kills what runs.
    let child = p.spawn(
        &["run", "--until", UNTIL, "-j", "2", "--progress", "plain"],
        &[("FAKE_ZIPLINE_SLEEP", "30")],
    );
    p.wait_for_calls(4);
    for _ in 0..2 {
        // SAFETY: as above.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGINT);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let start = Instant::now();
    let out = finish(child);
    assert!(start.elapsed() < Duration::from_secs(20));
    assert_eq!(out.code, 130, "{}\n{}", out.stdout, out.stderr);
    assert_contains(&out.stdout, "killed by the second interrupt");
    assert!(!out.stdout.contains("FAILED"), "{}", out.stdout);
}

/// SIGTERM (and SIGHUP) stop a run as a supervisor means it: the jobs get
/// SIGTERM at once and SIGKILL after `bounds.stop_grace`, the run ends
/// within that grace with 143 (129), no job process is left, and nothing
/// killed is recorded as built.
#[test]
fn sigterm_and_sighup_stop_the_running_jobs_within_the_grace_period() {
    for (signal, code) in [(libc::SIGTERM, 143), (libc::SIGHUP, 129)] {
        let p = Pipeline::new("[bounds]\nstop_grace = \"2s\"\n");
        // A job that ignores SIGTERM: only SIGKILL ends it.
        let marker = format!("{}.{}{signal}", 40 + signal, std::process::id());
        let sleeper = p.s.repo.join("sleeper.sh");
        std::fs::write(&sleeper, format!("trap '' TERM\nsleep {marker}\n")).unwrap();
        let child = p.spawn(
            &["run", "--until", UNTIL, "-j", "2", "--progress", "plain"],
            &[("FAKE_ZIPLINE_RUN_FIRST", sleeper.to_str().unwrap())],
        );
        p.wait_for_calls(2);
        std::thread::sleep(Duration::from_millis(300));
        let start = Instant::now();
        // SAFETY: signalling a child process we own.
        unsafe {
            libc::kill(child.id() as i32, signal);
        }
        let out = finish(child);
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(out.code, code, "{}\n{}", out.stdout, out.stderr);
        assert_contains(&out.stderr, "stopping 2 running job(s)");
        assert!(!out.stdout.contains("FAILED"), "{}", out.stdout);
        let left = std::process::Command::new("pgrep")
            .args(["-f", &format!("sleep {marker}")])
            .output()
            .unwrap();
        assert!(
            left.stdout.is_empty(),
            "job processes outlived the run: {}",
            String::from_utf8_lossy(&left.stdout)
        );
        // The two killed jobs' targets are still to build.
        assert_eq!(p.not_fresh_count(), 124);
    }
}

/// A job that prints 1 GiB leaves a log of at most `bounds.log_limit`:
/// its first and last output, and a line saying how much was left out.
#[test]
fn a_job_printing_a_gibibyte_leaves_a_log_under_the_limit() {
    let p = Pipeline::new("[bounds]\nlog_limit = \"1MiB\"\n");
    let printer = p.s.repo.join("printer.sh");
    std::fs::write(
        &printer,
        "echo FIRST-LINE\nyes chronon-build | head -c 1073741824\necho LAST-LINE >&2\n",
    )
    .unwrap();
    let out = p.run_with(
        &[
            "run",
            "--until",
            UNTIL,
            "--select",
            "risk.purchases.v1",
            "--step",
            "group-by-backfill",
        ],
        &[("FAKE_ZIPLINE_RUN_FIRST", printer.to_str().unwrap())],
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let logs =
        p.s.repo
            .join(".chronon-build/logs/run-1/group-by-backfill/risk.purchases.v1");
    let mut seen = 0;
    for entry in std::fs::read_dir(&logs).unwrap() {
        let path = entry.unwrap().path();
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size <= (1 << 20) + 4096, "{}: {size} bytes", path.display());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("FIRST-LINE"), "{}", &text[..200]);
        // What came last is kept, after the line that says what was not.
        let left_out = text.find("byte(s) of output left out").expect("the line");
        assert!(
            text[left_out..].contains("LAST-LINE\n"),
            "{}",
            &text[text.len() - 300..]
        );
        seen += 1;
    }
    assert!(seen > 0);
}

#[test]
fn bad_run_settings_and_flags_are_refused_before_anything_runs() {
    let p = Pipeline::new("[limits.steps]\ngroup-by-backfil = 3\n");
    let out = p.run(&["run", "--until", UNTIL]);
    crate::assert_error(&out, "limits.steps.group-by-backfil: expected a step name");
    assert!(p.calls().is_empty());
    assert!(!p.s.repo.join(".chronon-build/state.db").exists());

    let p = Pipeline::new("[retry]\nbackoff = \"soon\"\n");
    crate::assert_error(
        &p.run(&["run", "--until", UNTIL]),
        "expected a duration such as 90s",
    );
    let p = Pipeline::new("");
    crate::assert_error(
        &p.run(&["run", "--timeout", "1x"]),
        "expected a duration such as 90s",
    );
    crate::assert_error(
        &p.run(&["run", "-j", "0"]),
        "-j: 0: expected 1 to 1024 jobs at once",
    );
    crate::assert_error(&p.run(&["invalidate", "nostep:risk.*"]), "is not a step");
    crate::assert_error(
        &p.run(&["invalidate", "risk.[*"]),
        "unclosed character class",
    );
    // A step the selection does not have is a mistake in every command
    // that selects, not an empty answer.
    for command in ["plan", "status", "run", "adopt"] {
        crate::assert_error(
            &p.run(&[
                command,
                "--select",
                "risk.merchants.*",
                "--step",
                "join-final",
            ]),
            "--step join-final: no such target in the selection",
        );
    }
    assert!(p.calls().is_empty());
}

#[test]
fn the_run_summary_in_json_says_what_ran() {
    let p = Pipeline::new("");
    let out = p.run_with(
        &[
            "run",
            "--until",
            UNTIL,
            "--format",
            "json",
            "--select",
            "risk.returns.v1",
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["outcome"], "ok");
    assert_eq!(v["built"], 6);
    assert_eq!(
        v["ran"][0]["target"],
        "group-by-backfill:risk.returns.v1@2025-01-05..2025-01-10"
    );
    assert!(
        v["ran"][0]["log"]
            .as_str()
            .unwrap()
            .ends_with(".attempt1.log")
    );
}

/// A job's log is made when it prints: one that succeeds without a word
/// leaves none (the summary and the history say so, `logs` shows its
/// command); one that fails without a word, or cannot start, has a log
/// whose first line is its command.
#[test]
fn a_silent_job_has_a_log_only_when_it_fails() {
    let p = Pipeline::new("");
    let executor = |program: &str| {
        let toml = format!(
            "[executor]\nkind = \"zipline\"\ncli = \"zipline\"\nprogram = {program}\n\
             [warehouse]\nkind = \"hive-dir\"\nfingerprint = \"content\"\n"
        );
        std::fs::write(p.s.repo.join("chronon-build.toml"), toml).unwrap();
    };
    let quiet = format!(
        "[\"sh\", \"-c\", \"exec \\\"$0\\\" \\\"$@\\\" >/dev/null 2>&1\", {:?}]",
        fixture().display().to_string()
    );
    executor(&quiet);
    let select = ["--select", "risk.returns.v1"];
    let json = [
        "run", "--until", UNTIL, "--format", "json", select[0], select[1],
    ];
    let out = p.run_with(&json, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["built"], 6, "{}", out.stdout);
    assert_eq!(v["ran"][0]["log"], serde_json::Value::Null);
    let logs = p.s.repo.join(".chronon-build/logs/run-1");
    assert!(!logs.join("group-by-backfill").exists());
    let out = p.run(&["logs", "group-by-backfill:risk.returns.v1@2025-01-05"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_contains(
        &out.stderr,
        "printed nothing, so it has no log; its command: $ sh -c",
    );

    let fail = [("FAKE_ZIPLINE_FAIL", "staging-query:risk.merchants.v1")];
    let run = ["run", "--until", UNTIL, "--select", "risk.merchants.v1"];
    assert_eq!(p.run_with(&run, &fail).code, 1);
    let log = p.s.repo.join(
        ".chronon-build/logs/run-2/staging-query/risk.merchants.v1/2025-01-01_2025-01-07.attempt1.log",
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("$ sh -c "), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");

    executor("[\"/nonexistent/zipline\"]");
    assert_eq!(p.run_with(&run, &[]).code, 1);
    let log = p.s.repo.join(
        ".chronon-build/logs/run-3/staging-query/risk.merchants.v1/2025-01-01_2025-01-07.attempt1.log",
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("$ /nonexistent/zipline "), "{text}");
    assert_contains(
        &text,
        "chronon-build: cannot start \"/nonexistent/zipline\"",
    );
}

/// Job ranges are a function of the plan: whichever upstream jobs end
/// first, the same days go to the same jobs, and the dry run lists them.
#[test]
fn the_same_plan_makes_the_same_jobs_whatever_order_upstream_jobs_end_in() {
    let mut runs = Vec::new();
    for slow in [
        "",
        "group-by-backfill:risk.purchases.v1 staging-query:risk.merchants.v1",
        "group-by-backfill:risk.merchant_profile.v1 join-left:risk.checkout.v1",
    ] {
        let p = Pipeline::new("");
        let out = p.run_with(
            &["run", "--until", UNTIL, "-j", "4"],
            &[
                ("FAKE_ZIPLINE_SLOW", slow),
                ("FAKE_ZIPLINE_SLOW_SECONDS", "0.7"),
            ],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        runs.push(p.call_summary());
    }
    assert_eq!(runs[0], runs[1]);
    assert_eq!(runs[0], runs[2]);
    let p = Pipeline::new("");
    let dry = p.build(&["--dry-run"], 0);
    let commands = dry
        .stdout
        .lines()
        .filter(|l| l.contains("fake-zipline"))
        .count();
    assert_eq!(commands, runs[0].len(), "{}", dry.stdout);
}
