//! What makes a target stale: each test builds the scenario (recording every
//! target in the state), changes one thing, and compares the plan exactly.

use serde_json::json;

use crate::scenario::seed_sources;
use crate::{Scenario, not_fresh};

const UNTIL: &str = "2025-01-10";
const PURCHASES: &str = "compiled/group_bys/risk/risk.purchases.v1";
const CHECKOUT: &str = "compiled/joins/risk/risk.checkout.v1";
const RETURNS_JOIN: &str = "compiled/joins/risk/risk.returns_join.v1";

fn built() -> Scenario {
    let s = Scenario::copy("scenario");
    seed_sources(&s, 10);
    assert!(s.build_all(UNTIL) > 0);
    let out = s.run(&["plan", "--until", UNTIL, "--exit-code"]);
    assert_eq!(
        out.code, 0,
        "after building everything, nothing is stale:\n{}{}",
        out.stdout, out.stderr
    );
    s
}

fn plan(s: &Scenario) -> Vec<String> {
    not_fresh(&s.run(&["plan", "--until", UNTIL, "--format", "json"]))
}

/// Edits the purchases group-by everywhere it is compiled: its own file and
/// the joins that inline it, as the Chronon compiler does.
fn edit_purchases(s: &Scenario, edit: impl Fn(&mut serde_json::Value)) {
    s.edit(PURCHASES, &edit);
    s.edit(CHECKOUT, |j| edit(&mut j["joinParts"][0]["groupBy"]));
    s.edit(RETURNS_JOIN, |j| edit(&mut j["joinParts"][0]["groupBy"]));
}

#[test]
fn non_semantic_metadata_changes_no_batch_key() {
    let s = built();
    edit_purchases(&s, |g| {
        let meta = &mut g["metaData"];
        meta["description"] = json!("a new description");
        meta["team"] = json!("risk-platform");
        meta["executionInfo"] =
            json!({"stepDays": 30, "env": {"common": {"EXECUTOR_MEMORY": "16G"}}});
        meta["offlineSchedule"] = json!("@weekly");
        meta["modeToEnvMap"] = json!({"backfill": {"EXECUTOR_CORES": "8"}});
        meta["columnHashes"] = json!({"amount_sum_3d": "def"});
        g["backfillStartDate"] = json!("2025-01-05");
    });
    // Only metadata upload hashes the whole config.
    assert_eq!(
        plan(&s),
        vec![
            "metadata-upload:risk.purchases.v1 - stale config-changed",
            "metadata-upload:risk.checkout.v1 - stale config-changed",
        ]
    );
}

#[test]
fn a_topic_change_redeploys_streaming_only() {
    let s = built();
    edit_purchases(&s, |g| {
        g["sources"][0]["events"]["topic"] = json!("events.purchases_v2")
    });
    assert_eq!(
        plan(&s),
        vec![
            "group-by-streaming:risk.purchases.v1 - stale config-changed",
            "metadata-upload:risk.purchases.v1 - stale config-changed",
            "metadata-upload:risk.checkout.v1 - stale config-changed",
        ]
    );
}

#[test]
fn a_window_change_reruns_the_group_by_and_the_join_parts_that_embed_it_only() {
    let s = built();
    edit_purchases(&s, |g| {
        g["aggregations"][0]["windows"][0]["length"] = json!(5)
    });
    assert_eq!(
        plan(&s),
        vec![
            "group-by-backfill:risk.purchases.v1 2025-01-05..2025-01-10 stale config-changed",
            "group-by-upload:risk.purchases.v1 2025-01-10..2025-01-10 stale config-changed",
            "upload-to-kv:risk.purchases.v1 2025-01-10..2025-01-10 waiting",
            "group-by-streaming:risk.purchases.v1 - stale config-changed",
            "metadata-upload:risk.purchases.v1 - stale config-changed",
            "join-part:risk.checkout.v1#risk_purchases_v1 2025-01-03..2025-01-10 stale config-changed",
            "metadata-upload:risk.checkout.v1 - stale config-changed",
            "join-part:risk.returns_join.v1#risk_purchases_v1 2025-01-03..2025-01-10 stale config-changed",
            "join-final:risk.returns_join.v1 2025-01-03..2025-01-10 stale config-changed",
            "join-final:risk.checkout.v1 2025-01-03..2025-01-10 stale config-changed",
            "group-by-backfill:risk.checkout_chain.v1 2025-01-06..2025-01-10 waiting",
            "build-comparison-table:risk.checkout.v1 2025-01-01..2025-01-10 stale config-changed",
            "consistency-metrics-compute:risk.checkout.v1 2025-01-01..2025-01-10 waiting",
        ]
    );
    let out = s.run(&[
        "plan",
        "--until",
        UNTIL,
        "--select",
        "risk.checkout.v1",
        "--step",
        "join-part",
    ]);
    assert_eq!(
        out.stdout,
        "join-part  risk.checkout.v1#risk_purchases_v1  2025-01-03..2025-01-10 (8)  \
         stale: config-changed driverArchive.groupBy.aggregations[0].windows[0].length: 3 -> 5, \
         joinParts[0].groupBy.aggregations[0].windows[0].length: 3 -> 5\n\
         34 targets up to 2025-01-10: 26 fresh, 8 stale, 0 blocked, 0 waiting\n"
    );
}

