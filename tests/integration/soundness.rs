//! The differential soundness check, as a property: random sequences of
//! edits to a small repository (source rows changed, added and deleted,
//! whole days included; windows and operations; cosmetic fields; staging
//! SQL; start dates; `--until` moves), each followed by an incremental
//! `run`, must leave every wanted partition exactly as a clean build from
//! scratch of the same files has it (rows and KV values), and a run right
//! after must run nothing. A cosmetic edit runs nothing but the metadata
//! upload, which carries the whole config.
//!
//! CI runs a quick size; by hand, more:
//!
//!     CHRONON_BUILD_SOUNDNESS_CASES=200 cargo test --release --test integration soundness -- --nocapture

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

use crate::chronon_build;
use crate::state_db::{self, Cell, StateDb};

const DAY_MS: i64 = 86_400_000;
pub(crate) const FIRST: i64 = 20_089; // 2025-01-01
const DAYS: i64 = 6;

pub(crate) fn day(d: i64) -> String {
    let date = chronon_build::testing::Day((FIRST + d) as i32);
    date.to_string()
}

/// The repository's files, as the edits change them.
#[derive(Clone, Debug)]
struct Files {
    /// (k, v, day index) rows of raw.events.
    rows: Vec<(i64, i64, i64)>,
    window: i64,
    operation: i64,
    start: i64,
    description: String,
    multiplier: i64,
    until: i64,
}

impl Files {
    fn initial() -> Files {
        let mut rows = Vec::new();
        for d in 0..DAYS {
            for k in 1..=3 {
                rows.push((k, (k * 7 + d * 3) % 11, d));
            }
        }
        Files {
            rows,
            window: 2,
            operation: 7,
            start: 1,
            description: "events".into(),
            multiplier: 2,
            until: 4,
        }
    }

    fn write(&self, root: &Path) {
        std::fs::create_dir_all(root.join("data")).unwrap();
        let mut csv = String::from("k,v,ts,ds\n");
        for (i, (k, v, d)) in self.rows.iter().enumerate() {
            let ts = (FIRST + d) * DAY_MS + 1000 + i as i64;
            csv.push_str(&format!("{k},{v},{ts},{}\n", day(*d)));
        }
        std::fs::write(root.join("data/events.csv"), csv).unwrap();
        std::fs::write(
            root.join("chronon-build.toml"),
            "[warehouse.seed]\n\"raw.events\" = \"data/events.csv\"\n",
        )
        .unwrap();
        std::fs::write(root.join("teams.json"), r#"{"t": {"namespace": "out"}}"#).unwrap();
        let gb = json!({
            "metaData": {"name": "t.g", "team": "t", "outputNamespace": "out", "online": 1,
                         "description": self.description},
            "sources": [{"events": {"table": "raw.events", "query": {
                "selects": {"k": "k", "v": "v"}, "timeColumn": "ts"}}}],
            "keyColumns": ["k"],
            "aggregations": [{"inputColumn": "v", "operation": self.operation,
                              "windows": [{"length": self.window, "timeUnit": 1}]}],
            "backfillStartDate": day(self.start)
        });
        let sq = json!({
            "metaData": {"name": "t.sq", "team": "t", "outputNamespace": "out",
                         "dependencies": [
                             "{\"name\": \"wait_for_raw.events_ds\", \"spec\": \"raw.events/ds={{ ds }}\", \"start\": null, \"end\": null}"
                         ]},
            "query": format!(
                "SELECT k, v * {} AS w, ts, ds FROM raw.events WHERE ds BETWEEN '{{{{ start_date }}}}' AND '{{{{ end_date }}}}'",
                self.multiplier
            ),
            "startPartition": day(0)
        });
        let chained = json!({
            "metaData": {"name": "t.c", "team": "t", "outputNamespace": "out"},
            "sources": [{"events": {"table": "out.t_sq", "query": {
                "selects": {"k": "k", "w": "w"}, "timeColumn": "ts"}}}],
            "keyColumns": ["k"],
            "aggregations": [{"inputColumn": "w", "operation": 7,
                              "windows": [{"length": 2, "timeUnit": 1}]}],
            "backfillStartDate": day(1)
        });
        for (path, config) in [
            ("production/group_bys/t/g", gb),
            ("production/staging_queries/t/sq", sq),
            ("production/group_bys/t/c", chained),
        ] {
            let file = root.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, serde_json::to_string_pretty(&config).unwrap()).unwrap();
        }
    }
}

