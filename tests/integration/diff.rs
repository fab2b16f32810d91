//! `diff` through the binary, on git repositories the tests create.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::run::Pipeline;
use crate::state_db::{self, Cell, StateDb};
use crate::{
    Output, Scenario, assert_contains, assert_error, assert_valid, chronon_build, copy_dir, schema,
    testdata,
};

const PURCHASES: &str = "compiled/group_bys/risk/risk.purchases.v1";
const CHECKOUT: &str = "compiled/joins/risk/risk.checkout.v1";
const RETURNS_JOIN: &str = "compiled/joins/risk/risk.returns_join.v1";
const MERCHANTS: &str = "compiled/staging_queries/risk/risk.merchants.v1";

fn git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(repo)
        .args(["-c", "user.name=test", "-c", "user.email=test@example.com"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The scenario in a fresh git repository, committed as the base.
fn repository() -> Scenario {
    let s = Scenario::copy("scenario");
    commit_all(&s.repo, "base");
    s
}

fn commit_all(repo: &Path, message: &str) {
    if !repo.join(".git").exists() {
        git(repo, &["init", "-q", "-b", "main"]);
    }
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", message]);
}

/// What the compiler does when a group-by's window changes: the group-by
/// and every join that inlines it.
fn set_purchases_window(s: &Scenario, days: u64) {
    s.edit(PURCHASES, |gb| {
        gb["aggregations"][0]["windows"][0]["length"] = days.into()
    });
    for join in [CHECKOUT, RETURNS_JOIN] {
        s.edit(join, |j| {
            j["joinParts"][0]["groupBy"]["aggregations"][0]["windows"][0]["length"] = days.into()
        });
    }
}

/// `--base main --until 2025-01-31`, then `more`.
fn against_main<'a>(more: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--base", "main", "--until", "2025-01-31"];
    args.extend(more);
    args
}

fn diff(s: &Scenario, args: &[&str]) -> Output {
    let mut all = vec!["diff"];
    all.extend(args);
    s.run(&all)
}

/// `diff --format json`, checked against its schema.
fn diff_json(s: &Scenario, args: &[&str]) -> Value {
    let mut all = vec!["--format", "json"];
    all.extend(args);
    let out = diff(s, &all);
    assert_eq!(
        out.code, 0,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_valid(&schema("diff.schema.json"), &report, "diff --format json");
    report
}

/// Invalidated targets as `label count`, with `?` for an uncounted one.
fn invalidated(report: &Value) -> Vec<String> {
    let mut out: Vec<String> = report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let count = match &t["partitions"] {
                Value::Null => "?".to_string(),
                n => n.to_string(),
            };
            format!("{} {count}", t["label"].as_str().unwrap())
        })
        .collect();
    out.sort();
    out
}

fn target<'r>(report: &'r Value, label: &str) -> &'r Value {
    report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["label"] == label)
        .unwrap_or_else(|| panic!("no target {label} in {report:#}"))
}

