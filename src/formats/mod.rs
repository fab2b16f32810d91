//! Table formats: the daily partitions of an Iceberg or Delta table and
//! their fingerprints, read from the table's own metadata (never its data
//! files), through a `Storage` (`storage`). Pure and synchronous.
//!
//! What goes into a partition's fingerprint: the files the table lists as
//! live in it, each file hashed from what identifies it in the metadata
//! (`FileIdentity`: its path, size, record count when the format records
//! one, whether it holds data or deletes, and a Delta deletion vector), the
//! hashes summed in four wrapping 64-bit lanes (`hash::Lanes`), the sum
//! digested with `FINGERPRINT_VERSION`. A sum, not a sorted list, so a file
//! added adds and a file removed subtracts: a newer version of the table is
//! read from what changed since a remembered one (`PartitionSums`, kept in
//! each format's `TableMemory`), not from all its files.
//!
//! What is left out on purpose, and why:
//! - compactions: an Iceberg `replace` snapshot, or a Delta commit whose
//!   file actions all say `dataChange: false` (OPTIMIZE, Z-order), rewrite
//!   files without changing rows. A warm read counts their files (so a day
//!   compacted and then deleted is gone) but leaves the lanes as they were,
//!   so no day looks changed and nothing is rebuilt. The lanes then no
//!   longer equal the sum over the live files; they stay a deterministic
//!   function of the table's history since the memory was made, and any
//!   later change to a day still changes its lanes. A cold read (no
//!   memory, or one that cannot be followed) sums the live files, so after
//!   a compaction it gives the compacted days new fingerprints: a spurious
//!   rebuild, never a missed one;
//! - file contents and column statistics: the metadata names immutable
//!   files, so a path, its size and its record count stand for its rows;
//! - the table's location, schema and properties: they change no rows.

pub mod delta;
pub mod iceberg;
pub mod remote;
pub mod storage;

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::hash::{Hash, Lanes};
use crate::partition::Day;
use crate::table::{Partitions, TableLayout};

/// Bump to change every table-format fingerprint (and so every key that
/// reads an Iceberg or Delta table). History:
/// 1: first release.
pub const FINGERPRINT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// No table at the location: its caller lists it as no partitions.
    #[error("{table}: no table there ({looked})")]
    Absent { table: String, looked: String },
    #[error("{table}: cannot read {file}: {message}")]
    Unreachable {
        table: String,
        file: String,
        message: String,
    },
    #[error("{table}: {file} is corrupt: {message}")]
    Corrupt {
        table: String,
        file: String,
        message: String,
    },
    #[error("{table}: {file} is not an avro file: {message}")]
    NotAvro {
        table: String,
        file: String,
        message: String,
    },
    #[error("{table}: {file}: format version {version} is not supported (only {supported})")]
    UnsupportedVersion {
        table: String,
        file: String,
        version: String,
        supported: &'static str,
    },
    #[error("{table}: {file}: {what} is not supported")]
    Unsupported {
        table: String,
        file: String,
        what: String,
    },
    #[error("{table}: {file}: not partitioned by day on {column}{detail}")]
    NoPartitionColumn {
        table: String,
        file: String,
        column: String,
        detail: String,
    },
    #[error(
        "{table}: {file}: partition value {value} of {column} is not a day in the format {format}"
    )]
    NotADay {
        table: String,
        file: String,
        column: String,
        value: String,
        format: String,
    },
    #[error("{catalog}: {message}")]
    Catalog { catalog: String, message: String },
}

impl FormatError {
    /// Whether the table is not there at all (no partitions, not a failure).
    pub fn is_absent(&self) -> bool {
        matches!(self, FormatError::Absent { .. })
    }
}

/// What a live file holds: rows, or rows deleted from other files
/// (Iceberg v2's delete files).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Content {
    Data,
    PositionDeletes,
    EqualityDeletes,
}