#[derive(Clone, Debug)]
enum Edit {
    ChangeValue { row: usize, value: i64 },
    AddRow { k: i64, v: i64, d: i64 },
    DeleteDay { d: i64 },
    Window(i64),
    Operation(i64),
    Cosmetic(String),
    Sql(i64),
    Start(i64),
    Until(i64),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 0i64..20).prop_map(|(row, value)| Edit::ChangeValue { row, value }),
        (1i64..5, 0i64..20, 0i64..DAYS).prop_map(|(k, v, d)| Edit::AddRow { k, v, d }),
        (0i64..DAYS).prop_map(|d| Edit::DeleteDay { d }),
        (1i64..5).prop_map(Edit::Window),
        prop::sample::select(vec![6i64, 7, 8, 9, 10]).prop_map(Edit::Operation),
        "[a-z ]{1,12}".prop_map(Edit::Cosmetic),
        (1i64..5).prop_map(Edit::Sql),
        (0i64..4).prop_map(Edit::Start),
        (2i64..DAYS).prop_map(Edit::Until),
    ]
}

impl Files {
    fn apply(&mut self, edit: &Edit) {
        match edit {
            Edit::ChangeValue { row, value } => {
                if !self.rows.is_empty() {
                    let i = row % self.rows.len();
                    self.rows[i].1 = *value;
                }
            }
            Edit::AddRow { k, v, d } => self.rows.push((*k, *v, *d)),
            Edit::DeleteDay { d } => self.rows.retain(|r| r.2 != *d),
            Edit::Window(w) => self.window = *w,
            Edit::Operation(op) => self.operation = *op,
            Edit::Cosmetic(text) => self.description = text.clone(),
            Edit::Sql(m) => self.multiplier = *m,
            Edit::Start(s) => self.start = *s,
            Edit::Until(u) => self.until = *u,
        }
    }
}

/// Every partition of every output table, as `warehouse show` rows, for
/// the days whose targets are fresh; and the KV store's values.
/// (table, partition, rows) of every fresh partition.
type Partitions = Vec<(String, String, Value)>;

/// (key, value) pairs of the KV store.
type KvValues = Vec<(String, String)>;