#[test]
fn a_moved_start_partition_makes_stale_only_the_partitions_whose_inputs_it_changes_and_the_join_tables_the_driver_archives()
 {
    let s = built();
    edit_purchases(&s, |g| {
        g["sources"][0]["events"]["query"]["startPartition"] = json!("2025-01-02")
    });
    // Four days back from D reach 2025-01-01 only for D <= 2025-01-05. But
    // the real Driver's join semantic hash covers the part's query cutoffs
    // (`GroupByOps.semanticHash`), so a join job archives the part table and
    // the output table whole: every day of both is restated.
    let lines = plan(&s);
    assert_eq!(
        lines,
        vec![
            "group-by-backfill:risk.purchases.v1 2025-01-05..2025-01-05 stale input-removed",
            "metadata-upload:risk.purchases.v1 - stale config-changed",
            "join-part:risk.checkout.v1#risk_purchases_v1 2025-01-03..2025-01-10 stale config-changed",
            "metadata-upload:risk.checkout.v1 - stale config-changed",
            "join-part:risk.returns_join.v1#risk_purchases_v1 2025-01-03..2025-01-10 stale config-changed",
            "join-final:risk.returns_join.v1 2025-01-03..2025-01-10 stale config-changed",
            "join-final:risk.checkout.v1 2025-01-03..2025-01-10 stale config-changed",
            "group-by-backfill:risk.checkout_chain.v1 2025-01-06..2025-01-10 waiting",
            "build-comparison-table:risk.checkout.v1 2025-01-01..2025-01-05 stale input-removed",
            "consistency-metrics-compute:risk.checkout.v1 2025-01-01..2025-01-05 waiting",
        ]
    );
    let out = s.run(&[
        "explain",
        "group-by-backfill:risk.purchases.v1@2025-01-05",
        "--until",
        UNTIL,
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("status        stale: input-removed raw.purchases ds=2025-01-01\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "differences from the recorded build:\n  input-removed raw.purchases ds=2025-01-01\n"
        ),
        "{}",
        out.stdout
    );
}

#[test]
fn one_changed_source_partition_reruns_exactly_the_windows_that_read_it() {
    let s = built();
    s.write_partition("raw.purchases", "2025-01-07", "restated purchases");
    let lines = plan(&s);
    let backfill: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("group-by-backfill:risk.purchases.v1"))
        .collect();
    // Days 2025-01-07..11 read it (4 days back); --until stops at the 10th.
    assert_eq!(
        backfill,
        vec!["group-by-backfill:risk.purchases.v1 2025-01-07..2025-01-10 stale input-changed"]
    );
    let out = s.run(&[
        "plan",
        "--until",
        UNTIL,
        "--select",
        "risk.purchases.v1",
        "--step",
        "group-by-backfill",
    ]);
    assert!(out.stdout.starts_with("group-by-backfill  risk.purchases.v1  2025-01-07..2025-01-10 (4)  stale: input-changed raw.purchases ds=2025-01-07 ("), "{}", out.stdout);
    // The unwindowed returns group-by and the merchants chain are untouched.
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("risk.returns.v1") || l.contains("merchant")),
        "{lines:#?}"
    );
}

#[test]
fn a_deleted_output_is_output_missing_and_its_dependents_wait() {
    let s = built();
    std::fs::remove_dir_all(s.partition_dir("risk_db.risk_merchants_v1", "2025-01-06")).unwrap();
    let lines = plan(&s);
    assert_eq!(
        lines[0],
        "staging-query:risk.merchants.v1 2025-01-06..2025-01-06 stale output-missing"
    );
    assert!(
        lines.contains(
            &"group-by-backfill:risk.merchant_profile.v1 2025-01-06..2025-01-06 waiting"
                .to_string()
        ),
        "{lines:#?}"
    );
}

#[test]
fn lag_shifts_the_unwindowed_history_read() {
    let s = built();
    // The returns group-by has lag 1: its target on the 10th reads up to the 9th.
    s.write_partition("raw.returns", "2025-01-10", "late returns");
    assert!(!plan(&s).iter().any(|l| l.contains("risk.returns.v1")));
    s.write_partition("raw.returns", "2025-01-09", "restated returns");
    let lines = plan(&s);
    assert_eq!(
        lines,
        vec!["group-by-backfill:risk.returns.v1 2025-01-10..2025-01-10 stale input-changed"]
    );
}

/// Batch slices once dropped all of `metaData`, so a changed `lag` or output
/// namespace invalidated nothing.
#[test]
fn regression_lag_and_output_namespace_in_metadata_are_semantic() {
    let s = built();
    s.edit("compiled/group_bys/risk/risk.returns.v1", |g| {
        g["metaData"]["customJson"] = json!("{\"lag\": 2}")
    });
    let out = s.run(&["plan", "--until", UNTIL, "--select", "risk.returns.v1"]);
    assert!(
        out.stdout.starts_with(
            "group-by-backfill  risk.returns.v1  2025-01-05..2025-01-10 (6)  stale: config-changed metaData.customJson.lag: 1 -> 2\n"
        ),
        "{}",
        out.stdout
    );
    s.edit("compiled/staging_queries/risk/risk.merchants.v1", |q| {
        q["metaData"]["outputNamespace"] = json!("risk_v2")
    });
    let lines = plan(&s);
    assert!(
        lines.contains(
            &"staging-query:risk.merchants.v1 2025-01-01..2025-01-10 stale config-changed"
                .to_string()
        ),
        "{lines:#?}"
    );
}
