//! Iceberg tables written by pyiceberg (see `formats::testing`); the tests
//! skip without the writers' python.

use std::path::Path;

use super::*;
use crate::formats::storage::LocalStorage;
use crate::formats::testing::{self, Recording, Scenario, changed_days};
use crate::partition::{Day, DayFormat};

/// The table's current metadata file (`locate`), by itself.
fn metadata_location(
    storage: &dyn Storage,
    table: IcebergTable<'_>,
) -> Result<String, FormatError> {
    locate(storage, table).map(|(location, _)| location)
}

fn layout(column: &str) -> TableLayout {
    TableLayout::new(column)
}

fn cold(location: &str, column: &str) -> Result<(Partitions, TableMemory), FormatError> {
    read(
        &LocalStorage,
        IcebergTable::MetadataFile(location),
        &layout(column),
        None,
    )
}

fn days(partitions: &Partitions) -> Vec<String> {
    partitions.keys().map(Day::to_string).collect()
}

/// A path for a `file://` location pyiceberg wrote.
fn path(location: &str) -> &Path {
    Path::new(location.strip_prefix("file://").unwrap_or(location))
}

/// Every step's cold read finds the days and files pyiceberg lists.
fn cold_reads_match_pyiceberg(scenario: &Scenario, column: &str) {
    for step in &scenario.steps {
        let (partitions, memory) = cold(&step.location, column).unwrap();
        assert_eq!(
            partitions,
            step.expected(true, &DayFormat::default()),
            "{}",
            step.step
        );
        let data_files: i64 = memory.partitions.0.values().map(|s| s.data_files).sum();
        let listed = step.files.iter().filter(|f| f.content == 0).count();
        assert_eq!(data_files, listed as i64, "{}", step.step);
    }
}

#[test]
fn cold_reads_find_the_live_files_pyiceberg_lists() {
    let Some(scenario) = testing::write("iceberg cold reads", "iceberg-basic") else {
        return;
    };
    cold_reads_match_pyiceberg(&scenario, "ds");
    let last = scenario.steps.last().unwrap();
    let (partitions, _) = cold(&last.location, "ds").unwrap();
    assert_eq!(days(&partitions), ["2024-01-03", "2024-01-04"]);
}