fn outputs(root: &Path, until: &str) -> (Partitions, KvValues) {
    let plan = chronon_build(
        root,
        &["plan", "--until", until, "--format", "json", "--show-fresh"],
    );
    let plan: Value = serde_json::from_str(&plan.stdout).unwrap_or(Value::Null);
    let mut out = Vec::new();
    for (table, target) in [
        ("out.t_g", "group-by-backfill:t.g"),
        ("out.t_sq", "staging-query:t.sq"),
        ("out.t_c", "group-by-backfill:t.c"),
    ] {
        let ls = chronon_build(root, &["warehouse", "ls", table, "--format", "json"]);
        let entries: Vec<Value> = serde_json::from_str(&ls.stdout).unwrap_or_default();
        for entry in entries {
            let partition = entry["partition"].as_str().unwrap().to_string();
            // A partition whose target is not fresh (blocked: its input day
            // is gone) is not read by anything; a clean build has none.
            let fresh = plan["groups"].as_array().into_iter().flatten().any(|g| {
                g["status"] == "fresh"
                    && g["from"].as_str().is_some_and(|f| f <= partition.as_str())
                    && g["to"].as_str().is_some_and(|t| t >= partition.as_str())
                    && g["target"] == target
            });
            if !fresh {
                continue;
            }
            let rows = crate::show_rows(root, table, &partition);
            out.push((table.to_string(), partition, rows));
        }
    }
    // The KV store keeps the last upload when today's is blocked (as a
    // serving store does); a clean build has none then. Compare the batch
    // values when the upload is fresh, and the metadata always.
    let upload_fresh = plan["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|g| g["status"] == "fresh" && g["target"] == "upload-to-kv:t.g");
    let kv = root.join(".chronon-build/kv.sqlite");
    let mut values = Vec::new();
    if kv.exists() {
        let conn = rusqlite::Connection::open(kv).unwrap();
        let mut stmt = conn
            .prepare("SELECT dataset, key, value FROM kv ORDER BY dataset, key")
            .unwrap();
        values = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .unwrap()
            .map(Result::unwrap)
            .filter(|(dataset, _, _)| upload_fresh || !dataset.ends_with("_BATCH"))
            .map(|(_, k, v)| (k, v))
            .collect();
    }
    (out, values)
}

pub(crate) fn run(root: &Path, until: &str) -> crate::Output {
    let out = chronon_build(root, &["run", "--until", until]);
    assert!(
        matches!(out.code, 0 | 3),
        "run: exit {}\n{}\n{}",
        out.code,
        out.stdout,
        out.stderr
    );
    out
}

/// `plan --format json` on the state as it is, and on a copy of it without
/// node memos (`plan::memo`): a memo may only save work, never change what
/// is decided.
pub(crate) fn plans_with_and_without_memos(root: &Path, until: &str) -> (String, String) {
    let memos = StateDb::open(root).count("SELECT count(*) FROM node_memos");
    assert!(memos > 0, "a run records node memos");
    let copy = without_memos(root);
    let plan = |state: Option<&Path>| {
        let mut args = vec!["plan", "--until", until, "--format", "json"];
        let state = state.map(|s| s.display().to_string());
        if let Some(state) = &state {
            args.extend(["--state", state]);
        }
        let out = chronon_build(root, &args);
        crate::assert_planned(&out);
        out.stdout
    };
    (plan(None), plan(Some(&copy)))
}

/// A SQLite copy of `root`'s state (`without-memos.db`) without its node
/// memos.
fn without_memos(root: &Path) -> PathBuf {
    let copy = root.join("without-memos.db");
    state_db::copy_to_file(root, &copy);
    rusqlite::Connection::open(&copy)
        .unwrap()
        .execute("DELETE FROM node_memos", [])
        .unwrap();
    copy
}

fn jobs(out: &crate::Output) -> usize {
    out.stdout
        .split_once(" built in ")
        .and_then(|(_, rest)| rest.split_once(" job(s)"))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary in {}", out.stdout))
}

fn cases() -> u32 {
    std::env::var("CHRONON_BUILD_SOUNDNESS_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(6)
}

#[test]
fn soundness_incremental_runs_equal_clean_builds_after_random_edits() {
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let started = std::time::Instant::now();
    let result = runner.run(&prop::collection::vec(edit(), 1..4), |edits| {
        let dir = tempfile::tempdir().unwrap();
        let incremental: PathBuf = dir.path().join("incremental");
        let mut files = Files::initial();
        files.write(&incremental);
        run(&incremental, &day(files.until));
        run(&incremental, &day(files.until));
        for edit in &edits {
            files.apply(edit);
            files.write(&incremental);
            let until = day(files.until);
            let (with, without) = plans_with_and_without_memos(&incremental, &until);
            prop_assert_eq!(
                with,
                without,
                "node memos changed a decision after {:?}",
                edit
            );
            let first = run(&incremental, &until);
            if matches!(edit, Edit::Cosmetic(_)) {
                // The metadata upload carries the whole config (description
                // included) to the KV store; nothing else may run.
                let ran: Vec<&str> = first
                    .stdout
                    .lines()
                    .filter(|l| l.starts_with("ran "))
                    .filter(|l| !l.contains(" metadata-upload:"))
                    .collect();
                prop_assert!(ran.is_empty(), "a cosmetic edit ran {:?}", ran);
            }
            let second = run(&incremental, &until);
            prop_assert_eq!(
                jobs(&second),
                0,
                "a second run ran something after {:?}",
                edit
            );

            let clean: PathBuf = dir.path().join(format!("clean-{}", files.until));
            let _ = std::fs::remove_dir_all(&clean);
            state_db::lose(&clean);
            files.write(&clean);
            run(&clean, &until);
            let (got, got_kv) = outputs(&incremental, &until);
            let (want, want_kv) = outputs(&clean, &until);
            prop_assert_eq!(got, want, "after {:?} in {:?}", edit, edits);
            prop_assert_eq!(got_kv, want_kv, "KV after {:?} in {:?}", edit, edits);
        }
        Ok(())
    });
    eprintln!(
        "soundness: {} case(s) in {:.0?}",
        cases(),
        started.elapsed()
    );
    result.unwrap();
}

/// A state written by a previous schema keeps working: a reader plans from
/// it as it is (it never migrates), the next run migrates it forward and
/// records memos, and nothing is rebuilt. Schema 1 had no memos; schema 2's
/// digested the recorded targets, and are dropped (schema 3's rely on every
/// write of a node's targets deleting its memo); before schema 4 the ranges
/// each target read were in `target_reads`, and move beside the key; schema
/// 4's memos covered whole nodes, and are dropped for memos up to a day.
#[test]
fn a_state_of_a_previous_schema_is_read_and_migrated_forward() {
    if crate::postgres::on_postgres() {
        // Said, not skipped silently: no PostgreSQL state of these schemas
        // ever existed.
        eprintln!(
            "a_state_of_a_previous_schema_is_read_and_migrated_forward: SQLite only: \
             PostgreSQL states begin at schema 7, the first with PostgreSQL"
        );
        return;
    }
    for schema in [1, 2, 3, 4] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        Files::initial().write(&root);
        let until = day(4);
        run(&root, &until);
        let state = root.join(".chronon-build/state.db");
        let old_memo = [7u8; 32];
        {
            let conn = rusqlite::Connection::open(&state).unwrap();
            // What schemas 1 to 4 had: memos of whole nodes; 1 to 5: no
            // output table with the nodes; 1 to 6: no claims; 1 to 7: no
            // memos by versions.
            conn.execute_batch(
                "ALTER TABLE node_memos DROP COLUMN last; ALTER TABLE nodes DROP COLUMN output;
                 ALTER TABLE node_memos DROP COLUMN versions; DROP TABLE claims;",
            )
            .unwrap();
            // What schemas 1 to 3 had: ranges read in their own table.
            if schema < 4 {
                conn.execute_batch(
                    "CREATE TABLE target_reads (
                         node INTEGER NOT NULL, day INTEGER NOT NULL, ranges TEXT NOT NULL,
                         PRIMARY KEY (node, day)) WITHOUT ROWID;
                     INSERT INTO target_reads SELECT node, day, (
                         SELECT json_group_array(json_array(
                             json_extract(e.value, '$.table'), json_extract(e.value, '$.from'),
                             json_extract(e.value, '$.to')))
                         FROM json_each(inputs_doc) e) FROM targets;
                     ALTER TABLE targets DROP COLUMN inputs_doc;",
                )
                .unwrap();
            }
            match schema {
                1 => conn
                    .execute_batch("DROP TABLE node_memos; PRAGMA user_version = 1;")
                    .unwrap(),
                2 | 4 => {
                    conn.execute("UPDATE node_memos SET memo = ?1", [&old_memo[..]])
                        .unwrap();
                    conn.pragma_update(None, "user_version", schema).unwrap();
                }
                _ => conn.execute_batch("PRAGMA user_version = 3;").unwrap(),
            }
        }
        let version = || -> i64 {
            rusqlite::Connection::open(&state)
                .unwrap()
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap()
        };
        // A copy left at the old schema, for a reader after an input edit.
        let old_state = root.join("old-schema.db");
        rusqlite::Connection::open(&state)
            .unwrap()
            .execute("VACUUM INTO ?1", [old_state.display().to_string()])
            .unwrap();
        let plan = chronon_build(&root, &["plan", "--until", &until]);
        assert_eq!(plan.code, 0, "{}", plan.stderr);
        assert!(
            plan.stdout.contains(" 0 stale, 0 blocked"),
            "{}",
            plan.stdout
        );
        assert_eq!(version(), schema, "plan reads without migrating");

        let again = run(&root, &until);
        assert_eq!(jobs(&again), 0, "{}", again.stdout);
        assert_eq!(version(), chronon_build::testing::SCHEMA_VERSION);
        let conn = rusqlite::Connection::open(&state).unwrap();
        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert!(
            count("SELECT count(*) FROM node_memos") > 0,
            "the migrated state records memos"
        );
        assert_eq!(
            count(
                "SELECT count(*) FROM node_memos WHERE memo = x'0707070707070707070707070707070707070707070707070707070707070707'"
            ),
            0,
            "schema 2's and 4's memos are dropped"
        );
        assert_eq!(
            count(
                "SELECT count(*) FROM targets t WHERE NOT EXISTS (SELECT 1 FROM json_each(t.inputs_doc) e WHERE json_extract(e.value, '$.table') IS NOT NULL)"
            ),
            count("SELECT count(*) FROM targets WHERE inputs_doc = '[]'"),
            "every range read moved beside its target's key"
        );
        assert!(count("SELECT count(*) FROM targets WHERE inputs_doc != '[]'") > 0);
        let (with, without) = plans_with_and_without_memos(&root, &until);
        assert_eq!(with, without);

        // The reader of the old schema still names what changed, from the
        // ranges in `target_reads`.
        let mut edited = Files::initial();
        edited.rows[7].1 += 100;
        edited.write(&root);
        let old_state = old_state.display().to_string();
        let plan = chronon_build(&root, &["plan", "--until", &until, "--state", &old_state]);
        assert_eq!(plan.code, 0, "{}", plan.stderr);
        let changed = format!("input-changed raw.events ds={}", day(edited.rows[7].2));
        assert!(plan.stdout.contains(&changed), "{}", plan.stdout);
    }
}

