//! Issue 28: what a renamed config leaves behind (its tables, KV dataset
//! and state rows) is kept, but known: `gc -n` lists it with the node that
//! wrote it and when, `status` counts it, `gc --orphans` removes it.

use crate::{Scenario, assert_contains};

const UNTIL: &str = "2025-09-29";

/// `returns.v1` renamed to `v2`, in its file and in the join that inlines
/// it (the part, and the derivation that names its columns).
fn rename_returns(s: &Scenario) {
    let dir = s.repo.join("production/group_bys/quickstart");
    let text = std::fs::read_to_string(dir.join("returns.v1")).unwrap();
    std::fs::write(
        dir.join("returns.v2"),
        text.replace("quickstart.returns.v1", "quickstart.returns.v2"),
    )
    .unwrap();
    std::fs::remove_file(dir.join("returns.v1")).unwrap();
    let join = s.repo.join("production/joins/quickstart/training_set.v1");
    let text = std::fs::read_to_string(&join).unwrap();
    std::fs::write(
        &join,
        text.replace("quickstart.returns.v1", "quickstart.returns.v2")
            .replace("quickstart_returns_v1", "quickstart_returns_v2"),
    )
    .unwrap();
}

fn tables(s: &Scenario) -> String {
    let ls = s.run(&["warehouse", "ls"]);
    assert_eq!(ls.code, 0, "{}", ls.stderr);
    ls.stdout
}

#[test]
fn a_renamed_group_bys_tables_kv_dataset_and_state_rows_are_orphans_until_asked() {
    let s = Scenario::copy("demo");
    let first = s.run(&["run", "--until", UNTIL]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    rename_returns(&s);
    let renamed = s.run(&["run", "--until", UNTIL]);
    assert_eq!(renamed.code, 0, "{}\n{}", renamed.stdout, renamed.stderr);

    let dry = s.run(&["gc", "-n", "--until", UNTIL]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let listed: Vec<String> = dry
        .stdout
        .lines()
        .map(|line| {
            // The time of the build: redacted.
            let at = line.find("last built ").map(|i| i + "last built ".len());
            match at {
                Some(at) => format!("{}T{}", &line[..at], &line[at + 20..]),
                None => line.to_string(),
            }
        })
        .collect();
    assert_eq!(
        listed,
        [
            "orphan group-by-backfill:quickstart.returns.v1 (no config makes it; last built T): \
             table quickstart.quickstart_returns_v1 (29 partition(s)), 29 state row(s)",
            "orphan group-by-upload:quickstart.returns.v1 (no config makes it; last built T): \
             table quickstart.quickstart_returns_v1_upload (1 partition(s)), 1 state row(s)",
            "orphan upload-to-kv:quickstart.returns.v1 (no config makes it; last built T): \
             KV dataset QUICKSTART_RETURNS_V1_BATCH, 1 state row(s)",
            "orphan join-part:quickstart.training_set.v1#quickstart_returns_v1 (no config makes \
             it; last built T): table quickstart.quickstart_training_set_v1_quickstart_returns_v1 \
             (29 partition(s)), 29 state row(s)",
            "orphan metadata-upload:quickstart.returns.v1 (no config makes it; last built T): \
             KV entry CHRONON_METADATA/quickstart.returns.v1, 1 state row(s)",
            "5 orphan(s) of removed or renamed configs kept: `gc --orphans` removes them",
        ]
    );
    // Nothing is removed without being asked: not by -n, nor by plain gc.
    let gc = s.run(&["gc", "--until", UNTIL]);
    assert_eq!(gc.code, 0, "{}", gc.stderr);
    assert_contains(&gc.stdout, "5 orphan(s) of removed or renamed configs kept");
    assert_contains(&tables(&s), "quickstart.quickstart_returns_v1 ");

    let status = s.run(&["status", "--until", UNTIL]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert_contains(
        &status.stdout,
        "5 orphan(s) of removed or renamed configs (their tables, KV datasets and state rows \
         are kept): `gc -n` lists them, `gc --orphans` removes them",
    );
    let json = s.run(&["status", "--until", UNTIL, "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(json["orphans"], 5);
    crate::assert_valid(&crate::schema("status.schema.json"), &json, "status");

    let removed = s.run(&["gc", "--orphans", "--until", UNTIL]);
    assert_eq!(removed.code, 0, "{}", removed.stderr);
    assert_eq!(
        removed.stdout.matches("removed orphan ").count(),
        5,
        "{}",
        removed.stdout
    );
    let left = tables(&s);
    assert!(!left.contains("returns_v1"), "{left}");
    assert_contains(&left, "quickstart.quickstart_returns_v2 ");
    assert_contains(
        &left,
        "quickstart.quickstart_training_set_v1_quickstart_returns_v2 ",
    );
    let kv = rusqlite::Connection::open(s.repo.join(".chronon-build/kv.sqlite")).unwrap();
    let datasets: Vec<String> = kv
        .prepare("SELECT DISTINCT dataset FROM kv WHERE dataset LIKE '%RETURNS%' ORDER BY 1")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(datasets, ["QUICKSTART_RETURNS_V2_BATCH"]);
    let metadata: i64 = kv
        .query_row(
            "SELECT count(*) FROM kv WHERE dataset = 'CHRONON_METADATA' AND key LIKE '%returns.v1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(metadata, 0);

    assert_eq!(
        s.run(&["gc", "-n", "--until", UNTIL]).stdout,
        "nothing to remove\n"
    );
    assert!(
        !s.run(&["status", "--until", UNTIL])
            .stdout
            .contains("orphan")
    );
    let after = s.run(&["run", "--until", UNTIL]);
    assert_eq!(after.code, 0, "{}", after.stderr);
    assert_contains(&after.stdout, "ok: 0 built in 0 job(s)");
}