#[test]
fn a_description_only_change_invalidates_nothing_and_is_non_semantic() {
    let s = repository();
    s.edit(PURCHASES, |gb| {
        gb["metaData"]["description"] = "purchase totals per user, in dollars".into()
    });
    let report = diff_json(&s, &against_main(&[]));
    assert_eq!(report["targets"], Value::Array(vec![]));
    let modified = &report["configs"]["modified"][0];
    assert_eq!(modified["name"], "risk.purchases.v1");
    assert_eq!(modified["classes"], serde_json::json!(["non-semantic"]));
    assert_eq!(modified["fields"][0]["path"], "metaData.description");
    assert_eq!(
        report["metadata_uploads"],
        serde_json::json!(["risk.purchases.v1"])
    );
    assert_eq!(report["serving"], Value::Array(vec![]));
    assert_eq!(
        report["headline"],
        "1 config changed: nothing to recompute (non-semantic changes only)"
    );

    let out = diff(&s, &against_main(&["--exit-code"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_contains(
        &out.stdout,
        "non-semantic  metaData.description: \"purchase aggregates per user\" -> \"purchase totals per user, in dollars\"",
    );
    assert!(!out.stdout.contains("invalidated"), "{}", out.stdout);
}

#[test]
fn a_window_change_reaches_both_joins_that_embed_the_group_by_and_nothing_else() {
    let s = repository();
    set_purchases_window(&s, 7);
    let report = diff_json(&s, &against_main(&[]));
    // Starts: the group-by's backfill 2025-01-05, the joins' left 2025-01-03,
    // the chained group-by 2025-01-06; serving steps build --until only. The
    // consistency steps start at the log table's first partition, unknown
    // without a warehouse.
    assert_eq!(
        invalidated(&report),
        [
            "build-comparison-table:risk.checkout.v1 ?",
            "consistency-metrics-compute:risk.checkout.v1 ?",
            "group-by-backfill:risk.checkout_chain.v1 26",
            "group-by-backfill:risk.purchases.v1 27",
            "group-by-streaming:risk.purchases.v1 1",
            "group-by-upload:risk.purchases.v1 1",
            "join-final:risk.checkout.v1 29",
            "join-final:risk.returns_join.v1 29",
            "join-part:risk.checkout.v1#risk_purchases_v1 29",
            "join-part:risk.returns_join.v1#risk_purchases_v1 29",
            "upload-to-kv:risk.purchases.v1 1",
        ]
    );
    let part = target(&report, "join-part:risk.checkout.v1#risk_purchases_v1");
    assert_eq!(
        part["reasons"],
        serde_json::json!([{"kind": "config-changed"}])
    );
    assert_eq!(
        part["ranges"],
        serde_json::json!([{"from": "2025-01-03", "to": "2025-01-31"}])
    );
    let chained = target(&report, "group-by-backfill:risk.checkout_chain.v1");
    assert_eq!(
        chained["reasons"],
        serde_json::json!([{"kind": "upstream", "target": "join-final:risk.checkout.v1"}])
    );
    assert_eq!(report["totals"]["partitions"], 171);
    assert_eq!(report["totals"]["redeploys"], 1);
    assert_eq!(report["totals"]["uncounted"], 2);
    let fields = &report["configs"]["modified"];
    assert_eq!(fields.as_array().unwrap().len(), 3);
    assert_eq!(
        fields[0]["fields"][0],
        serde_json::json!({"path": "aggregations[0].windows[0].length", "class": "semantic", "old": 3, "new": 7})
    );
    assert_eq!(
        report["headline"],
        "3 configs changed: 171 partitions to recompute, 2 steps with uncounted partitions, \
         1 streaming job to redeploy, 1 online group-by changes serving, 1 online join changes serving"
    );

    // --from bounds every count, and gives the consistency steps a start.
    let report = diff_json(&s, &against_main(&["--from", "2025-01-21"]));
    assert_eq!(
        target(&report, "build-comparison-table:risk.checkout.v1")["partitions"],
        11
    );
    assert_eq!(report["totals"]["partitions"], 8 * 11 + 2);

    // Markdown for a pull-request comment: a table, then a detail per config.
    let out = diff(&s, &against_main(&["--format", "markdown"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let md = &out.stdout;
    assert_contains(md, "**3 configs changed: 171 partitions to recompute");
    assert_contains(
        md,
        "| config | change | steps invalidated | partitions |\n|---|---|---|---|\n",
    );
    assert_contains(
        md,
        "| `risk.purchases.v1` | modified group-by (semantic) | group-by-backfill, group-by-upload, upload-to-kv, group-by-streaming | 29 |",
    );
    assert_contains(
        md,
        "| `risk.checkout_chain.v1` | downstream | group-by-backfill | 26 |",
    );
    assert_contains(
        md,
        "<details><summary><code>risk.returns_join.v1</code>: modified join (semantic)</summary>",
    );
    assert_contains(
        md,
        "| `joinParts[0].groupBy.aggregations[0].windows[0].length` | semantic | `3` | `7` |",
    );
    assert_eq!(md.matches("<details>").count(), 4);
    assert_eq!(md.matches("</details>").count(), 4);

    // The same change committed: two revisions, no working tree involved.
    commit_all(&s.repo, "wider window");
    let again = diff_json(
        &s,
        &[
            "--base",
            "main~1",
            "--head",
            "main",
            "--until",
            "2025-01-31",
        ],
    );
    assert_eq!(invalidated(&again).len(), 11);
    assert!(again["head"].as_str().unwrap().starts_with("main ("));
}

#[test]
fn a_staging_query_change_reaches_the_group_by_that_reads_its_table() {
    let s = repository();
    s.edit(MERCHANTS, |sq| {
        let sql = sq["query"]
            .as_str()
            .unwrap()
            .replace("risk_tier,", "risk_tier, country,");
        sq["query"] = sql.into();
    });
    let report = diff_json(&s, &against_main(&["--from", "2025-01-21"]));
    assert_eq!(
        invalidated(&report),
        [
            "build-comparison-table:risk.checkout.v1 11",
            "consistency-metrics-compute:risk.checkout.v1 11",
            "group-by-backfill:risk.checkout_chain.v1 11",
            "group-by-backfill:risk.merchant_profile.v1 11",
            "join-final:risk.checkout.v1 11",
            "join-part:risk.checkout.v1#m_risk_merchant_profile_v1 11",
            "staging-query:risk.merchants.v1 11",
        ]
    );
    assert_eq!(
        target(&report, "group-by-backfill:risk.merchant_profile.v1")["reasons"],
        serde_json::json!([{"kind": "upstream", "target": "staging-query:risk.merchants.v1"}])
    );
    assert_eq!(
        report["configs"]["modified"][0]["classes"],
        serde_json::json!(["semantic"])
    );
}

#[test]
fn a_moved_cutoff_invalidates_only_the_days_whose_inputs_change() {
    let s = repository();
    // raw.returns is read with all history; moving its start cutoff from
    // 2025-01-02 to 2025-01-04 changes what every day reads from then on.
    // The backfill starts 2025-01-05 and lags one day.
    s.edit("compiled/group_bys/risk/risk.returns.v1", |gb| {
        gb["sources"][0]["events"]["query"]["startPartition"] = "2025-01-04".into()
    });
    let report = diff_json(&s, &against_main(&[]));
    assert_eq!(
        invalidated(&report),
        ["group-by-backfill:risk.returns.v1 27"]
    );
    assert_eq!(
        target(&report, "group-by-backfill:risk.returns.v1")["reasons"],
        serde_json::json!([{"kind": "input-ranges-changed"}])
    );
    assert_eq!(
        report["configs"]["modified"][0]["classes"],
        serde_json::json!(["cutoff"])
    );

    // An end cutoff at 2025-01-20 changes only the days that read past it:
    // with the one-day lag, 2025-01-22 onwards.
    s.edit("compiled/group_bys/risk/risk.returns.v1", |gb| {
        gb["sources"][0]["events"]["query"]["startPartition"] = "2025-01-02".into();
        gb["sources"][0]["events"]["query"]["endPartition"] = "2025-01-20".into();
    });
    let report = diff_json(&s, &against_main(&[]));
    let returns = target(&report, "group-by-backfill:risk.returns.v1");
    assert_eq!(
        returns["ranges"],
        serde_json::json!([{"from": "2025-01-22", "to": "2025-01-31"}])
    );
}

#[test]
fn a_rename_is_reported_as_a_rename_and_its_targets_are_new() {
    let s = repository();
    let old = s.repo.join("compiled/group_bys/risk/risk.returns.v1");
    let new = s.repo.join("compiled/group_bys/risk/risk.refunds.v1");
    std::fs::rename(&old, &new).unwrap();
    s.edit("compiled/group_bys/risk/risk.refunds.v1", |gb| {
        gb["metaData"]["name"] = "risk.refunds.v1".into()
    });
    let report = diff_json(&s, &against_main(&[]));
    assert_eq!(
        report["configs"]["renamed"],
        serde_json::json!([{
            "kind": "group-by",
            "from": "risk.returns.v1",
            "to": "risk.refunds.v1",
            "from_path": "compiled/group_bys/risk/risk.returns.v1",
            "to_path": "compiled/group_bys/risk/risk.refunds.v1",
        }])
    );
    assert_eq!(report["configs"]["added"], Value::Array(vec![]));
    assert_eq!(report["configs"]["removed"], Value::Array(vec![]));
    assert_eq!(
        invalidated(&report),
        ["group-by-backfill:risk.refunds.v1 27"]
    );
    assert_eq!(
        target(&report, "group-by-backfill:risk.refunds.v1")["reasons"],
        serde_json::json!([{"kind": "new"}])
    );
    let out = diff(&s, &against_main(&[]));
    assert_contains(
        &out.stdout,
        "renamed   group-by risk.returns.v1 -> risk.refunds.v1",
    );
}

/// Sets the attempt history of the state to exactly these successful and
/// failed attempts: (step, config, part, first day, last day, seconds, exit).
fn set_history(repo: &Path, attempts: &[(&str, &str, &str, &str, &str, i64, i64)]) {
    let mut state = StateDb::open(repo);
    state.execute("DELETE FROM attempts", &[]);
    for (step, config, part, from, to, seconds, exit_code) in attempts {
        let day = |d: &str| Cell::Int(chronon_build::testing::Day::parse(d).unwrap().0.into());
        let text = |t: &str| Cell::Text(t.to_string());
        state.execute(
            "INSERT INTO attempts (run, node, day_from, day_to, attempt, argv, exit_code, duration_ms, log_path, started_at)
             SELECT 1, id, ?4, ?5, 1, '[]', ?7, ?6, '', 0 FROM nodes WHERE step = ?1 AND config = ?2 AND part = ?3",
            &[
                text(step),
                text(config),
                text(part),
                day(from),
                day(to),
                Cell::Int(seconds * 1000),
                Cell::Int(*exit_code),
            ],
        );
    }
}

/// The target counts `partitions` and is estimated at `pace` seconds each,
/// from its own history (`config`) or its step's (`step`).
fn assert_estimate(report: &Value, label: &str, partitions: u64, pace: f64, basis: &str) {
    let found = target(report, label);
    assert_eq!(found["partitions"], partitions, "{label}");
    assert_eq!(
        found["estimate"],
        serde_json::json!({"seconds": pace * partitions as f64, "per_partition_seconds": pace, "basis": basis}),
        "{label}"
    );
}

#[test]
fn with_a_state_only_built_partitions_count_and_cost_is_the_median_pace() {
    let p = Pipeline::new("");
    p.build(&[], 0); // everything built up to 2025-01-10
    let gb = "group-by-backfill";
    let part = "join-part";
    set_history(
        &p.s.repo,
        &[
            // 50, 60 and 600 seconds a partition: the median is 60.
            (
                gb,
                "risk.purchases.v1",
                "",
                "2025-01-01",
                "2025-01-02",
                100,
                0,
            ),
            (
                gb,
                "risk.purchases.v1",
                "",
                "2025-01-05",
                "2025-01-09",
                300,
                0,
            ),
            (
                gb,
                "risk.purchases.v1",
                "",
                "2025-01-10",
                "2025-01-10",
                600,
                0,
            ),
            // Failed attempts do not count.
            (
                gb,
                "risk.purchases.v1",
                "",
                "2025-01-05",
                "2025-01-05",
                9000,
                1,
            ),
            // The checkout join's purchases part: 20, 30 and 40 a partition.
            (
                part,
                "risk.checkout.v1",
                "risk_purchases_v1",
                "2025-01-03",
                "2025-01-03",
                20,
                0,
            ),
            (
                part,
                "risk.checkout.v1",
                "risk_purchases_v1",
                "2025-01-04",
                "2025-01-05",
                60,
                0,
            ),
            (
                part,
                "risk.checkout.v1",
                "risk_purchases_v1",
                "2025-01-06",
                "2025-01-06",
                40,
                0,
            ),
        ],
    );
    commit_all(&p.s.repo, "built");
    set_purchases_window(&p.s, 7);
    // A copy of the state, on SQLite whichever backend the repository's is.
    let copy = p.s.repo.join("copy.db");
    state_db::copy_to_file(&p.s.repo, &copy);
    let state_arg = copy.display().to_string();
    let report = diff_json(
        &p.s,
        &[
            "--state",
            &state_arg,
            "--base",
            "main",
            "--until",
            "2025-01-10",
        ],
    );
    assert_eq!(report["with_state"], true);
    // Without --state, the repository's own state is read, as every other
    // command reads it.
    let own = diff_json(&p.s, &["--base", "main", "--until", "2025-01-10"]);
    assert_eq!(own, report);
    if !crate::postgres::on_postgres() {
        // No state of its own: it says so.
        state_db::lose(&p.s.repo);
        let none = diff(
            &p.s,
            &[
                "--format",
                "json",
                "--base",
                "main",
                "--until",
                "2025-01-10",
            ],
        );
        assert_contains(&none.stderr, "note: no state at");
        let none: Value = serde_json::from_str(&none.stdout).unwrap();
        assert_eq!(none["with_state"], false, "{none}");
    }

    // Built: the backfill 2025-01-05..10 (6), the joins 2025-01-03..10 (8).
    assert_estimate(
        &report,
        "group-by-backfill:risk.purchases.v1",
        6,
        60.0,
        "config",
    );
    assert_estimate(
        &report,
        "join-part:risk.checkout.v1#risk_purchases_v1",
        8,
        30.0,
        "config",
    );
    // No history of its own: the median of the step across configs.
    assert_estimate(
        &report,
        "join-part:risk.returns_join.v1#risk_purchases_v1",
        8,
        30.0,
        "step",
    );
    // Downstream, built 2025-01-06..10, at the pace of all backfills.
    assert_estimate(
        &report,
        "group-by-backfill:risk.checkout_chain.v1",
        5,
        60.0,
        "step",
    );
    // No history for the step at all: no estimate.
    assert_eq!(
        target(&report, "join-final:risk.checkout.v1")["estimate"],
        Value::Null
    );
    // The consistency steps were built from the log table's first partition.
    assert_eq!(
        target(&report, "build-comparison-table:risk.checkout.v1")["partitions"],
        10
    );
    assert_eq!(
        report["totals"]["job_seconds"],
        360.0 + 240.0 + 240.0 + 300.0
    );
    assert_eq!(report["totals"]["uncounted"], 0);
    // 6 + 5 + 2 joins x (8 part + 8 final) + 2 x 10 consistency + 1 upload + 1 KV.
    assert_eq!(report["totals"]["partitions"], 65);
    let out = diff(
        &p.s,
        &[
            "--state",
            &state_arg,
            "--base",
            "main",
            "--until",
            "2025-01-10",
            "--format",
            "markdown",
        ],
    );
    assert_contains(
        &out.stdout,
        "| `risk.purchases.v1` | modified group-by (semantic) | group-by-backfill, group-by-upload, upload-to-kv, group-by-streaming | 8 | ≈ 6 min |",
    );
    assert_contains(
        &out.stdout,
        "| group-by-backfill | `risk.purchases.v1` | 6 | 2025-01-05..2025-01-10 | ≈ 6 min | config changed |",
    );
    assert_eq!(
        report["headline"],
        "3 configs changed: 65 partitions to recompute (≈ 19 min of job time, 7 with no history), \
         1 streaming job to redeploy, 1 online group-by changes serving, 1 online join changes serving"
    );
}

#[test]
fn policies_give_their_exit_codes() {
    let s = repository();
    let with = |more: &[&str]| diff(&s, &against_main(more));
    // Nothing changed: 0 even with every policy on.
    let out = with(&[
        "--exit-code",
        "--max-partitions",
        "0",
        "--deny",
        "in-place-online-change",
    ]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_contains(&out.stdout, "no config changed");

    set_purchases_window(&s, 7);
    assert_eq!(with(&[]).code, 0);
    assert_eq!(with(&["--exit-code"]).code, 4);
    assert_eq!(with(&["--max-partitions", "171"]).code, 0);
    let out = with(&["--max-partitions", "170", "--exit-code"]);
    assert_eq!(out.code, 1);
    assert_contains(
        &out.stderr,
        "171 partitions to recompute, more than --max-partitions 170",
    );

    let out = with(&["--deny", "in-place-online-change"]);
    assert_eq!(out.code, 1);
    assert_contains(
        &out.stderr,
        "online group-by risk.purchases.v1 changes what it serves under the same name",
    );
    assert_contains(&out.stderr, "bump its version (e.g. risk.purchases.v2)");
    assert_contains(&out.stderr, "online join risk.checkout.v1");
    // The offline join embeds it too, but serves nothing.
    assert!(
        !out.stderr.contains("risk.returns_join.v1"),
        "{}",
        out.stderr
    );

    // A new version is not an in-place change: rename the group-by (and the
    // joins' copies) to v2.
    for (file, path) in [
        (PURCHASES, vec!["metaData", "name"]),
        (
            CHECKOUT,
            vec!["joinParts", "0", "groupBy", "metaData", "name"],
        ),
        (
            RETURNS_JOIN,
            vec!["joinParts", "0", "groupBy", "metaData", "name"],
        ),
    ] {
        s.edit(file, |v| {
            let mut at = v;
            for key in &path {
                at = match key.parse::<usize>() {
                    Ok(i) => &mut at[i],
                    Err(_) => &mut at[*key],
                };
            }
            *at = "risk.purchases.v2".into();
        });
    }
    std::fs::rename(
        s.repo.join(PURCHASES),
        s.repo.join("compiled/group_bys/risk/risk.purchases.v2"),
    )
    .unwrap();
    let out = with(&["--deny", "in-place-online-change", "--format", "json"]);
    // The joins still serve the same names with new values inside.
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        !out.stderr.contains("group-by risk.purchases"),
        "{}",
        out.stderr
    );
    assert_contains(&out.stderr, "online join risk.checkout.v1");
}

#[test]
fn a_malformed_head_config_names_its_file_and_field() {
    let s = repository();
    s.edit(PURCHASES, |gb| {
        gb["aggregations"][0]["operation"] = "SUM".into()
    });
    let out = diff(&s, &["--base", "main"]);
    assert_error(&out, "head working tree");
    assert_error(
        &out,
        "compiled/group_bys/risk/risk.purchases.v1: aggregations[0].operation",
    );
    assert!(out.stdout.is_empty(), "{}", out.stdout);

    let out = diff(
        &s,
        &[
            "--base",
            "main",
            "--until",
            "2025-01-10",
            "--from",
            "2025-01-20",
        ],
    );
    assert_error(&out, "--from 2025-01-20 is after --until 2025-01-10");

    // A base that is neither a folder nor a revision.
    let out = diff(&s, &["--base", "no-such-branch"]);
    assert_error(
        &out,
        "--base no-such-branch: not a folder, and not a git revision",
    );
    let out = diff(&s, &["--base", "--upload-pack=touch pwned"]);
    assert_eq!(out.code, 2);
    assert!(!s.repo.join("pwned").exists());
}

#[test]
fn folders_compare_the_corpus_with_a_copy_that_has_one_window_edited() {
    let dir = tempfile::tempdir().unwrap();
    let base = testdata("corpus/airbnb-chronon-samples");
    let head = dir.path().join("head");
    crate::copy_dir(&base, &head);
    // An online group-by with no backfill: its upload and KV upload are what
    // it builds. Nine joins embed it; they are not recompiled here.
    let file = "production/group_bys/sample_team/event_sample_group_by.v1";
    let path = head.join(file);
    let mut gb: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(gb["aggregations"][0]["windows"][0]["length"], 7);
    gb["aggregations"][0]["windows"][0]["length"] = 30.into();
    std::fs::write(&path, serde_json::to_string_pretty(&gb).unwrap()).unwrap();

    let out = crate::chronon_build(
        &head,
        &[
            "diff",
            "--base",
            base.to_str().unwrap(),
            "--until",
            "2024-01-31",
            "--format",
            "json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_valid(&schema("diff.schema.json"), &report, "diff --format json");
    assert_eq!(
        report["headline"],
        "1 config changed: 2 partitions to recompute, 1 online group-by changes serving"
    );
    assert_eq!(
        invalidated(&report),
        [
            "group-by-upload:sample_team.event_sample_group_by.v1 1",
            "upload-to-kv:sample_team.event_sample_group_by.v1 1",
        ]
    );
    assert_eq!(
        report["configs"]["modified"][0]["fields"],
        serde_json::json!([{"path": "aggregations[0].windows[0].length", "class": "semantic", "old": 7, "new": 30}])
    );
    assert_eq!(
        report["metadata_uploads"],
        serde_json::json!(["sample_team.event_sample_group_by.v1"])
    );
    // The joins that embed it still run the old copy: the diff says so, once
    // per join, and repeats none of the notes the base already had.
    let recompile: Vec<&str> = report["notes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n.as_str())
        .filter(|n| n.contains("recompile the join"))
        .collect();
    assert_eq!(recompile.len(), 9, "{recompile:#?}");
    assert!(
        recompile
            .iter()
            .all(|n| n.contains("event_sample_group_by.v1"))
    );
}

#[test]
fn an_online_join_whose_left_side_changes_still_serves_the_same_values() {
    let s = repository();
    // The left side is what a backfill joins features onto: it changes the
    // training data, not what a fetch returns.
    s.edit(CHECKOUT, |j| {
        j["left"]["events"]["query"]["wheres"] = serde_json::json!(["merchant_id IS NOT NULL"])
    });
    let out = diff(
        &s,
        &against_main(&[
            "--deny",
            "in-place-online-change",
            "--exit-code",
            "--format",
            "json",
        ]),
    );
    assert_eq!(out.code, 4, "{}", out.stderr);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["serving"], Value::Array(vec![]));
    assert_eq!(
        target(&report, "join-left:risk.checkout.v1")["reasons"],
        serde_json::json!([{"kind": "config-changed"}])
    );
}

/// The configs in a subfolder of a larger git repository (a monorepo), and
/// `diff` started from elsewhere: the base side is read from the same
/// subfolder at the revision. Errors name the revision and the folder.
#[test]
fn diff_works_when_the_configs_are_a_subfolder_of_a_monorepo() {
    let s = Scenario::copy("scenario");
    let mono = s.repo.parent().unwrap().join("mono");
    let configs = mono.join("ml/features");
    copy_dir(&s.repo, &configs);
    std::fs::write(mono.join("README.md"), "other teams' code\n").unwrap();
    std::fs::create_dir_all(mono.join("services")).unwrap();
    std::fs::write(mono.join("services/app.py"), "print('hi')\n").unwrap();
    commit_all(&mono, "base");
    let edit = |days: u64| {
        let path = configs.join(PURCHASES);
        let mut gb: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        gb["aggregations"][0]["windows"][0]["length"] = days.into();
        std::fs::write(&path, serde_json::to_string_pretty(&gb).unwrap()).unwrap();
    };
    edit(9);
    // From the monorepo's root, from an unrelated folder, and from inside.
    for cwd in [mono.clone(), std::env::temp_dir(), mono.join("services")] {
        let out = crate::command(&configs)
            .current_dir(&cwd)
            .args([
                "diff",
                "--base",
                "main",
                "--until",
                "2025-01-31",
                "--format",
                "json",
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(0),
            "from {}: {stderr}",
            cwd.display()
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let labels = invalidated(&report);
        assert!(
            labels
                .iter()
                .any(|l| l.starts_with("group-by-backfill:risk.purchases.v1 ")),
            "from {}: {labels:?}",
            cwd.display()
        );
        assert!(
            !labels.iter().any(|l| l.contains("risk.returns.v1 ")),
            "{labels:?}"
        );
    }

    // A revision where the folder did not exist yet.
    let empty_tree = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
    let root = git(&mono, &["commit-tree", empty_tree, "-m", "no configs yet"]);
    git(&mono, &["tag", "empty", root.trim()]);
    let out = chronon_build(
        &configs,
        &["diff", "--base", "empty", "--until", "2025-01-31"],
    );
    assert_error(
        &out,
        "--base empty: the folder ml/features does not exist at empty (",
    );
    assert!(
        !out.stderr.contains("chronon-build-diff-"),
        "{}",
        out.stderr
    );
}