impl Content {
    fn tag(self) -> u8 {
        match self {
            Content::Data => 0,
            Content::PositionDeletes => 1,
            Content::EqualityDeletes => 2,
        }
    }
}

/// What identifies a live file in a table's metadata. Iceberg and Delta
/// never rewrite a file in place, so its path names its rows, and the size
/// and record count catch a path reused after a delete.
#[derive(Clone, Copy, Debug)]
pub struct FileIdentity<'a> {
    /// As the metadata writes it (Iceberg: the full URI; Delta: the
    /// URL-decoded path relative to the table or absolute).
    pub path: &'a str,
    pub size: u64,
    /// Iceberg's `record_count`; Delta keeps it in statistics, not read.
    pub records: Option<u64>,
    pub content: Content,
    /// A Delta deletion vector's descriptor (storage type, path or inline
    /// bitmap, offset, cardinality): the rows of the file still live.
    pub deletion_vector: Option<&'a str>,
}

impl FileIdentity<'_> {
    /// blake3 over the fields, each length-prefixed or fixed-width.
    pub fn hash(&self) -> Hash {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&(self.path.len() as u64).to_le_bytes());
        hasher.update(self.path.as_bytes());
        hasher.update(&self.size.to_le_bytes());
        match self.records {
            Some(records) => hasher.update(&[1]).update(&records.to_le_bytes()),
            None => hasher.update(&[0]),
        };
        hasher.update(&[self.content.tag()]);
        match self.deletion_vector {
            Some(dv) => hasher
                .update(&[1])
                .update(&(dv.len() as u64).to_le_bytes())
                .update(dv.as_bytes()),
            None => hasher.update(&[0]),
        };
        Hash(*hasher.finalize().as_bytes())
    }
}

/// A day's running sum: the lanes of its files' hashes, and how many data
/// files it has (a day with none is no partition, whatever its lanes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionSum {
    #[serde(serialize_with = "lanes_hex", deserialize_with = "lanes_from_hex")]
    pub lanes: Lanes,
    pub data_files: i64,
}

/// A file entering or leaving a day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Added,
    Removed,
}

/// Each day's `PartitionSum`: what a read returns besides the partitions,
/// and what the next read starts from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PartitionSums(pub BTreeMap<Day, PartitionSum>);

impl PartitionSums {
    /// Counts a file in or out of `day`; `fingerprinted` is false for a
    /// compaction's files, counted but not hashed (see the module's header).
    pub fn apply(
        &mut self,
        day: Day,
        file: &FileIdentity<'_>,
        change: Change,
        fingerprinted: bool,
    ) {
        let sum = self.0.entry(day).or_default();
        let files = i64::from(file.content == Content::Data);
        let lanes = Lanes::of(&file.hash());
        match change {
            Change::Added => {
                sum.data_files += files;
                if fingerprinted {
                    sum.lanes = sum.lanes.plus(lanes);
                }
            }
            Change::Removed => {
                sum.data_files -= files;
                if fingerprinted {
                    sum.lanes = sum.lanes.minus(lanes);
                }
            }
        }
    }

    /// Whether every count is possible; a negative one means the memory
    /// was not of this table's history, and a cold read must be done.
    pub fn consistent(&self) -> bool {
        self.0.values().all(|sum| sum.data_files >= 0)
    }

    /// Days with data files, each with its fingerprint; days without are
    /// dropped, so the sums stay as small as the table.
    pub fn partitions(&mut self) -> Partitions {
        self.0.retain(|_, sum| sum.data_files > 0);
        self.0
            .iter()
            .map(|(day, sum)| (*day, sum.lanes.digest(FINGERPRINT_VERSION)))
            .collect()
    }
}

/// The layout a memory was made with: a memory made for another column or
/// format has other days, and is not used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutKey {
    pub column: String,
    pub format: String,
}

impl LayoutKey {
    pub fn of(layout: &TableLayout) -> LayoutKey {
        LayoutKey {
            column: layout.column.clone(),
            format: layout.format.pattern().to_string(),
        }
    }
}

