//! The column-by-column checkpoint reader against parquet's own row
//! reader, on the checkpoints deltalake writes (classic, and split into
//! parts: see `formats::testing`), and on what is not a checkpoint.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use parquet::file::reader::{FileReader, SerializedFileReader};
use serde_json::Value;

use super::*;
use crate::formats::testing;

#[test]
fn what_is_not_parquet_is_corrupt_not_a_panic() {
    for bytes in [
        b"".to_vec(),
        b"PAR1".to_vec(),
        b"not parquet at all".to_vec(),
        [b"PAR1".as_slice(), &[0xff; 64], b"\x10\x00\x00\x00PAR1"].concat(),
    ] {
        let err = read_part("t", "1.checkpoint.parquet", bytes).unwrap_err();
        assert!(matches!(err, FormatError::Corrupt { .. }), "{err}");
    }
}

/// The checkpoint parts under each step's `_delta_log`.
fn checkpoints(scenario: &testing::Scenario) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for step in &scenario.steps {
        let log = Path::new(&step.location).join("_delta_log");
        for entry in std::fs::read_dir(log).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.contains(".checkpoint.") && name.ends_with(".parquet") {
                out.push(path);
            }
        }
    }
    out
}

/// What the row reader finds, as the actions the reader keeps: per add its
/// path, partition values and size; the metadata; the protocol.
fn by_rows(bytes: &[u8]) -> Vec<String> {
    let reader = SerializedFileReader::new(bytes::Bytes::from(bytes.to_vec())).unwrap();
    let mut out = Vec::new();
    for row in reader.get_row_iter(None).unwrap() {
        let row = row.unwrap().to_json_value();
        if let Some(add) = row.get("add").filter(|a| !a.is_null()) {
            let values: HashMap<String, Option<String>> = match &add["partitionValues"] {
                Value::Object(map) => map
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string)))
                    .collect(),
                _ => HashMap::new(),
            };
            let mut values: Vec<_> = values.into_iter().collect();
            values.sort();
            out.push(format!("add {} {values:?} {}", add["path"], add["size"]));
        }
        if let Some(m) = row.get("metaData").filter(|a| !a.is_null()) {
            out.push(format!("metaData {} {}", m["id"], m["partitionColumns"]));
        }
        if let Some(p) = row.get("protocol").filter(|a| !a.is_null()) {
            out.push(format!("protocol {}", p["minReaderVersion"]));
        }
    }
    out.sort();
    out
}

fn by_columns(actions: &[Action]) -> Vec<String> {
    let mut out = Vec::new();
    for action in actions {
        if let Some(add) = &action.add {
            let mut values: Vec<_> = add.partition_values.clone().into_iter().collect();
            values.sort();
            out.push(format!("add {:?} {values:?} {}", add.path, add.size));
        }
        if let Some(m) = &action.meta_data {
            let columns = serde_json::to_string(&m.partition_columns).unwrap();
            out.push(format!("metaData {:?} {columns}", m.id));
        }
        if let Some(p) = &action.protocol {
            out.push(format!("protocol {}", p.min_reader_version));
        }
    }
    out.sort();
    out
}

#[test]
fn checkpoints_read_by_columns_hold_what_the_row_reader_finds() {
    for name in ["delta-basic", "delta-multipart"] {
        let Some(scenario) = testing::write("delta checkpoint columns", name) else {
            return;
        };
        let parts = checkpoints(&scenario);
        assert!(!parts.is_empty(), "{name}: no checkpoint");
        for part in parts {
            let bytes = std::fs::read(&part).unwrap();
            let reader = SerializedFileReader::new(bytes::Bytes::from(bytes.clone())).unwrap();
            let schema = reader.metadata().file_metadata().schema_descr();
            let leaves: Vec<String> = schema.columns().iter().map(|c| c.path().string()).collect();
            // Columns the reader skips are there to skip.
            assert!(leaves.iter().any(|l| l == "add.stats"), "{leaves:?}");
            assert!(
                leaves.iter().any(|l| l.starts_with("remove.")),
                "{leaves:?}"
            );
            let actions = read_part("t", &part.to_string_lossy(), bytes.clone()).unwrap();
            let found = by_columns(&actions);
            assert!(found.iter().any(|a| a.starts_with("add ")), "{found:?}");
            assert_eq!(found, by_rows(&bytes), "{}", part.display());
        }
    }
}
