//! Classic and multi-part Delta checkpoints (PROTOCOL.md, "Checkpoints",
//! "Checkpoint Schema"): Parquet files of actions, one action a row. Only
//! the columns the reader needs are decoded (not `add.stats`, nor the
//! `remove` tombstones, which a checkpoint keeps only for VACUUM).

use std::sync::Arc;

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::schema::types::{Type, TypePtr};

use super::log::Action;
use crate::formats::FormatError;

/// The columns read, per action.
const COLUMNS: &[(&str, &[&str])] = &[
    (
        "add",
        &[
            "path",
            "partitionValues",
            "size",
            "dataChange",
            "deletionVector",
        ],
    ),
    ("metaData", &["id", "partitionColumns", "configuration"]),
    ("protocol", &["minReaderVersion", "readerFeatures"]),
    // Present only in v2 checkpoints' parquet parts; read to refuse them.
    ("sidecar", &["path"]),
];

/// The actions of one checkpoint part (`file`, for errors).
pub fn read_part(table: &str, file: &str, bytes: Vec<u8>) -> Result<Vec<Action>, FormatError> {
    let corrupt = |message: String| FormatError::Corrupt {
        table: table.to_string(),
        file: file.to_string(),
        message,
    };
    // The Parquet decoder has panicked on malformed files before (fuzzing
    // finds such bugs in arrow-rs now and then); a checkpoint is input, so
    // a panic in it is a corrupt file, not a crash.
    let decoded = std::panic::catch_unwind(|| decode(bytes))
        .map_err(|_| corrupt("the parquet decoder failed on it".into()))?;
    let rows = decoded.map_err(|e| corrupt(e.to_string()))?;
    rows.into_iter()
        .enumerate()
        .filter(|(_, row)| {
            row.as_object()
                .is_some_and(|o| o.values().any(|v| !v.is_null()))
        })
        .map(|(i, row)| {
            serde_json::from_value::<Action>(row).map_err(|e| corrupt(format!("row {i}: {e}")))
        })
        .collect()
}

/// The projected rows of a Parquet file, as JSON objects.
fn decode(bytes: Vec<u8>) -> parquet::errors::Result<Vec<serde_json::Value>> {
    let reader = SerializedFileReader::new(bytes::Bytes::from(bytes))?;
    let projection = project(reader.metadata().file_metadata().schema())?;
    let mut out = Vec::new();
    for row in reader.get_row_iter(Some(projection))? {
        out.push(row?.to_json_value());
    }
    Ok(out)
}

/// The file's schema cut down to `COLUMNS`, each kept column whole.
fn project(schema: &Type) -> parquet::errors::Result<Type> {
    let mut actions = Vec::new();
    for field in schema.get_fields() {
        let Some((_, columns)) = COLUMNS.iter().find(|(name, _)| *name == field.name()) else {
            continue;
        };
        if !field.is_group() {
            continue;
        }
        let kept: Vec<TypePtr> = field
            .get_fields()
            .iter()
            .filter(|f| columns.contains(&f.name()))
            .cloned()
            .collect();
        if kept.is_empty() {
            continue;
        }
        let info = field.get_basic_info();
        let mut group = Type::group_type_builder(field.name()).with_fields(kept);
        if info.has_repetition() {
            group = group.with_repetition(info.repetition());
        }
        actions.push(Arc::new(group.build()?));
    }
    Type::group_type_builder(schema.name())
        .with_fields(actions)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