#[test]
fn day_transform_partitions_are_days_since_1970() {
    let Some(scenario) = testing::write("iceberg day(ts)", "iceberg-day-transform") else {
        return;
    };
    // The caller may name the source column or the partition field.
    cold_reads_match_pyiceberg(&scenario, "ts");
    cold_reads_match_pyiceberg(&scenario, "ts_day");
    let (partitions, _) = cold(&scenario.steps[0].location, "ts").unwrap();
    assert_eq!(days(&partitions), ["2024-01-01", "2024-01-02"]);
    let err = cold(&scenario.steps[0].location, "id").unwrap_err();
    assert!(
        matches!(err, FormatError::NoPartitionColumn { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("(its partition fields: ts_day)"),
        "{err}"
    );
}

#[test]
fn each_manifest_is_read_with_its_own_partition_spec() {
    let Some(scenario) = testing::write("iceberg spec evolution", "iceberg-evolution") else {
        return;
    };
    cold_reads_match_pyiceberg(&scenario, "ds");
    let (before, memory) = cold(&scenario.steps[0].location, "ds").unwrap();
    let after = &scenario.steps[1];
    let (warm, _) = read(
        &LocalStorage,
        IcebergTable::MetadataFile(&after.location),
        &layout("ds"),
        Some(&memory),
    )
    .unwrap();
    assert_eq!(warm, after.expected(true, &DayFormat::default()));
    assert_eq!(changed_days(&before, &warm), after.touched);
}

/// Reads every step warm from the one before: exactly the days the step
/// touched change; until a `replace`, warm and cold reads agree.
fn warm_reads_follow_the_steps(scenario: &Scenario, column: &str) {
    let mut memory: Option<TableMemory> = None;
    let mut before = Partitions::new();
    let mut compacted = false;
    for step in &scenario.steps {
        let (warm, next) = read(
            &LocalStorage,
            IcebergTable::MetadataFile(&step.location),
            &layout(column),
            memory.as_ref(),
        )
        .unwrap();
        assert_eq!(changed_days(&before, &warm), step.touched, "{}", step.step);
        let (cold, _) = cold(&step.location, column).unwrap();
        assert_eq!(days(&warm), days(&cold), "{}", step.step);
        compacted |= step.step == "replace";
        if !compacted {
            assert_eq!(warm, cold, "{}: warm and cold agree", step.step);
        } else if step.step == "replace" {
            // Cold, the compacted day's files are new: a new fingerprint.
            assert_eq!(
                changed_days(&before, &cold),
                [Day::parse("2024-01-02").unwrap()].into(),
            );
        }
        // The memory survives serialization.
        let text = serde_json::to_string(&next).unwrap();
        memory = Some(serde_json::from_str(&text).unwrap());
        before = warm;
    }
}

#[test]
fn warm_reads_change_exactly_the_days_each_snapshot_touched() {
    let Some(scenario) = testing::write("iceberg warm reads", "iceberg-basic") else {
        return;
    };
    warm_reads_follow_the_steps(&scenario, "ds");
}

#[test]
fn warm_reads_skip_the_existing_entries_of_merged_manifests() {
    let Some(scenario) = testing::write("iceberg merged manifests", "iceberg-merge") else {
        return;
    };
    cold_reads_match_pyiceberg(&scenario, "ds");
    warm_reads_follow_the_steps(&scenario, "ds");
}

#[test]
fn a_warm_read_reads_only_what_the_new_snapshot_wrote() {
    let Some(scenario) = testing::write("iceberg warm reads little", "iceberg-basic") else {
        return;
    };
    let (_, memory) = cold(&scenario.steps[0].location, "ds").unwrap();
    let cold_reads = {
        let storage = Recording::default();
        read(
            &storage,
            IcebergTable::MetadataFile(&scenario.steps[1].location),
            &layout("ds"),
            None,
        )
        .unwrap();
        storage.take()
    };
    let storage = Recording::default();
    read(
        &storage,
        IcebergTable::MetadataFile(&scenario.steps[1].location),
        &layout("ds"),
        Some(&memory),
    )
    .unwrap();
    let warm_reads = storage.take();
    // The metadata file, the new manifest list, and the one manifest of
    // the late row; not the first snapshot's manifest.
    assert_eq!(warm_reads.len(), 3, "{warm_reads:#?}");
    assert_eq!(cold_reads.len(), 4, "{cold_reads:#?}");
    // Unchanged: the same metadata file is not read at all.
    let (_, memory) = cold(&scenario.steps[1].location, "ds").unwrap();
    read(
        &storage,
        IcebergTable::MetadataFile(&scenario.steps[1].location),
        &layout("ds"),
        Some(&memory),
    )
    .unwrap();
    assert!(storage.take().is_empty());
}

#[test]
fn a_rollback_or_another_layout_is_read_cold() {
    let Some(scenario) = testing::write("iceberg rollback", "iceberg-basic") else {
        return;
    };
    // Remembered at step 3; the table is back at step 2's snapshot, which
    // step 3 descends from, not the other way round.
    let (_, later) = cold(&scenario.steps[2].location, "ds").unwrap();
    let (partitions, memory) = read(
        &LocalStorage,
        IcebergTable::MetadataFile(&scenario.steps[1].location),
        &layout("ds"),
        Some(&later),
    )
    .unwrap();
    assert_eq!(
        partitions,
        scenario.steps[1].expected(true, &DayFormat::default())
    );
    assert_eq!(memory, cold(&scenario.steps[1].location, "ds").unwrap().1);
    // A memory made for another format of the column is not used.
    let other = TableLayout {
        column: "ds".into(),
        format: DayFormat::parse("yyyy-MM-dd'x'").unwrap(),
    };
    let (_, old) = cold(&scenario.steps[0].location, "ds").unwrap();
    let err = read(
        &LocalStorage,
        IcebergTable::MetadataFile(&scenario.steps[1].location),
        &other,
        Some(&old),
    )
    .unwrap_err();
    assert!(matches!(err, FormatError::NotADay { .. }), "{err}");
}

#[test]
fn a_table_is_found_by_location_or_through_the_sql_catalog() {
    let Some(scenario) = testing::write("iceberg lookup", "iceberg-basic") else {
        return;
    };
    let last = &scenario.steps.last().unwrap().location;
    let table = last.split("/metadata/").next().unwrap();
    assert_eq!(
        metadata_location(&LocalStorage, IcebergTable::Location(table)).unwrap(),
        *last
    );
    let catalog = scenario.dir.path().join("catalog.db");
    let pointers = sql_catalog_pointers(&catalog, "test").unwrap();
    let key = |t: &str| ("ns".to_string(), t.to_string());
    assert_eq!(pointers.get(&key("basic")), Some(last));
    assert_eq!(pointers.get(&key("nothing")), None);
    let missing = scenario.dir.path().join("warehouse/ns/nothing");
    let err = read(
        &LocalStorage,
        IcebergTable::Location(&missing.display().to_string()),
        &layout("ds"),
        None,
    )
    .unwrap_err();
    assert!(err.is_absent(), "{err}");
}

#[test]
fn a_file_without_a_day_is_an_error_naming_it() {
    let Some(scenario) = testing::write("iceberg unpartitioned", "iceberg-unpartitioned") else {
        return;
    };
    let step = &scenario.steps[0];
    let err = cold(&step.location, "ds").unwrap_err();
    let FormatError::NoPartitionColumn { file, detail, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(*file, step.files[0].path);
    assert!(detail.contains("not partitioned"), "{err}");
}

#[test]
fn corrupt_metadata_non_avro_manifests_and_new_versions_are_told_apart() {
    let Some(scenario) = testing::write("iceberg errors", "iceberg-basic") else {
        return;
    };
    let step = &scenario.steps[1];
    let text = std::fs::read_to_string(path(&step.location)).unwrap();
    let copy = scenario.dir.path().join("copy.metadata.json");
    let copy_location = copy.display().to_string();

    std::fs::write(&copy, &text[..text.len() / 2]).unwrap();
    let err = cold(&copy_location, "ds").unwrap_err();
    assert!(matches!(err, FormatError::Corrupt { .. }), "{err}");

    let newer = text.replacen("\"format-version\":2", "\"format-version\":3", 1);
    assert_ne!(newer, text, "pyiceberg writes compact JSON");
    std::fs::write(&copy, newer).unwrap();
    let err = cold(&copy_location, "ds").unwrap_err();
    assert!(
        matches!(err, FormatError::UnsupportedVersion { .. }),
        "{err}"
    );

    // The late row's manifest, replaced by text, then truncated.
    let (_, memory) = cold(&scenario.steps[0].location, "ds").unwrap();
    let storage = Recording::default();
    read(
        &storage,
        IcebergTable::MetadataFile(&step.location),
        &layout("ds"),
        Some(&memory),
    )
    .unwrap();
    let manifest = storage.take().pop().unwrap();
    let bytes = std::fs::read(path(&manifest)).unwrap();
    std::fs::write(path(&manifest), b"{\"manifest\": \"not avro\"}").unwrap();
    let err = cold(&step.location, "ds").unwrap_err();
    assert!(matches!(err, FormatError::NotAvro { .. }), "{err}");
    assert!(err.to_string().contains(&manifest), "{err}");
    std::fs::write(path(&manifest), &bytes[..bytes.len() - 40]).unwrap();
    let err = cold(&step.location, "ds").unwrap_err();
    assert!(matches!(err, FormatError::Corrupt { .. }), "{err}");

    std::fs::remove_file(path(&manifest)).unwrap();
    let err = cold(&step.location, "ds").unwrap_err();
    assert!(matches!(err, FormatError::Unreachable { .. }), "{err}");
}

#[test]
fn by_location_the_newest_metadata_file_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().display().to_string();
    let metadata = dir.path().join("metadata");
    std::fs::create_dir(&metadata).unwrap();
    let write = |name: &str| {
        std::fs::write(metadata.join(name), r#"{"format-version": 2}"#).unwrap();
    };
    let found = || {
        let location = metadata_location(&LocalStorage, IcebergTable::Location(&table)).unwrap();
        location.rsplit('/').next().unwrap().to_string()
    };
    let err = metadata_location(&LocalStorage, IcebergTable::Location(&table)).unwrap_err();
    assert!(err.is_absent(), "{err}");
    // Versions compare as numbers, not text.
    for name in ["v1.metadata.json", "v9.metadata.json", "v10.metadata.json"] {
        write(name);
    }
    assert_eq!(found(), "v10.metadata.json");
    // A stale hint is looked past; a hint at a missing file is not used.
    std::fs::write(metadata.join("version-hint.text"), "9\n").unwrap();
    assert_eq!(found(), "v10.metadata.json");
    std::fs::write(metadata.join("version-hint.text"), "12").unwrap();
    assert_eq!(found(), "v10.metadata.json");
    std::fs::remove_file(metadata.join("version-hint.text")).unwrap();
    // Metastore tables' names: the highest sequence number.
    write("00011-3d8c1b7e-0a4c-4c55-9d0a-2b1f0e7a9c11.metadata.json");
    write("00002-9f0c1b7e-0a4c-4c55-9d0a-2b1f0e7a9c11.metadata.json");
    assert_eq!(
        found(),
        "00011-3d8c1b7e-0a4c-4c55-9d0a-2b1f0e7a9c11.metadata.json"
    );
    // A table without snapshots has no partitions.
    let (partitions, memory) = read(
        &LocalStorage,
        IcebergTable::Location(&table),
        &layout("ds"),
        None,
    )
    .unwrap();
    assert!(partitions.is_empty());
    assert_eq!(memory.snapshot_id, None);
}

#[test]
fn a_position_delete_file_changes_its_day() {
    let Some(scenario) = testing::write("iceberg delete files", "iceberg-deletes") else {
        return;
    };
    let step = &scenario.steps[1];
    assert!(step.files.iter().any(|f| f.content == 1));
    // Counts data files only: the delete file makes no day on its own.
    cold_reads_match_pyiceberg(&scenario, "ds");
    warm_reads_follow_the_steps(&scenario, "ds");
}
