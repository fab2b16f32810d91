//! Keys from what the job really uses (issue 28, findings 3-5): a change
//! that moves a value the engine resolves from the config (the effective
//! accuracy, the left's data model, the output table) reruns what it
//! changes, though the raw field that moved it is one the field table calls
//! serving-only or non-semantic. Each test builds the demo, edits it, runs
//! again, and compares every partition and KV entry with a clean build of
//! the edited files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::types::ValueRef;
use serde_json::{Value, json};

use crate::{Output, chronon_build, copy_dir, testdata};

pub(crate) const UNTIL: &str = "2025-09-29";
const RETURNS: &str = "production/group_bys/quickstart/returns.v1";
const JOIN: &str = "production/joins/quickstart/training_set.v1";

/// A copy of the demo with nothing built.
pub(crate) struct Demo {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
}

impl Demo {
    /// On tmpfs when there is one: SQLite's syncs make most of a demo
    /// build's time on disk, and the mutation check makes many.
    pub(crate) fn new() -> Demo {
        let shm = Path::new("/dev/shm");
        let dir = match shm.is_dir() {
            true => tempfile::tempdir_in(shm).unwrap_or_else(|_| tempfile::tempdir().unwrap()),
            false => tempfile::tempdir().unwrap(),
        };
        let root = dir.path().join("demo");
        copy_dir(&testdata("demo"), &root);
        let _ = std::fs::remove_dir_all(root.join(".chronon-build"));
        Demo { _dir: dir, root }
    }

    pub(crate) fn edit(&self, rel: &str, edit: impl FnOnce(&mut Value)) {
        edit_json(&self.root, rel, edit);
    }

    pub(crate) fn run(&self, until: &str) -> Output {
        let out = chronon_build(&self.root, &["run", "--until", until]);
        assert_eq!(out.code, 0, "run:\n{}\n{}", out.stdout, out.stderr);
        out
    }
}

pub(crate) fn edit_json(root: &Path, rel: &str, edit: impl FnOnce(&mut Value)) {
    let path = root.join(rel);
    let mut value: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut value);
    std::fs::write(&path, serde_json::to_string_pretty(&value).unwrap()).unwrap();
}

/// Where an output lives: a table's partition, or a KV dataset.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Place {
    Partition { table: String, day: String },
    Kv { dataset: String },
}

/// Every partition of every table in the embedded warehouse and every KV
/// dataset, as text that shows each value with its SQLite type: equal text
/// is equal bytes.
pub(crate) fn outputs(root: &Path) -> BTreeMap<Place, String> {
    let mut out = BTreeMap::new();
    let warehouse = root.join(".chronon-build/warehouse");
    for entry in std::fs::read_dir(&warehouse).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("sqlite") {
            continue;
        }
        let namespace = path.file_stem().unwrap().to_str().unwrap().to_string();
        let conn = rusqlite::Connection::open(&path).unwrap();
        let tables: Vec<(String, String)> =
            query(&conn, "SELECT tbl, partition_column FROM _tables")
                .into_iter()
                .map(|row| (row[0].clone(), row[1].clone()))
                .collect();
        for (table, column) in tables {
            let text = format!("SELECT * FROM \"{table}\"");
            let mut stmt = conn.prepare(&text).unwrap();
            let names: Vec<String> = stmt.column_names().map(str::to_string).collect();
            let at = names.iter().position(|c| *c == column).unwrap();
            let mut days: BTreeMap<String, Vec<String>> = BTreeMap::new();
            let mut rows = stmt.query([]).unwrap();
            while let Some(row) = rows.next().unwrap() {
                let values: Vec<String> = (0..names.len())
                    .map(|i| shown(row.get_ref(i).unwrap()))
                    .collect();
                let day: String = row.get(at).unwrap();
                days.entry(day).or_default().push(values.join(", "));
            }
            for (day, mut rows) in days {
                rows.sort();
                rows.insert(0, names.join(", "));
                let table = format!("{namespace}.{table}");
                out.insert(Place::Partition { table, day }, rows.join("\n"));
            }
        }
    }
    let kv = root.join(".chronon-build/kv.sqlite");
    if kv.exists() {
        let conn = rusqlite::Connection::open(kv).unwrap();
        let mut datasets: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for row in query(
            &conn,
            "SELECT dataset, key, value, version FROM kv ORDER BY dataset, key",
        ) {
            datasets
                .entry(row[0].clone())
                .or_default()
                .push(row[1..].join(" | "));
        }
        for (dataset, entries) in datasets {
            out.insert(Place::Kv { dataset }, entries.join("\n"));
        }
    }
    out
}

