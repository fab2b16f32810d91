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

pub(crate) mod delta;
pub(crate) mod iceberg;
pub(crate) mod remote;
pub(crate) mod storage;

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartitionSum {
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
/// and what the next read starts from. Kept as one string (see
/// `PartitionSums::encode`): a warm plan reads every table's sums, about a
/// million days on a large repository.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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

/// The prefix of `PartitionSums::encode`'s text: another encoding (or the
/// JSON map of days that came before) is not read, and the read is cold.
const SUMS_ENCODING: &str = "s1:";

impl PartitionSums {
    /// `SUMS_ENCODING`, then base64 (standard alphabet, no padding) of each
    /// day in order: the day's difference from the previous one (from day
    /// 0) and its data files, each a zigzag LEB128 varint, then its four
    /// lanes as little-endian u64s. About 46 characters a day, against 105
    /// as a JSON map of objects, and read without parsing one.
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(self.0.len() * 36);
        let mut previous = 0i64;
        for (day, sum) in &self.0 {
            put_varint(&mut bytes, i64::from(day.0) - previous);
            previous = i64::from(day.0);
            put_varint(&mut bytes, sum.data_files);
            for lane in sum.lanes.0 {
                bytes.extend_from_slice(&lane.to_le_bytes());
            }
        }
        let mut text = String::with_capacity(SUMS_ENCODING.len() + bytes.len() * 4 / 3 + 4);
        text.push_str(SUMS_ENCODING);
        STANDARD_NO_PAD.encode_string(&bytes, &mut text);
        text
    }

    /// The sums `encode` wrote; `None` for anything else.
    pub fn decode(text: &str) -> Option<PartitionSums> {
        let bytes = STANDARD_NO_PAD
            .decode(text.strip_prefix(SUMS_ENCODING)?)
            .ok()?;
        let mut rest = bytes.as_slice();
        let mut days = Vec::with_capacity(bytes.len() / 34);
        let mut previous = 0i64;
        while !rest.is_empty() {
            let step = take_varint(&mut rest)?;
            if step <= 0 && !days.is_empty() {
                return None;
            }
            let day = i32::try_from(previous.checked_add(step)?).ok()?;
            previous = i64::from(day);
            let data_files = take_varint(&mut rest)?;
            let (lanes, after) = rest.split_first_chunk::<32>()?;
            rest = after;
            let lane = |i: usize| u64::from_le_bytes(lanes[i * 8..i * 8 + 8].try_into().unwrap());
            let lanes = Lanes([lane(0), lane(1), lane(2), lane(3)]);
            days.push((Day(day), PartitionSum { lanes, data_files }));
        }
        // In order already: built without sorting.
        Some(PartitionSums(days.into_iter().collect()))
    }
}

impl Serialize for PartitionSums {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.encode())
    }
}

impl<'de> Deserialize<'de> for PartitionSums {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PartitionSums, D::Error> {
        struct Sums;
        impl serde::de::Visitor<'_> for Sums {
            type Value = PartitionSums;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(f, "partition sums encoded as {SUMS_ENCODING}<base64>")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<PartitionSums, E> {
                PartitionSums::decode(text)
                    .ok_or_else(|| E::custom("partition sums that do not decode"))
            }
        }
        d.deserialize_str(Sums)
    }
}

/// A zigzag LEB128 varint.
fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn take_varint(bytes: &mut &[u8]) -> Option<i64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(((v >> 1) as i64) ^ -((v & 1) as i64));
        }
    }
    None
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
        sums.apply(Day(19_001), &file("c"), Change::Added, true);
        sums.apply(Day(19_200), &file("d"), Change::Added, true);
        sums.apply(Day(-3), &file("e"), Change::Removed, false);
        let text = serde_json::to_string(&sums).unwrap();
        assert!(text.starts_with("\"s1:"), "{text}");
        let back: PartitionSums = serde_json::from_str(&text).unwrap();
        assert_eq!(back, sums);
        assert_eq!(
            serde_json::from_str::<PartitionSums>("\"s1:\"").unwrap(),
            PartitionSums::default()
        );
        // The JSON map of days that came before, and damaged text, are not
        // read (the read is then cold).
        let truncated = &text[..text.len() - 3];
        for bad in [
            r#"{"2022-01-08": {"lanes": "00", "data_files": 1}}"#,
            &text.replace("s1:", "s2:"),
            &format!("{truncated}\""),
            "\"s1:!!\"",
        ] {
            assert!(serde_json::from_str::<PartitionSums>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn varints_round_trip() {
        for value in [
            0,
            1,
            -1,
            63,
            -64,
            64,
            19_000,
            i64::from(i32::MIN),
            i64::MAX,
            i64::MIN,
        ] {
            let mut bytes = Vec::new();
            put_varint(&mut bytes, value);
            let mut rest = bytes.as_slice();
            assert_eq!(take_varint(&mut rest), Some(value));
            assert!(rest.is_empty());
        }
    }
}
