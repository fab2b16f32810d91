//! The Delta log's files and actions (PROTOCOL.md, "Delta Log Entries",
//! "Checkpoints", "Actions"): the names under `_delta_log/`, the actions
//! the reader needs (`add`, `remove`, `metaData`, `protocol`), and what
//! protocol it can read ("Protocol Evolution", "Table Features").

use std::collections::HashMap;

use serde::Deserialize;

use crate::formats::FormatError;

/// A file under `_delta_log/`, by its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogFile {
    /// "Delta Log Entries": `00000000000000000010.json`.
    Commit(u64),
    /// "Classic Checkpoint": `…10.checkpoint.parquet` (part 1 of 1), or
    /// "Multi-part checkpoint": `…10.checkpoint.0000000001.0000000003.parquet`.
    Checkpoint { version: u64, part: u32, parts: u32 },
    /// "UUID-named checkpoint" (v2 checkpoints, "V2 Spec"):
    /// `…10.checkpoint.<uuid>.json` or `.parquet`, by its name.
    UuidCheckpoint { version: u64, name: String },
}

impl LogFile {
    /// What a name under `_delta_log/` is; `None` for anything else (CRC
    /// files, `_last_checkpoint`, compacted logs, temporary files).
    pub fn parse(name: &str) -> Option<LogFile> {
        let version = name
            .get(..20)
            .filter(|v| v.bytes().all(|b| b.is_ascii_digit()))?;
        let version: u64 = version.parse().ok()?;
        let rest = &name[20..];
        if rest == ".json" {
            return Some(LogFile::Commit(version));
        }
        let rest = rest.strip_prefix(".checkpoint.")?;
        if rest == "parquet" {
            return Some(LogFile::Checkpoint {
                version,
                part: 1,
                parts: 1,
            });
        }
        let number = |text: &str| {
            (text.len() == 10 && text.bytes().all(|b| b.is_ascii_digit()))
                .then(|| text.parse::<u32>().ok())
                .flatten()
        };
        let pieces: Vec<&str> = rest.split('.').collect();
        match pieces.as_slice() {
            [part, parts, "parquet"] => match (number(part), number(parts)) {
                (Some(part), Some(parts)) if part >= 1 && part <= parts => {
                    Some(LogFile::Checkpoint {
                        version,
                        part,
                        parts,
                    })
                }
                _ => None,
            },
            [_uuid, "json" | "parquet"] => Some(LogFile::UuidCheckpoint {
                version,
                name: name.to_string(),
            }),
            _ => None,
        }
    }
}

/// `_delta_log/{version:020}.json`.
pub fn commit_name(version: u64) -> String {
    format!("{version:020}.json")
}

/// The names of a checkpoint's parts.
pub fn checkpoint_names(version: u64, parts: u32) -> Vec<String> {
    if parts == 1 {
        return vec![format!("{version:020}.checkpoint.parquet")];
    }
    (1..=parts)
        .map(|part| format!("{version:020}.checkpoint.{part:010}.{parts:010}.parquet"))
        .collect()
}

/// "Last Checkpoint File": where the newest checkpoint is (its parts are
/// found by listing from there).
#[derive(Debug, Deserialize)]
pub struct LastCheckpoint {
    pub version: u64,
}

/// One action of a commit or checkpoint; the others (`commitInfo`, `txn`,
/// `cdc`, `domainMetadata`, ...) are not read.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    #[serde(default)]
    pub add: Option<AddFile>,
    #[serde(default)]
    pub remove: Option<RemoveFile>,
    #[serde(default)]
    pub meta_data: Option<Metadata>,
    #[serde(default)]
    pub protocol: Option<Protocol>,
    #[serde(default)]
    pub sidecar: Option<Sidecar>,
}

/// "Sidecar File Information": a file of a v2 checkpoint's `add` and
/// `remove` actions, under `_delta_log/_sidecars/`.
#[derive(Debug, Deserialize)]
pub struct Sidecar {
    pub path: String,
}

