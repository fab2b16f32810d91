//! Hints where a user is stuck: an empty warehouse says where it looked and
//! how to load data; a lost state with output tables present suggests
//! `adopt`; `explain` follows a waiting target to its root cause.

use crate::scenario::seed_sources;
use crate::{Scenario, assert_contains, chronon_build, copy_dir, testdata};

const UNTIL: &str = "2025-01-10";

#[test]
fn an_empty_embedded_warehouse_says_where_it_looked_and_how_to_load() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    copy_dir(&testdata("corpus/airbnb-chronon-samples"), &repo);
    let warehouse = repo.join(".chronon-build/warehouse");
    for args in [&["plan"][..], &["run", "-n"], &["run"]] {
        let mut args = args.to_vec();
        args.extend(["--until", "2025-09-29"]);
        let out = chronon_build(&repo, &args);
        // Wrapped at 100 columns: joined back before looking.
        let said = out.stderr.replace("\n    ", " ");
        for needle in [
            "note: warehouse: no partition of item_snapshot and 7 more source table(s) in the \
             embedded warehouse at "
                .to_string(),
            format!("{} (it holds no table)", warehouse.display()),
            "`chronon-build warehouse import TABLE FILE`".into(),
            "[warehouse.seed]".into(),
            "docs/warehouse.md".into(),
        ] {
            assert_contains(&said, &needle);
        }
        assert!(!out.stdout.contains("no partition of"), "{}", out.stdout);
    }
}

#[test]
fn a_warehouse_with_every_source_gives_no_loading_hint() {
    let s = Scenario::copy("scenario");
    seed_sources(&s, 10);
    let out = s.run(&["plan", "--until", UNTIL]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("no partition of"), "{}", out.stderr);
    // One source missing entirely: named, with the hive-dir root it read.
    std::fs::remove_dir_all(s.repo.join("warehouse/raw.db/returns")).unwrap();
    let out = s.run(&["plan", "--until", UNTIL]);
    assert_contains(
        &out.stderr.replace("\n    ", " "),
        &format!(
            "note: warehouse: no partition of raw.returns in the hive-dir warehouse at {}",
            s.repo.join("warehouse").display()
        ),
    );
}

#[test]
fn a_lost_state_with_outputs_in_the_warehouse_suggests_adopt() {
    let s = Scenario::copy("scenario");
    seed_sources(&s, 10);
    assert!(s.build_all(UNTIL) > 0);
    let out = s.run(&["plan", "--until", UNTIL]);
    assert!(!out.stderr.contains("adopt"), "{}", out.stderr);
    crate::state_db::lose(&s.repo);
    for args in [&["plan"][..], &["run", "-n"]] {
        let mut args = args.to_vec();
        args.extend(["--until", UNTIL]);
        let out = s.run(&args);
        let said = out.stderr.replace("\n    ", " ");
        assert_contains(&said, "note: state: nothing is recorded as built in ");
        assert_contains(
            &said,
            "yet the warehouse holds partitions of output table(s) ",
        );
        assert_contains(&said, "`chronon-build adopt --until 2025-01-10`");
    }
    let adopt = s.run(&["adopt", "--until", UNTIL]);
    assert_eq!(adopt.code, 0, "{}", adopt.stderr);
    let out = s.run(&["plan", "--until", UNTIL]);
    assert!(!out.stderr.contains("adopt"), "{}", out.stderr);
}

#[test]
fn explain_follows_a_waiting_target_to_its_root_cause() {
    let s = Scenario::copy("scenario");
    seed_sources(&s, 10);
    assert!(s.build_all(UNTIL) > 0);
    // A source day rewritten: the group-by's backfill reads it again, and
    // what reads that backfill waits on it.
    s.write_partition("raw.purchases", "2025-01-09", "rewritten");
    let target = "join-final:risk.returns_join.v1@2025-01-09";
    let out = s.run(&["explain", target, "--until", UNTIL]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_contains(
        &out.stdout,
        "status        waiting: join-part:risk.returns_join.v1#risk_purchases_v1@2025-01-09\n",
    );
    assert_contains(
        &out.stdout,
        "root cause    join-part:risk.returns_join.v1#risk_purchases_v1@2025-01-09: stale: \
         input-changed raw.purchases ds=2025-01-09",
    );
    let json = s.run(&["explain", target, "--until", UNTIL, "--format", "json"]);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        value["root_cause"]["target"],
        "join-part:risk.returns_join.v1#risk_purchases_v1@2025-01-09"
    );
    assert_eq!(value["root_cause"]["reason"], "input-changed");

    // A missing source day: what reads it is blocked, and says which.
    std::fs::remove_dir_all(s.partition_dir("raw.purchases", "2025-01-09")).unwrap();
    let out = s.run(&["explain", target, "--until", UNTIL]);
    assert_contains(
        &out.stdout,
        "root cause    missing raw.purchases ds=2025-01-09 (a source partition: load it",
    );
}