/// Rows of text columns.
fn query(conn: &rusqlite::Connection, text: &str) -> Vec<Vec<String>> {
    let mut stmt = conn.prepare(text).unwrap();
    let width = stmt.column_count();
    stmt.query_map([], |row| {
        (0..width)
            .map(|i| row.get::<_, String>(i))
            .collect::<Result<Vec<_>, _>>()
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn shown(value: ValueRef) -> String {
    match value {
        ValueRef::Null => "NULL".into(),
        ValueRef::Integer(i) => format!("{i}i"),
        ValueRef::Real(f) => format!("{f:?}r"),
        ValueRef::Text(t) => format!("{:?}", String::from_utf8_lossy(t)),
        ValueRef::Blob(b) => format!("blob{b:?}"),
    }
}

/// Builds the demo (after `before`), applies `edit`, runs again; builds the
/// edited demo from scratch; and asserts that every partition and KV
/// dataset of the clean build is, byte for byte, what the incremental build
/// has. Returns the plan before the rerun, and the rerun's output.
fn incremental_equals_clean(before: impl Fn(&Demo), edit: impl Fn(&Demo)) -> (Output, Output) {
    let incremental = Demo::new();
    before(&incremental);
    incremental.run(UNTIL);
    edit(&incremental);
    let plan = chronon_build(&incremental.root, &["plan", "--until", UNTIL]);
    let rerun = incremental.run(UNTIL);
    let clean = Demo::new();
    before(&clean);
    edit(&clean);
    clean.run(UNTIL);
    let (built, expected) = (outputs(&incremental.root), outputs(&clean.root));
    let differ: Vec<String> = expected
        .iter()
        .filter(|(place, rows)| built.get(*place) != Some(*rows))
        .map(|(place, _)| format!("{place:?}"))
        .collect();
    assert!(
        differ.is_empty(),
        "{} of {} partitions and datasets differ from a clean build, e.g. {:?}\nincremental run:\n{}",
        differ.len(),
        expected.len(),
        &differ[..differ.len().min(5)],
        rerun.stdout
    );
    (plan, rerun)
}

/// The targets a run ran, as `step:config[#part]` (without ranges).
fn ran(out: &Output) -> Vec<String> {
    let mut ran: Vec<String> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("ran"))
        .map(|l| l.trim().split(['@', ' ']).next().unwrap().to_string())
        .collect();
    ran.sort();
    ran.dedup();
    ran
}

fn assert_ran(out: &Output, targets: &[&str]) {
    let ran = ran(out);
    for target in targets {
        assert!(
            ran.iter().any(|r| r == target),
            "{target} did not rerun; the run ran {ran:#?}"
        );
    }
}

/// Finding 3: `events.topic` is serving-only for batch steps, but a topic
/// makes an unset accuracy TEMPORAL, and the join part and the upload
/// compute from that.
#[test]
fn regression_a_topic_added_reruns_the_join_part_and_the_kv_batch_data() {
    let topic = json!("events.returns/fields=ts,user_id,refund_amt/host=kafka/port=9092");
    let (plan, rerun) = incremental_equals_clean(
        |_| {},
        |demo| {
            demo.edit(RETURNS, |g| {
                g["sources"][0]["events"]["topic"] = topic.clone()
            });
            demo.edit(JOIN, |j| {
                j["joinParts"][1]["groupBy"]["sources"][0]["events"]["topic"] = topic.clone()
            });
        },
    );
    assert_ran(
        &rerun,
        &[
            "join-part:quickstart.training_set.v1#quickstart_returns_v1",
            "join-final:quickstart.training_set.v1",
            "group-by-upload:quickstart.returns.v1",
            "upload-to-kv:quickstart.returns.v1",
            "group-by-streaming:quickstart.returns.v1",
        ],
    );
    // The raw field is serving-only; the reason names what it moved.
    crate::assert_contains(
        &plan.stdout,
        r#"resolved.accuracy: "snapshot" -> "temporal""#,
    );
}

/// Finding 4: the same table and rows read as entities, not events: the
/// parts switch from point-in-time to snapshot joins. The left selects `ts`
/// itself, so the left table is the same either way and early cutoff would
/// keep the parts.
#[test]
fn regression_a_left_switched_from_events_to_entities_reruns_the_join() {
    let selects_ts = |demo: &Demo| {
        demo.edit(JOIN, |j| {
            j["left"]["events"]["query"]["selects"]["ts"] = json!("ts");
        })
    };
    let (plan, rerun) = incremental_equals_clean(selects_ts, |demo| {
        demo.edit(JOIN, |j| {
            let events = j["left"]["events"].take();
            j["left"] = json!({"entities": {
                "snapshotTable": events["table"],
                "query": events["query"],
            }});
        });
    });
    assert_ran(
        &rerun,
        &[
            "join-left:quickstart.training_set.v1",
            "join-part:quickstart.training_set.v1#quickstart_purchases_v1",
            "join-part:quickstart.training_set.v1#quickstart_returns_v1",
            "join-final:quickstart.training_set.v1",
        ],
    );
    crate::assert_contains(
        &plan.stdout,
        r#"resolved.leftDataModel: "events" -> "entities""#,
    );
}

/// Finding 5: `executionInfo` is non-semantic, but Zipline's
/// `outputTableInfo.table` names the output table: the backfill and the
/// upload must write the new tables (the clean build's tables must all be
/// in the incremental one), and the KV upload, reading the new upload
/// table, succeed (`run` exits 0).
#[test]
fn regression_an_output_table_renamed_in_execution_info_builds_the_new_tables() {
    let (plan, rerun) = incremental_equals_clean(
        |_| {},
        |demo| {
            demo.edit(RETURNS, |g| {
                g["metaData"]["executionInfo"] =
                    json!({"outputTableInfo": {"table": "quickstart.returns_renamed"}});
            });
        },
    );
    assert_ran(
        &rerun,
        &[
            "group-by-backfill:quickstart.returns.v1",
            "group-by-upload:quickstart.returns.v1",
            "upload-to-kv:quickstart.returns.v1",
        ],
    );
    crate::assert_contains(
        &plan.stdout,
        r#"resolved.outputTable: "quickstart.quickstart_returns_v1" -> "quickstart.returns_renamed""#,
    );
}

/// The partition layout a job writes with is resolved outside the fields
/// the key reads: Zipline's Spark conf sits in `executionInfo` (not
/// semantic), airbnb's in teams.json or the environment. Here every
/// partition the job reads and writes is also laid out under the new
/// column, byte for byte, so only the key can tell that the job now writes
/// `dt=` partitions it never wrote: the plan reruns it and names the
/// layout; the other configs stay fresh.
#[test]
fn a_partition_column_set_in_the_spark_conf_is_in_the_key() {
    let p = crate::run::Pipeline::new("");
    let select = [
        "--select",
        "risk.purchases.v1",
        "--step",
        "group-by-backfill",
    ];
    p.build(&select, 0);
    // Every `ds=` folder gets a `dt=` twin with the same files.
    let warehouse = p.s.repo.join("warehouse");
    let mut twins = Vec::new();
    for table in std::fs::read_dir(&warehouse)
        .unwrap()
        .flat_map(|ns| std::fs::read_dir(ns.unwrap().path()).unwrap())
    {
        for part in std::fs::read_dir(table.unwrap().path()).unwrap() {
            let part = part.unwrap().path();
            let name = part.file_name().unwrap().to_str().unwrap().to_string();
            if let Some(day) = name.strip_prefix("ds=") {
                twins.push((part.clone(), part.with_file_name(format!("dt={day}"))));
            }
        }
    }
    for (from, to) in twins {
        crate::copy_dir(&from, &to);
    }
    let plan = |what: &str| {
        let mut args = vec!["plan", "--until", "2025-01-10"];
        args.extend(select);
        let out = p.run(&args);
        assert_eq!(out.code, 0, "{what}:\n{}\n{}", out.stdout, out.stderr);
        out.stdout
    };
    crate::assert_contains(&plan("before"), "0 stale");
    edit_json(
        &p.s.repo,
        "compiled/group_bys/risk/risk.purchases.v1",
        |g| {
            g["metaData"]["executionInfo"]["conf"] =
                json!({"common": {"spark.chronon.partition.column": "dt"}});
        },
    );
    let after = plan("after");
    crate::assert_contains(&after, r#"resolved.partitionColumn: (unset) -> "dt""#);
    crate::assert_contains(&after, "0 fresh, 6 stale");
}

/// Chronon's Spark backfill computes each day of a multi-day job from the
/// events of the whole job range (`exec::ranges`): the plan says which
/// configs that touches, and says nothing once jobs cover one day.
#[test]
fn a_plan_names_the_configs_whose_multi_day_spark_jobs_see_later_partitions() {
    let note = "these backfill jobs cover several days";
    let p = crate::run::Pipeline::new("");
    let out = p.run(&["plan", "--until", "2025-01-10"]);
    crate::assert_contains(&out.stderr, "risk.checkout.v1 (30 days a job) and 4 more: ");
    crate::assert_contains(&out.stderr, note);
    // One day a job everywhere: nothing to say.
    let p = crate::run::Pipeline::new("step_days = 1");
    for entry in walk(&p.s.repo.join("compiled")) {
        let rel = entry.strip_prefix(&p.s.repo).unwrap().display().to_string();
        edit_json(&p.s.repo, &rel, |c| {
            if let Some(info) = c["metaData"]["executionInfo"].as_object_mut() {
                info.remove("stepDays");
            }
        });
    }
    let out = p.run(&["plan", "--until", "2025-01-10"]);
    assert!(!out.stderr.contains(note), "{}", out.stderr);
}

/// The config files under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        match path.is_dir() {
            true if !path.ends_with("models") => files.extend(walk(&path)),
            true => {}
            false => files.push(path),
        }
    }
    files
}