/// "Add File and Remove File".
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddFile {
    pub path: String,
    #[serde(default)]
    pub partition_values: HashMap<String, Option<String>>,
    pub size: i64,
    #[serde(default = "yes")]
    pub data_change: bool,
    #[serde(default)]
    pub deletion_vector: Option<DeletionVector>,
}

/// A remove's partition values and size are there when it says
/// `extendedFileMetadata` (delta-rs and Spark write them); without them a
/// warm read cannot tell which day lost the file.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoveFile {
    pub path: String,
    #[serde(default)]
    pub partition_values: Option<HashMap<String, Option<String>>>,
    #[serde(default)]
    pub size: Option<i64>,
    #[serde(default = "yes")]
    pub data_change: bool,
    #[serde(default)]
    pub deletion_vector: Option<DeletionVector>,
}

fn yes() -> bool {
    true
}

/// "Deletion Vector Descriptor Schema".
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletionVector {
    pub storage_type: String,
    pub path_or_inline_dv: String,
    #[serde(default)]
    pub offset: Option<i32>,
    #[serde(default)]
    pub cardinality: Option<i64>,
}

impl DeletionVector {
    /// "uniqueId": the storage type, the path or inline bitmap, and
    /// `@offset` when there is one. With the path it keys a logical file
    /// ("the primary key for the entry is path and deletionVector.uniqueId").
    pub fn unique_id(&self) -> String {
        match self.offset {
            Some(offset) => format!("{}{}@{offset}", self.storage_type, self.path_or_inline_dv),
            None => format!("{}{}", self.storage_type, self.path_or_inline_dv),
        }
    }

    /// The identity hashed into the file's: the unique id and how many
    /// rows it deletes.
    pub fn identity(&self) -> String {
        format!("{}#{}", self.unique_id(), self.cardinality.unwrap_or(-1))
    }
}

/// "Change Metadata": the partition columns and the configuration (for
/// column mapping).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub id: String,
    #[serde(default)]
    pub partition_columns: Vec<String>,
    #[serde(default)]
    pub configuration: HashMap<String, Option<String>>,
}

/// "Protocol Evolution".
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Protocol {
    pub min_reader_version: i64,
    #[serde(default)]
    pub reader_features: Option<Vec<String>>,
}

/// Reader features whose tables this reader reads right:
/// - `deletionVectors`: a file's deletion vector is part of its identity
///   (its rows change, so its day's fingerprint does);
/// - `timestampNtz`, `vacuumProtocolCheck`: change nothing in the log it
///   reads;
/// - `v2Checkpoint`: UUID-named checkpoints and their sidecar files are
///   read ("V2 Checkpoint Table Feature");
/// - `columnMapping` in mode `none` (checked with the metadata).
const READER_FEATURES: &[&str] = &[
    "deletionVectors",
    "timestampNtz",
    "vacuumProtocolCheck",
    "columnMapping",
    "v2Checkpoint",
];

/// Refuses a table this reader cannot read right: a reader version above
/// 3, a reader feature it does not know, or
/// column mapping (partition values are keyed by physical names).
pub fn check_readable(
    table: &str,
    file: &str,
    protocol: Option<&Protocol>,
    metadata: Option<&Metadata>,
) -> Result<(), FormatError> {
    let refuse = |what: String| FormatError::Unsupported {
        table: table.to_string(),
        file: file.to_string(),
        what,
    };
    if let Some(protocol) = protocol {
        match protocol.min_reader_version {
            1 | 2 => {}
            3 => {
                for feature in protocol.reader_features.iter().flatten() {
                    if !READER_FEATURES.contains(&feature.as_str()) {
                        return Err(refuse(format!("the reader feature {feature}")));
                    }
                }
            }
            version => return Err(refuse(format!("reader version {version}"))),
        }
    }
    if let Some(metadata) = metadata {
        let mode = metadata
            .configuration
            .get("delta.columnMapping.mode")
            .cloned()
            .flatten();
        if let Some(mode) = mode.filter(|m| m != "none") {
            return Err(refuse(format!("column mapping (mode {mode})")));
        }
    }
    Ok(())
}