/// A state of a schema newer than this binary's is refused by every
/// command that opens it (exit 2, naming the versions) and left as it is,
/// on either backend.
#[test]
fn a_state_of_a_newer_schema_is_refused_and_left_as_it_is() {
    let (_dir, root, until) = built_repo();
    let newer = chronon_build::testing::SCHEMA_VERSION + 1;
    let mut state = StateDb::open(&root);
    let targets = state.count("SELECT count(*) FROM targets");
    state.set_version(newer);
    for command in ["plan", "run", "status"] {
        let out = chronon_build(&root, &[command, "--until", &until]);
        assert_eq!(out.code, 2, "{command}: {}\n{}", out.stdout, out.stderr);
        assert!(
            out.stderr
                .contains("newer than this chronon-build understands"),
            "{command}: {}",
            out.stderr
        );
    }
    assert_eq!(state.version(), newer);
    assert_eq!(state.count("SELECT count(*) FROM targets"), targets);
}

/// A repository built up to day 4: its folder (kept while the first is),
/// root and `--until`.
pub(crate) fn built_repo() -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    Files::initial().write(&root);
    let until = day(4);
    run(&root, &until);
    (dir, root, until)
}

/// The last day the memo of `t.g`'s backfill covers.
fn backfill_memo(state: &mut StateDb) -> Option<i64> {
    state
        .one(
            "SELECT m.last FROM node_memos m JOIN nodes n ON n.id = m.node
             WHERE n.step = 'group-by-backfill' AND n.config = 't.g'",
            &[],
        )
        .map(|c| c.int())
}

