//! Delta tables written by deltalake (see `formats::testing`; those tests
//! skip without the writers' python), and logs written here for what
//! deltalake does not write (deletion vectors, features it refuses).

use std::path::Path;

use serde_json::{Value, json};

use super::*;
use crate::formats::storage::LocalStorage;
use crate::formats::testing::{self, Recording, Scenario, changed_days};
use crate::partition::DayFormat;

fn layout(column: &str) -> TableLayout {
    TableLayout::new(column)
}

fn cold(table: &str) -> Result<(Partitions, TableMemory), FormatError> {
    read(&LocalStorage, table, &layout("ds"), None)
}

fn warm(table: &str, memory: &TableMemory) -> Result<(Partitions, TableMemory), FormatError> {
    read(&LocalStorage, table, &layout("ds"), Some(memory))
}

fn day(text: &str) -> Day {
    Day::parse(text).unwrap()
}

/// Every step's cold read finds the days and files deltalake lists, and
/// a warm read from the step before changes exactly the days it touched.
fn check_steps(scenario: &Scenario, layout: &TableLayout) {
    let mut memory: Option<TableMemory> = None;
    let mut before = Partitions::new();
    let mut compacted = false;
    for step in &scenario.steps {
        let (cold, cold_memory) = read(&LocalStorage, &step.location, layout, None).unwrap();
        assert_eq!(cold, step.expected(false, &layout.format), "{}", step.step);
        let (warm, next) = read(&LocalStorage, &step.location, layout, memory.as_ref()).unwrap();
        assert_eq!(next.version, cold_memory.version, "{}", step.step);
        assert_eq!(changed_days(&before, &warm), step.touched, "{}", step.step);
        compacted |= step.step == "compact";
        if !compacted {
            assert_eq!(warm, cold, "{}: warm and cold agree", step.step);
        } else if step.step == "compact" {
            assert_eq!(changed_days(&before, &cold), [day("2024-01-02")].into());
        }
        let text = serde_json::to_string(&next).unwrap();
        memory = Some(serde_json::from_str(&text).unwrap());
        before = warm;
    }
}

#[test]
fn reads_follow_appends_deletes_overwrites_and_compaction() {
    let Some(scenario) = testing::write("delta steps", "delta-basic") else {
        return;
    };
    check_steps(&scenario, &layout("ds"));
    let last = &scenario.steps.last().unwrap().location;
    assert!(Path::new(last).join("_delta_log/_last_checkpoint").exists());
    let (partitions, memory) = cold(last).unwrap();
    assert_eq!(memory.version, 6);
    let days: Vec<String> = partitions.keys().map(Day::to_string).collect();
    assert_eq!(days, ["2024-01-02", "2024-01-03", "2024-01-04"]);
}

#[test]
fn a_multi_part_checkpoint_is_read_whole() {
    let Some(scenario) = testing::write("delta multi-part", "delta-multipart") else {
        return;
    };
    let last = &scenario.steps.last().unwrap().location;
    let parts = std::fs::read_dir(Path::new(last).join("_delta_log"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().contains(".checkpoint.000000000")
        })
        .count();
    assert_eq!(parts, 2);
    check_steps(&scenario, &layout("ds"));
}

#[test]
fn paths_are_url_decoded() {
    let Some(scenario) = testing::write("delta encoded paths", "delta-encoded") else {
        return;
    };
    let spaced = TableLayout {
        column: "ds".into(),
        format: DayFormat::parse("yyyy MM dd").unwrap(),
    };
    check_steps(&scenario, &spaced);
}

#[test]
fn a_warm_read_reads_only_the_new_commits() {
    let Some(scenario) = testing::write("delta warm reads little", "delta-basic") else {
        return;
    };
    // Step 4 compacted at version 4 and was then checkpointed; step 5 is
    // version 5.
    let (_, memory) = cold(&scenario.steps[4].location).unwrap();
    assert_eq!(memory.version, 4);
    let table = &scenario.steps[5].location;
    let storage = Recording::default();
    read(&storage, table, &layout("ds"), Some(&memory)).unwrap();
    let names: Vec<String> = storage
        .take()
        .iter()
        .map(|r| r.rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        ["00000000000000000005.json", "00000000000000000006.json"]
    );
    // Unchanged: the next commit, then `_last_checkpoint`.
    let (_, memory) = cold(table).unwrap();
    read(&storage, table, &layout("ds"), Some(&memory)).unwrap();
    assert_eq!(storage.take().len(), 2);
}