/// A path as the log writes it (a URI, percent-encoded) decoded.
pub fn decode_path(path: &str) -> Option<String> {
    if !path.contains('%') {
        return Some(path.to_string());
    }
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_file_names_are_read_by_the_protocol() {
        let cases = [
            ("00000000000000000010.json", Some(LogFile::Commit(10))),
            (
                "00000000000000000010.checkpoint.parquet",
                Some(LogFile::Checkpoint {
                    version: 10,
                    part: 1,
                    parts: 1,
                }),
            ),
            (
                "00000000000000000010.checkpoint.0000000002.0000000003.parquet",
                Some(LogFile::Checkpoint {
                    version: 10,
                    part: 2,
                    parts: 3,
                }),
            ),
            (
                "00000000000000000010.checkpoint.80a083e8-7026-4e79-81be-64bd76c43a11.json",
                Some(LogFile::UuidCheckpoint {
                    version: 10,
                    name:
                        "00000000000000000010.checkpoint.80a083e8-7026-4e79-81be-64bd76c43a11.json"
                            .into(),
                }),
            ),
            (
                "00000000000000000010.checkpoint.0000000004.0000000003.parquet",
                None,
            ),
            ("00000000000000000010.crc", None),
            ("_last_checkpoint", None),
            (
                "00000000000000000001.00000000000000000009.compacted.json",
                None,
            ),
            ("0000000000000000001.json", None),
        ];
        for (name, expected) in cases {
            assert_eq!(LogFile::parse(name), expected, "{name}");
        }
        assert_eq!(
            checkpoint_names(10, 2),
            [
                "00000000000000000010.checkpoint.0000000001.0000000002.parquet",
                "00000000000000000010.checkpoint.0000000002.0000000002.parquet"
            ]
        );
    }

    #[test]
    fn paths_are_percent_decoded_once() {
        assert_eq!(
            decode_path("ds=2024%252001%252001/part-0.parquet").as_deref(),
            Some("ds=2024%2001%2001/part-0.parquet")
        );
        assert_eq!(decode_path("caf%C3%A9").as_deref(), Some("caf\u{e9}"));
        assert_eq!(decode_path("plain").as_deref(), Some("plain"));
        assert_eq!(decode_path("bad%2"), None);
        assert_eq!(decode_path("bad%zz"), None);
        assert_eq!(decode_path("%ff"), None);
    }

    #[test]
    fn unknown_features_column_mapping_and_new_readers_are_refused() {
        let protocol = |version: i64, features: &[&str]| Protocol {
            min_reader_version: version,
            reader_features: Some(features.iter().map(|f| f.to_string()).collect()),
        };
        let metadata = |mode: Option<&str>| Metadata {
            id: "id".into(),
            partition_columns: vec!["ds".into()],
            configuration: mode
                .map(|m| [("delta.columnMapping.mode".to_string(), Some(m.to_string()))].into())
                .unwrap_or_default(),
        };
        let check = |p: Protocol, m: Metadata| {
            check_readable("t", "_delta_log/1.json", Some(&p), Some(&m)).map_err(|e| e.to_string())
        };
        assert!(check(protocol(1, &[]), metadata(None)).is_ok());
        assert!(check(protocol(3, &["deletionVectors"]), metadata(Some("none"))).is_ok());
        assert!(check(protocol(3, &["v2Checkpoint"]), metadata(None)).is_ok());
        assert_eq!(
            check(protocol(3, &["variantType"]), metadata(None)),
            Err("t: _delta_log/1.json: the reader feature variantType is not supported".into())
        );
        assert_eq!(
            check(protocol(2, &[]), metadata(Some("name"))),
            Err("t: _delta_log/1.json: column mapping (mode name) is not supported".into())
        );
        assert_eq!(
            check(protocol(4, &[]), metadata(None)),
            Err("t: _delta_log/1.json: reader version 4 is not supported".into())
        );
    }
}
