//! Iceberg table metadata (the `*.metadata.json` file): the fields the
//! reader needs, per the spec's "Table Metadata Fields" and "Appendix C:
//! JSON serialization" (https://iceberg.apache.org/spec/), formats 1 and 2.

use std::collections::HashMap;

use serde::Deserialize;

use crate::formats::FormatError;

/// The versions read. Version 3 adds row lineage and deletion vectors in
/// Puffin files; what it changes for a fingerprint has not been checked.
pub const SUPPORTED: &str = "format versions 1 and 2";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TableMetadata {
    /// -1 means none in format 1 ("current-snapshot-id").
    #[serde(default)]
    pub current_snapshot_id: Option<i64>,
    #[serde(default)]
    pub snapshots: Vec<Snapshot>,
    /// Format 2, and format 1 since partition evolution.
    #[serde(default)]
    pub partition_specs: Vec<PartitionSpec>,
    /// Format 1's only spec (its id is 0), before `partition-specs`.
    #[serde(default)]
    pub partition_spec: Vec<PartitionField>,
    #[serde(default)]
    pub schemas: Vec<Schema>,
    /// Format 1's only schema, before `schemas`.
    #[serde(default)]
    pub schema: Option<Schema>,
    #[serde(default)]
    pub current_schema_id: Option<i32>,
}

/// "Snapshots": a manifest list, or in early format 1 a list of manifests.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Snapshot {
    pub snapshot_id: i64,
    #[serde(default)]
    pub parent_snapshot_id: Option<i64>,
    #[serde(default)]
    pub manifest_list: Option<String>,
    #[serde(default)]
    pub manifests: Option<Vec<String>>,
    #[serde(default)]
    pub summary: Option<Summary>,
}

/// "Snapshot Summary": `operation` is `append`, `replace`, `overwrite` or
/// `delete`; the other keys are not read.
#[derive(Debug, Deserialize)]
pub struct Summary {
    #[serde(default)]
    pub operation: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PartitionSpec {
    pub spec_id: i32,
    pub fields: Vec<PartitionField>,
}

/// "Partition Specs": a field's name is its name in the manifests'
/// partition tuples.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PartitionField {
    pub source_id: i32,
    pub name: String,
    pub transform: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Schema {
    #[serde(default)]
    pub schema_id: Option<i32>,
    pub fields: Vec<SchemaField>,
}

#[derive(Debug, Deserialize)]
pub struct SchemaField {
    pub id: i32,
    pub name: String,
    /// A primitive's name (`"string"`, `"date"`), or an object for a
    /// nested type.
    #[serde(rename = "type")]
    pub kind: serde_json::Value,
}

impl TableMetadata {
    /// Parses a metadata file; the format version is checked first, so a
    /// newer format is said to be one rather than a missing field.
    pub fn parse(table: &str, file: &str, bytes: &[u8]) -> Result<TableMetadata, FormatError> {
        let corrupt = |message: String| FormatError::Corrupt {
            table: table.to_string(),
            file: file.to_string(),
            message,
        };
        if bytes.starts_with(&[0x1f, 0x8b]) {
            return Err(FormatError::Unsupported {
                table: table.to_string(),
                file: file.to_string(),
                what: "a gzip-compressed metadata file".into(),
            });
        }
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        let version = value
            .get("format-version")
            .ok_or_else(|| corrupt("no format-version".into()))?;
        if version.as_u64() != Some(1) && version.as_u64() != Some(2) {
            return Err(FormatError::UnsupportedVersion {
                table: table.to_string(),
                file: file.to_string(),
                version: version.to_string(),
                supported: SUPPORTED,
            });
        }
        let metadata: TableMetadata = serde_path_to_error::deserialize(value)
            .map_err(|e| corrupt(format!("at {}: {}", e.path(), e.inner())))?;
        Ok(metadata)
    }

    pub fn current_snapshot(&self) -> Option<&Snapshot> {
        let id = self.current_snapshot_id.filter(|id| *id != -1)?;
        self.snapshot(id)
    }

    pub fn snapshot(&self, id: i64) -> Option<&Snapshot> {
        self.snapshots.iter().find(|s| s.snapshot_id == id)
    }

