//! A warm plan holds the nodes nothing touched by their memos by versions
//! (`plan::unchanged`), without listing their tables: the embedded
//! warehouse's catalog replaces a table's version whenever any writer
//! changes its partitions. Every such change must still be seen: a plan
//! with memos decides exactly as one without.

use std::path::Path;

use serde_json::Value;

use crate::soundness::{built_repo, day, not_fresh_ranges, plans_with_and_without_memos, run};
use crate::state_db::StateDb;

/// Runs SQL on the embedded warehouse's `raw` namespace file, as another
/// writer (`sqlite3`, a script) would.
fn on_raw(root: &Path, sql: &str) {
    let raw = root.join(".chronon-build/warehouse/raw.sqlite");
    rusqlite::Connection::open(raw)
        .unwrap()
        .execute_batch(sql)
        .unwrap();
}

/// An `UPDATE` of one source partition's fingerprint in the catalog.
fn refingerprint(d: i64, hex: char) -> String {
    format!(
        "UPDATE _partitions SET fingerprint = '{}' WHERE tbl = 'events' AND partition = '{}';",
        hex.to_string().repeat(64),
        day(d)
    )
}

/// How many planned targets are not fresh.
fn not_fresh(plan: &str) -> u64 {
    let plan: Value = serde_json::from_str(plan).unwrap();
    let totals = &plan["totals"];
    ["stale", "blocked", "waiting"]
        .iter()
        .map(|k| totals[k].as_u64().unwrap())
        .sum()
}

/// Plans with and without memos agree, and see `changed` targets not fresh.
fn assert_seen(root: &Path, until: &str, what: &str) {
    let (with, without) = plans_with_and_without_memos(root, until);
    assert_eq!(with, without, "memos changed a decision after {what}");
    assert!(not_fresh(&with) > 0, "{what} goes unseen:\n{with}");
}

#[test]
fn a_warm_plan_sees_every_change_any_writer_makes_to_the_catalog() {
    let (dir, root, until) = built_repo();
    run(&root, &until);
    let mut state = StateDb::open(&root);
    let by_versions = "SELECT count(*) FROM node_memos WHERE versions IS NOT NULL";
    assert!(
        state.count(by_versions) >= 3,
        "a no-op run stores memos by versions"
    );
    let (with, _) = plans_with_and_without_memos(&root, &until);
    assert_eq!(not_fresh(&with), 0, "{with}");

    let deleted = format!(
        "CREATE TABLE kept AS SELECT * FROM _partitions WHERE tbl = 'events' AND partition = '{0}';
         DELETE FROM _partitions WHERE tbl = 'events' AND partition = '{0}';",
        day(3)
    );
    for (what, sql) in [
        ("an updated fingerprint", refingerprint(2, 'a')),
        (
            "a replaced partition",
            format!(
                "INSERT OR REPLACE INTO _partitions VALUES ('events', '{}', 1, '{}', 0);",
                day(1),
                "b".repeat(64)
            ),
        ),
        ("a deleted partition", deleted),
    ] {
        on_raw(&root, &sql);
        assert_seen(&root, &until, what);
        run(&root, &until);
        run(&root, &until);
    }
    // The deleted partition put back as it was: the days whose windows
    // read it were built without it, and are stale again.
    on_raw(
        &root,
        "INSERT INTO _partitions SELECT * FROM kept; DROP TABLE kept;",
    );
    assert_seen(&root, &until, "a partition put back");
    run(&root, &until);
    run(&root, &until);
    let (with, _) = plans_with_and_without_memos(&root, &until);
    assert_eq!(not_fresh(&with), 0, "all built: {with}");

    // A copy of the namespace file; a change built; the copy restored, and
    // changed as the first change did, to another fingerprint: a version
    // must never come back to one a change since the copy had (as a count
    // of changes would).
    let raw = root.join(".chronon-build/warehouse/raw.sqlite");
    let copy = dir.path().join("raw-copy.sqlite");
    rusqlite::Connection::open(&raw)
        .unwrap()
        .execute("VACUUM INTO ?1", [copy.display().to_string()])
        .unwrap();
    on_raw(&root, &refingerprint(2, 'c'));
    run(&root, &until);
    run(&root, &until);
    std::fs::copy(&copy, &raw).unwrap();
    assert_seen(&root, &until, "a restored copy");
    on_raw(&root, &refingerprint(2, 'e'));
    assert_seen(&root, &until, "a change to a restored copy");
    run(&root, &until);
    run(&root, &until);

    // What holds a node is its tables' versions alone: a writer that
    // dropped the triggers first changes a partition unseen (unlike a plan
    // without memos, which lists it). Not a way to write: it shows that a
    // warm plan does not list the tables of the nodes it holds.
    on_raw(
        &root,
        &format!(
            "DROP TRIGGER _partitions_updated; {}",
            refingerprint(2, 'd')
        ),
    );
    let (with, without) = plans_with_and_without_memos(&root, &until);
    assert_eq!(not_fresh(&with), 0, "held by versions: {with}");
    assert!(not_fresh(&without) > 0, "{without}");
}

/// The cron case after a memo was stored with its digest by versions: the
/// next day, no digest by versions holds (the days changed), and the memo
/// still holds by its columns for the days it covers. Shown by tampering
/// with a recorded key on a covered day: unseen, as the memo vouches for
/// it, while a plan without memos sees it.
#[test]
fn a_memo_stored_by_versions_holds_by_columns_when_until_moves_on() {
    let (_dir, root, until) = built_repo();
    run(&root, &until);
    let mut state = StateDb::open(&root);
    let by_versions = "SELECT count(*) FROM node_memos m JOIN nodes n ON n.id = m.node
                       WHERE n.step = 'group-by-backfill' AND n.config = 't.g'
                         AND m.versions IS NOT NULL";
    assert_eq!(
        state.count(by_versions),
        1,
        "stored with its digest by versions"
    );
    state.execute(
        "UPDATE targets SET key = ?1 WHERE day = ?2 AND node =
             (SELECT id FROM nodes WHERE step = 'group-by-backfill' AND config = 't.g')",
        &[
            crate::state_db::Cell::Bytes(vec![0; 32]),
            crate::state_db::Cell::Int(crate::soundness::FIRST + 2),
        ],
    );
    let next = day(5);
    let (with, without) = plans_with_and_without_memos(&root, &next);
    let days = |d: i64| format!("{}..{}", day(d), day(d));
    let stale = |plan: &str| not_fresh_ranges(plan, "group-by-backfill:t.g");
    assert_eq!(stale(&with), vec![days(5)], "day 2 is the memo's");
    assert_eq!(stale(&without), vec![days(2), days(5)]);
}