#[test]
fn a_memory_from_before_a_cleaned_up_log_is_read_cold() {
    let Some(scenario) = testing::write("delta cleaned log", "delta-basic") else {
        return;
    };
    let (_, memory) = cold(&scenario.steps[1].location).unwrap();
    let table = &scenario.steps.last().unwrap().location;
    let expected = cold(table).unwrap();
    // Log clean-up: the commits the checkpoint (version 4) covers go.
    for version in 0..4 {
        std::fs::remove_file(Path::new(table).join(format!("_delta_log/{version:020}.json")))
            .unwrap();
    }
    assert_eq!(warm(table, &memory).unwrap(), expected);
    assert_eq!(cold(table).unwrap(), expected);
}

#[test]
fn a_corrupt_checkpoint_is_an_error_naming_it() {
    let Some(scenario) = testing::write("delta corrupt checkpoint", "delta-basic") else {
        return;
    };
    let table = &scenario.steps.last().unwrap().location;
    let checkpoint = Path::new(table).join("_delta_log/00000000000000000004.checkpoint.parquet");
    let bytes = std::fs::read(&checkpoint).unwrap();
    std::fs::write(&checkpoint, &bytes[..bytes.len() / 2]).unwrap();
    let err = cold(table).unwrap_err();
    assert!(matches!(err, FormatError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("checkpoint.parquet"), "{err}");
}

// ---------------------------------------------------------------------------
// Logs written here

/// A table folder whose log the test writes.
struct Table {
    dir: tempfile::TempDir,
}

impl Table {
    fn new() -> Table {
        let table = Table {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir(table.dir.path().join("_delta_log")).unwrap();
        table
    }

    fn location(&self) -> String {
        self.dir.path().display().to_string()
    }

    fn commit(&self, version: u64, actions: &[Value]) {
        let lines: Vec<String> = actions.iter().map(Value::to_string).collect();
        let path = self
            .dir
            .path()
            .join(format!("_delta_log/{version:020}.json"));
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    }
}

fn protocol(reader: i64, features: &[&str]) -> Value {
    if reader == 3 {
        json!({"protocol": {"minReaderVersion": 3, "minWriterVersion": 7, "readerFeatures": features, "writerFeatures": features}})
    } else {
        json!({"protocol": {"minReaderVersion": reader, "minWriterVersion": 2}})
    }
}

fn metadata(columns: &[&str], configuration: Value) -> Value {
    json!({"metaData": {"id": "t-1", "format": {"provider": "parquet", "options": {}},
        "schemaString": "{}", "partitionColumns": columns, "configuration": configuration}})
}

fn add(path: &str, ds: &str, dv: Option<Value>) -> Value {
    json!({"add": {"path": path, "partitionValues": {"ds": ds}, "size": 100,
        "modificationTime": 1, "dataChange": true, "deletionVector": dv}})
}

fn remove(path: &str, ds: &str, dv: Option<Value>) -> Value {
    json!({"remove": {"path": path, "partitionValues": {"ds": ds}, "size": 100,
        "deletionTimestamp": 2, "dataChange": true, "extendedFileMetadata": true,
        "deletionVector": dv}})
}

fn dv(id: &str, cardinality: i64) -> Value {
    json!({"storageType": "u", "pathOrInlineDv": id, "offset": 1, "sizeInBytes": 40, "cardinality": cardinality})
}

#[test]
fn a_missing_log_is_an_absent_table() {
    let dir = tempfile::tempdir().unwrap();
    let err = cold(&dir.path().join("none").display().to_string()).unwrap_err();
    assert!(err.is_absent(), "{err}");
}

#[test]
fn deletion_vectors_are_part_of_a_files_identity() {
    let table = Table::new();
    table.commit(
        0,
        &[
            protocol(3, &["deletionVectors"]),
            metadata(&["ds"], json!({"delta.enableDeletionVectors": "true"})),
            add("ds=2024-01-01/a.parquet", "2024-01-01", None),
            add("ds=2024-01-02/b.parquet", "2024-01-02", None),
        ],
    );
    let (before, memory) = cold(&table.location()).unwrap();
    // DELETE with deletion vectors: the file is removed and added again
    // with a vector.
    table.commit(
        1,
        &[
            remove("ds=2024-01-01/a.parquet", "2024-01-01", None),
            add("ds=2024-01-01/a.parquet", "2024-01-01", Some(dv("ab", 1))),
        ],
    );
    let (after, memory_1) = warm(&table.location(), &memory).unwrap();
    assert_eq!(changed_days(&before, &after), [day("2024-01-01")].into());
    assert_eq!(cold(&table.location()).unwrap().0, after);
    // A second delete in the same file: a new vector, a new fingerprint.
    table.commit(
        2,
        &[
            remove("ds=2024-01-01/a.parquet", "2024-01-01", Some(dv("ab", 1))),
            add("ds=2024-01-01/a.parquet", "2024-01-01", Some(dv("cd", 2))),
        ],
    );
    let (again, _) = warm(&table.location(), &memory_1).unwrap();
    assert_eq!(changed_days(&after, &again), [day("2024-01-01")].into());
    assert_eq!(cold(&table.location()).unwrap().0, again);
}

#[test]
fn features_it_cannot_read_are_refused_naming_the_file() {
    for (protocol, configuration, what) in [
        (
            protocol(3, &["variantType"]),
            json!({}),
            "the reader feature variantType",
        ),
        (
            protocol(2, &[]),
            json!({"delta.columnMapping.mode": "name"}),
            "column mapping (mode name)",
        ),
        (
            protocol(3, &["columnMapping"]),
            json!({"delta.columnMapping.mode": "id"}),
            "column mapping (mode id)",
        ),
        (protocol(4, &[]), json!({}), "reader version 4"),
    ] {
        let table = Table::new();
        table.commit(
            0,
            &[
                protocol,
                metadata(&["ds"], json!({})),
                add("ds=2024-01-01/a.parquet", "2024-01-01", None),
            ],
        );
        // Set in a later commit: refused warm too.
        table.commit(1, &[metadata(&["ds"], configuration.clone())]);
        let err = cold(&table.location()).unwrap_err();
        let file = if configuration == json!({}) { 0 } else { 1 };
        let expected = format!(
            "{}: {}/_delta_log/{file:020}.json: {what} is not supported",
            table.location(),
            table.location()
        );
        assert_eq!(err.to_string(), expected);
    }
}

#[test]
fn a_broken_log_is_corrupt_and_a_missing_column_is_said() {
    let table = Table::new();
    table.commit(
        0,
        &[
            protocol(1, &[]),
            metadata(&["region"], json!({})),
            json!({"add": {"path": "region=eu/a.parquet", "partitionValues": {"region": "eu"}, "size": 1, "modificationTime": 1, "dataChange": true}}),
        ],
    );
    let err = cold(&table.location()).unwrap_err();
    assert!(
        matches!(err, FormatError::NoPartitionColumn { .. }),
        "{err}"
    );
    assert!(
        err.to_string().ends_with("(its partition columns: region)"),
        "{err}"
    );

    // A commit missing between: no checkpoint covers it.
    table.commit(2, &[add("b.parquet", "2024-01-01", None)]);
    let err = cold(&table.location()).unwrap_err();
    assert!(err.to_string().contains("missing commit 1"), "{err}");

    // A truncated commit line.
    let path = table
        .dir
        .path()
        .join("_delta_log/00000000000000000001.json");
    std::fs::write(&path, "{\"add\": {\"path\": \"c.parq").unwrap();
    let err = cold(&table.location()).unwrap_err();
    let FormatError::Corrupt { file, .. } = &err else {
        panic!("{err}");
    };
    assert!(file.ends_with("00000000000000000001.json"), "{err}");

    // A day that is not one.
    let table = Table::new();
    table.commit(
        0,
        &[
            protocol(1, &[]),
            metadata(&["ds"], json!({})),
            add("ds=x/a.parquet", "x", None),
        ],
    );
    let err = cold(&table.location()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: ds=x/a.parquet: partition value \"x\" of ds is not a day in the format yyyy-MM-dd",
            table.location()
        )
    );
}

#[test]
fn a_rearranging_commit_changes_no_fingerprint_warm() {
    let table = Table::new();
    table.commit(
        0,
        &[
            protocol(1, &[]),
            metadata(&["ds"], json!({})),
            add("ds=2024-01-01/a.parquet", "2024-01-01", None),
            add("ds=2024-01-01/b.parquet", "2024-01-01", None),
        ],
    );
    let (before, memory) = cold(&table.location()).unwrap();
    let rearranged = |action: Value| {
        let mut action = action;
        for kind in ["add", "remove"] {
            if let Some(file) = action.get_mut(kind) {
                file["dataChange"] = json!(false);
            }
        }
        action
    };
    table.commit(
        1,
        &[
            rearranged(remove("ds=2024-01-01/a.parquet", "2024-01-01", None)),
            rearranged(remove("ds=2024-01-01/b.parquet", "2024-01-01", None)),
            rearranged(add("ds=2024-01-01/ab.parquet", "2024-01-01", None)),
        ],
    );
    let (after, memory) = warm(&table.location(), &memory).unwrap();
    assert_eq!(after, before);
    // The compacted file deleted: the day is gone.
    table.commit(2, &[remove("ds=2024-01-01/ab.parquet", "2024-01-01", None)]);
    let (gone, _) = warm(&table.location(), &memory).unwrap();
    assert!(gone.is_empty());
}

#[test]
fn a_torn_last_checkpoint_is_read_past() {
    let table = Table::new();
    table.commit(
        0,
        &[
            protocol(1, &[]),
            metadata(&["ds"], json!({})),
            add("ds=2024-01-01/a.parquet", "2024-01-01", None),
        ],
    );
    let expected = cold(&table.location()).unwrap();
    let last = table.dir.path().join("_delta_log/_last_checkpoint");
    std::fs::write(&last, "{\"version\": 0, \"si").unwrap();
    assert_eq!(cold(&table.location()).unwrap(), expected);
    // One naming a checkpoint that is not there: the log from its start.
    std::fs::write(&last, "{\"version\": 0, \"size\": 3}").unwrap();
    assert_eq!(cold(&table.location()).unwrap(), expected);
}

/// V2 checkpoints as Spark writes them (from delta-io/delta-kernel-rs
/// `kernel/tests/data/v2-checkpoints-*.tar.zst`, Apache-2.0: their
/// `_delta_log`s, pruned to the commits and the newest checkpoints, in
/// tests/formats/delta-v2): a cold read from the newest checkpoint (JSON
/// or Parquet, with sidecar files or not) finds the live files that a
/// replay of every commit finds. The tables are not partitioned, so a
/// probe's read stops at the partition column, past the checkpoint.
#[test]
fn v2_checkpoints_read_as_a_replay_of_their_commits() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/formats/delta-v2");
    for (name, version, files) in [
        ("v2-checkpoints-json-with-sidecars", 6, 101),
        ("v2-checkpoints-parquet-with-sidecars", 6, 101),
        ("v2-checkpoints-parquet-without-sidecars", 2, 3),
        ("v2-checkpoints-json-with-last-checkpoint", 0, 2),
    ] {
        let table = root.join(name).display().to_string();
        let log = Log {
            storage: &LocalStorage,
            table: &table,
            folder: join(&table, "_delta_log"),
        };
        let plan = log.cold_plan().unwrap();
        let checkpoint = plan.checkpoint.as_ref().map(|c| c.version);
        assert_eq!(checkpoint, Some(version), "{name}");
        let read = log.replayed(&layout("ds"), plan).unwrap();
        read.governing.check(&table).unwrap();
        let every_commit = Plan {
            checkpoint: None,
            commits: (0..=read.version).collect(),
        };
        let replayed = log.replayed(&layout("ds"), every_commit).unwrap();
        let paths = |r: &Replayed| r.live.keys().cloned().collect::<BTreeSet<_>>();
        assert_eq!(paths(&read), paths(&replayed), "{name}");
        assert_eq!(read.live.len(), files, "{name}");
        assert!(
            matches!(cold(&table), Err(FormatError::NoPartitionColumn { .. })),
            "{name}"
        );
    }
}