    /// The snapshots after `ancestor` up to `snapshot`, oldest first,
    /// following parents; `None` when `ancestor` is not an ancestor (a
    /// rollback), or a snapshot between is gone (expired).
    pub fn descendants<'a>(
        &'a self,
        ancestor: i64,
        snapshot: &'a Snapshot,
    ) -> Option<Vec<&'a Snapshot>> {
        let mut chain = vec![snapshot];
        let mut at = snapshot;
        while let Some(parent) = at.parent_snapshot_id {
            if parent == ancestor {
                chain.reverse();
                return Some(chain);
            }
            at = self.snapshot(parent)?;
            chain.push(at);
        }
        None
    }

    /// Each partition spec by id ("Partition Evolution": every manifest is
    /// read with the spec it was written with).
    pub fn specs(&self) -> HashMap<i32, &[PartitionField]> {
        let mut specs: HashMap<i32, &[PartitionField]> = self
            .partition_specs
            .iter()
            .map(|s| (s.spec_id, s.fields.as_slice()))
            .collect();
        if specs.is_empty() {
            specs.insert(0, &self.partition_spec);
        }
        specs
    }

    /// The current schema's top-level fields by id: partition sources.
    pub fn source_fields(&self) -> HashMap<i32, &SchemaField> {
        let current = self
            .schemas
            .iter()
            .find(|s| s.schema_id.is_some() && s.schema_id == self.current_schema_id)
            .or(self.schema.as_ref())
            .or(self.schemas.last());
        current
            .map(|s| s.fields.iter().map(|f| (f.id, f)).collect())
            .unwrap_or_default()
    }
}

impl Snapshot {
    /// `replace`: "data and delete files were added and removed without
    /// changing table data; i.e., compaction".
    pub fn is_replace(&self) -> bool {
        self.summary
            .as_ref()
            .and_then(|s| s.operation.as_deref())
            .is_some_and(|op| op == "replace")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_formats_are_refused_by_version() {
        for text in [
            r#"{"format-version": 3}"#,
            r#"{"format-version": "2"}"#,
            r#"{"format-version": 0, "location": "x"}"#,
        ] {
            let err = TableMetadata::parse("t", "m.json", text.as_bytes()).unwrap_err();
            assert!(
                matches!(err, FormatError::UnsupportedVersion { .. }),
                "{text}: {err}"
            );
        }
        let err = TableMetadata::parse("t", "m.json", br#"{"format-version": 3}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "t: m.json: format version 3 is not supported (only format versions 1 and 2)"
        );
    }

    #[test]
    fn truncated_or_mistyped_metadata_is_corrupt() {
        for text in [
            "",
            r#"{"format-version": 2, "snapshots": ["#,
            r#"{"location": "x"}"#,
            r#"{"format-version": 2, "snapshots": [{"snapshot-id": "one"}]}"#,
        ] {
            let err = TableMetadata::parse("t", "m.json", text.as_bytes()).unwrap_err();
            assert!(matches!(err, FormatError::Corrupt { .. }), "{text}: {err}");
        }
        let err = TableMetadata::parse(
            "t",
            "m.json",
            br#"{"format-version": 2, "snapshots": [{"snapshot-id": "one"}]}"#,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("snapshots[0].snapshot-id"),
            "{err}"
        );
    }

    #[test]
    fn descendants_follow_parents_and_stop_at_a_rollback() {
        let metadata = TableMetadata::parse(
            "t",
            "m.json",
            br#"{"format-version": 2, "current-snapshot-id": 4, "snapshots": [
                {"snapshot-id": 1},
                {"snapshot-id": 2, "parent-snapshot-id": 1},
                {"snapshot-id": 3, "parent-snapshot-id": 2},
                {"snapshot-id": 4, "parent-snapshot-id": 2},
                {"snapshot-id": 6, "parent-snapshot-id": 5}]}"#,
        )
        .unwrap();
        let current = metadata.current_snapshot().unwrap();
        let ids = |chain: Option<Vec<&Snapshot>>| {
            chain.map(|c| c.iter().map(|s| s.snapshot_id).collect::<Vec<_>>())
        };
        assert_eq!(ids(metadata.descendants(1, current)), Some(vec![2, 4]));
        assert_eq!(ids(metadata.descendants(2, current)), Some(vec![4]));
        // 3 was rolled back: 4 does not descend from it.
        assert_eq!(ids(metadata.descendants(3, current)), None);
        // 5 expired: the chain from 6 cannot be followed past it.
        let six = metadata.snapshot(6).unwrap();
        assert_eq!(ids(metadata.descendants(1, six)), None);
    }
}