/// The ranges of `target` that a `plan --format json` does not find
/// fresh, as `FROM..TO`.
pub(crate) fn not_fresh_ranges(plan: &str, target: &str) -> Vec<String> {
    let plan: Value = serde_json::from_str(plan).unwrap();
    plan["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["target"] == target && g["status"] != "fresh")
        .map(|g| {
            format!(
                "{}..{}",
                g["from"].as_str().unwrap(),
                g["to"].as_str().unwrap()
            )
        })
        .collect()
}

/// The cron case: `--until` moves on a day. A node's memo still holds for
/// the days it covers, so a plan keys only the new day, and building the
/// new day keeps the memo; the next run's plan extends it. Shown by
/// tampering with recorded keys: one on a day the memo covers goes unseen
/// (the memo vouches for the day; nothing keys it), one on the new day is
/// seen, and without memos both are.
#[test]
fn when_until_moves_on_a_memo_holds_for_the_days_it_covers() {
    let (_dir, root, until) = built_repo();
    run(&root, &until);
    let mut state = StateDb::open(&root);
    assert_eq!(
        backfill_memo(&mut state),
        Some(FIRST + 4),
        "a no-op run stores memos"
    );

    let next = run(&root, &day(5));
    assert!(jobs(&next) > 0, "{}", next.stdout);
    assert_eq!(
        backfill_memo(&mut state),
        Some(FIRST + 4),
        "building day 5 keeps it"
    );

    for d in [2, 5] {
        state.execute(
            "UPDATE targets SET key = ?1 WHERE day = ?2 AND node =
                 (SELECT id FROM nodes WHERE step = 'group-by-backfill' AND config = 't.g')",
            &[Cell::Bytes(vec![0; 32]), Cell::Int(FIRST + d)],
        );
    }
    let stale = |state: Option<&Path>| -> Vec<String> {
        let mut args = vec!["plan", "--until", &day(5), "--format", "json"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        if let Some(state) = state {
            args.extend(["--state".into(), state.display().to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = chronon_build(&root, &args);
        assert_eq!(out.code, 0, "{}", out.stderr);
        not_fresh_ranges(&out.stdout, "group-by-backfill:t.g")
    };
    let without = without_memos(&root);
    let days = |d: i64| format!("{}..{}", day(d), day(d));
    assert_eq!(stale(None), vec![days(5)], "day 2 is the memo's");
    assert_eq!(stale(Some(&without)), vec![days(2), days(5)]);

    // Day 5 rebuilt (its key differed), then a no-op run: the memo now
    // covers day 5.
    run(&root, &day(5));
    assert_eq!(backfill_memo(&mut state), Some(FIRST + 4));
    run(&root, &day(5));
    assert_eq!(
        backfill_memo(&mut state),
        Some(FIRST + 5),
        "the next plan extends it"
    );
}

/// The document each recorded key hashed is in the state beside it (cargo
/// writes its fingerprint's document beside the hash): the key is blake3
/// of the key version, step, slice, partition and the stored inputs.
#[test]
fn every_recorded_key_is_the_hash_of_its_stored_document() {
    let (_dir, root, _) = built_repo();
    let rows = StateDb::open(&root).rows(
        "SELECT n.step, t.day, t.key, t.slice, t.inputs_doc FROM targets t JOIN nodes n ON n.id = t.node",
        &[],
    );
    assert!(rows.len() > 10, "{}", rows.len());
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let mut with_inputs = 0;
    for row in rows {
        let [step, day, key, slice, inputs] = &row[..] else {
            panic!("{row:?}")
        };
        let (step, day, key, slice, inputs) = (
            step.text(),
            day.int(),
            key.bytes(),
            slice.bytes(),
            inputs.text(),
        );
        let partition = match day {
            i64::MIN => String::new(),
            d => format!(
                ",\"partition\":\"{}\"",
                chronon_build::testing::Day(d as i32)
            ),
        };
        let doc = format!(
            "{{\"key_version\":{},\"step\":\"{step}\",\"slice\":\"{}\"{partition},\"inputs\":{inputs}}}",
            chronon_build::testing::KEY_VERSION,
            hex(slice)
        );
        assert_eq!(blake3::hash(doc.as_bytes()).as_bytes(), key, "{doc}");
        with_inputs += usize::from(inputs != "[]");
    }
    assert!(with_inputs > 0);
}

/// A key that changed while its slice and inputs did not was made by
/// another key version: the plan says so, from the inputs hash recorded
/// beside the key (blake3 of the stored inputs document).
#[test]
fn a_key_of_another_version_is_told_apart_by_its_inputs() {
    let (_dir, root, until) = built_repo();
    let mut state = StateDb::open(&root);
    let rows = state.rows("SELECT inputs, inputs_doc FROM targets", &[]);
    assert!(rows.len() > 10, "{}", rows.len());
    for row in &rows {
        let doc = row[1].text();
        assert_eq!(
            blake3::hash(doc.as_bytes()).as_bytes(),
            row[0].bytes(),
            "{doc}"
        );
    }
    // As a binary with another key version finds it: other keys, and no
    // memos (they digest the key version).
    state.execute("UPDATE targets SET key = ?1", &[Cell::Bytes(vec![0; 32])]);
    state.execute("DELETE FROM node_memos", &[]);
    let plan = chronon_build(&root, &["plan", "--until", &until, "--format", "json"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let reasons: Vec<String> = crate::plan_groups(&plan)
        .iter()
        .filter(|g| g["status"] == "stale")
        .map(|g| g["reason"].to_string())
        .collect();
    assert!(reasons.len() > 3, "{}", plan.stdout);
    for reason in &reasons {
        assert!(reason.contains("key-version-changed"), "{reason}");
    }
}

/// `adopt` stores the memo of each node it adopts whole (from the columns
/// its keys were made from), so the first plan after adopting skips what
/// nothing touched: a memo only saves work, before and after an input
/// changes.
#[test]
fn adopted_nodes_have_memos_that_change_no_decision() {
    let (_dir, root, until) = built_repo();
    // The embedded warehouse stays; the state goes.
    state_db::lose(&root);
    let out = chronon_build(&root, &["adopt", "--until", &until]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let mut state = StateDb::open(&root);
    let memos = state.count("SELECT count(*) FROM node_memos");
    let nodes = state.count("SELECT count(DISTINCT node) FROM targets");
    assert!(memos > 0 && memos <= nodes, "{memos} memos, {nodes} nodes");
    drop(state);
    let (with, without) = plans_with_and_without_memos(&root, &until);
    assert_eq!(with, without);
    assert!(with.contains("\"fresh\": 13"), "{with}");
    // An input changes under the memos.
    let mut edited = Files::initial();
    edited.rows[4].1 += 100;
    edited.write(&root);
    let out = chronon_build(&root, &["plan", "--until", &until]);
    assert!(out.stdout.contains("input-changed"), "{}", out.stdout);
    let (with, without) = plans_with_and_without_memos(&root, &until);
    assert_eq!(with, without);
}