fn lanes_hex<S: Serializer>(lanes: &Lanes, s: S) -> Result<S::Ok, S::Error> {
    let text: String = lanes.0.iter().map(|lane| format!("{lane:016x}")).collect();
    s.serialize_str(&text)
}

fn lanes_from_hex<'de, D: Deserializer<'de>>(d: D) -> Result<Lanes, D::Error> {
    let text = String::deserialize(d)?;
    let lane = |i: usize| {
        text.get(i * 16..i * 16 + 16)
            .and_then(|digits| u64::from_str_radix(digits, 16).ok())
    };
    match (text.len(), lane(0), lane(1), lane(2), lane(3)) {
        (64, Some(a), Some(b), Some(c), Some(d)) => Ok(Lanes([a, b, c, d])),
        _ => Err(serde::de::Error::custom(format!(
            "expected 64 hex digits of lanes, got {text:?}"
        ))),
    }
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> FileIdentity<'_> {
        FileIdentity {
            path,
            size: 10,
            records: Some(2),
            content: Content::Data,
            deletion_vector: None,
        }
    }

    #[test]
    fn a_file_added_then_removed_leaves_the_sum_as_it_was() {
        let day = Day(19_000);
        let mut sums = PartitionSums::default();
        sums.apply(day, &file("a"), Change::Added, true);
        let before = sums.clone().partitions();
        sums.apply(day, &file("b"), Change::Added, true);
        assert_ne!(sums.clone().partitions(), before);
        sums.apply(day, &file("b"), Change::Removed, true);
        assert_eq!(sums.clone().partitions(), before);
        sums.apply(day, &file("a"), Change::Removed, true);
        assert!(sums.partitions().is_empty());
        assert!(sums.0.is_empty());
    }

    #[test]
    fn a_compaction_counts_files_but_keeps_the_fingerprint() {
        let day = Day(19_000);
        let mut sums = PartitionSums::default();
        sums.apply(day, &file("a"), Change::Added, true);
        sums.apply(day, &file("b"), Change::Added, true);
        let before = sums.clone().partitions();
        sums.apply(day, &file("a"), Change::Removed, false);
        sums.apply(day, &file("b"), Change::Removed, false);
        sums.apply(day, &file("ab"), Change::Added, false);
        assert_eq!(sums.clone().partitions(), before);
        // The compacted file deleted: the day is gone, not left with a
        // count of one.
        sums.apply(day, &file("ab"), Change::Removed, true);
        assert!(sums.partitions().is_empty());
    }

    #[test]
    fn every_field_of_a_file_changes_its_hash() {
        let base = file("a");
        let variants = [
            FileIdentity { path: "b", ..base },
            FileIdentity { size: 11, ..base },
            FileIdentity {
                records: None,
                ..base
            },
            FileIdentity {
                records: Some(3),
                ..base
            },
            FileIdentity {
                content: Content::PositionDeletes,
                ..base
            },
            FileIdentity {
                deletion_vector: Some("u:abc@1#2"),
                ..base
            },
        ];
        for variant in variants {
            assert_ne!(variant.hash(), base.hash(), "{variant:?}");
        }
    }

    #[test]
    fn sums_round_trip_through_json() {
        let mut sums = PartitionSums::default();
        sums.apply(Day(19_000), &file("a"), Change::Added, true);
        sums.apply(Day(19_001), &file("b"), Change::Added, true);
        let text = serde_json::to_string(&sums).unwrap();
        assert!(text.contains("\"2022-01-08\""), "{text}");
        let back: PartitionSums = serde_json::from_str(&text).unwrap();
        assert_eq!(back, sums);
        assert!(
            serde_json::from_str::<PartitionSums>(
                r#"{"2022-01-08": {"lanes": "00", "data_files": 1}}"#
            )
            .is_err()
        );
    }
}
