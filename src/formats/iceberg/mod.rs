//! Iceberg tables (https://iceberg.apache.org/spec/, formats 1 and 2): the
//! current snapshot's manifest list, its manifests, their live entries
//! (status EXISTING or ADDED; DELETED entries are history), each file's
//! day from its manifest's partition tuple, summed per day (see `formats`).
//!
//! A warm read starts from a `TableMemory`. When the current snapshot
//! descends from the remembered one ("Snapshots": `parent-snapshot-id`), it
//! reads only what each newer snapshot wrote: the manifests whose
//! `added_snapshot_id` is that snapshot, and in them only the ADDED and
//! DELETED entries, which "Manifest Entry Fields" says belong to the
//! snapshot that wrote the manifest. A `replace` snapshot (compaction) is
//! counted but changes no fingerprint. Anything else (a rollback, an
//! expired snapshot between, a memory of another layout) is a cold read.

mod avro;
mod catalog;
mod manifest;
mod metadata;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use catalog::{pg_catalog_pointers, sql_catalog_pointers};

use self::manifest::{Entry, ManifestContext, ManifestFile, Status};
use self::metadata::{Snapshot, TableMetadata};
use super::storage::{Storage, StorageError, join};
use super::{Change, FileIdentity, FormatError, LayoutKey, PartitionSums};
use crate::table::{Partitions, TableLayout};

/// Where an Iceberg table is found.
#[derive(Clone, Copy, Debug)]
pub enum IcebergTable<'a> {
    /// A metadata file, as a catalog points at it (see
    /// `sql_catalog_pointers`).
    MetadataFile(&'a str),
    /// The table's location: its newest metadata file under `metadata/`
    /// ("File System Tables": `vN.metadata.json`; metastore tables'
    /// `NNNNN-uuid.metadata.json`). For a metastore table the newest file
    /// may be one whose commit failed: prefer the catalog's pointer.
    Location(&'a str),
}

impl IcebergTable<'_> {
    fn name(&self) -> &str {
        match self {
            IcebergTable::MetadataFile(location) | IcebergTable::Location(location) => location,
        }
    }
}

/// What a read remembers, for the next read of the same table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableMemory {
    pub metadata_location: String,
    pub snapshot_id: Option<i64>,
    pub layout: LayoutKey,
    pub partitions: PartitionSums,
}

/// The table's current metadata file, and its bytes when finding it read
/// them. By location: the version `metadata/version-hint.text` names, or a
/// newer one when the hint is stale ("File System Tables"; the hint is
/// written after the metadata file, and Java's `HadoopTableOperations`
/// looks past it the same way); without a usable hint, the highest version
/// listed in `metadata/`.
fn locate(
    storage: &dyn Storage,
    table: IcebergTable<'_>,
) -> Result<(String, Option<Vec<u8>>), FormatError> {
    let location = match table {
        IcebergTable::MetadataFile(location) => return Ok((location.to_string(), None)),
        IcebergTable::Location(location) => location,
    };
    let folder = join(location, "metadata");
    let read = |name: &str| {
        let file = join(&folder, name);
        match storage.read(&file) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(StorageError::NotFound) => Ok(None),
            Err(e) => Err(unreachable(location, &file, e)),
        }
    };
    let hint = read("version-hint.text")?
        .and_then(|text| String::from_utf8(text).ok())
        .and_then(|text| text.trim().parse::<u64>().ok());
    if let Some(hint) = hint {
        let name = |version: u64| format!("v{version}.metadata.json");
        if let Some(mut bytes) = read(&name(hint))? {
            let mut version = hint;
            while let Some(newer) = read(&name(version + 1))? {
                (version, bytes) = (version + 1, newer);
            }
            return Ok((join(&folder, &name(version)), Some(bytes)));
        }
    }
    let listed = storage
        .list(&folder, None)
        .map_err(|e| unreachable(location, &folder, e))?;
    // The highest version; names of one version sort by their uuid.
    let newest = listed
        .iter()
        .filter_map(|l| metadata_version(&l.name).map(|v| (v, &l.name)))
        .max();
    match newest {
        Some((_, name)) => Ok((join(&folder, name), None)),
        None => Err(FormatError::Absent {
            table: location.to_string(),
            looked: format!("no metadata file in {folder}"),
        }),
    }
}

/// The version a metadata file's name says: `v12.metadata.json`, or
/// `00012-<uuid>.metadata.json`; compressed ones (`.gz.metadata.json`)
/// too, so that one is refused rather than skipped.
fn metadata_version(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".metadata.json")?;
    let stem = stem.strip_suffix(".gz").unwrap_or(stem);
    if let Some(digits) = stem.strip_prefix('v') {
        return digits.parse().ok();
    }
    let (digits, uuid) = stem.split_once('-')?;
    (digits.bytes().all(|b| b.is_ascii_digit()) && uuid.len() == 36)
        .then(|| digits.parse().ok())
        .flatten()
}

fn unreachable(table: &str, file: &str, e: StorageError) -> FormatError {
    FormatError::Unreachable {
        table: table.to_string(),
        file: file.to_string(),
        message: e.to_string(),
    }
}

fn load(
    storage: &dyn Storage,
    table: &str,
    (location, read): (&str, Option<Vec<u8>>),
) -> Result<TableMetadata, FormatError> {
    let bytes = match read.map_or_else(|| storage.read(location), Ok) {
        Ok(bytes) => bytes,
        Err(StorageError::NotFound) => {
            return Err(FormatError::Absent {
                table: table.to_string(),
                looked: format!("{location} is not there"),
            });
        }
        Err(e) => return Err(unreachable(table, location, e)),
    };
    let metadata = TableMetadata::parse(table, location, &bytes)?;
    if let Some(id) = metadata.current_snapshot_id.filter(|id| *id != -1)
        && metadata.current_snapshot().is_none()
    {
        return Err(FormatError::Corrupt {
            table: table.to_string(),
            file: location.to_string(),
            message: format!("current snapshot {id} is not among its snapshots"),
        });
    }
    Ok(metadata)
}

/// The table's days with fingerprints, and what to remember for the next
/// read. With a `memory` of an ancestor snapshot only what the snapshots
/// since wrote is read (see the module's header).
pub fn read(
    storage: &dyn Storage,
    table: IcebergTable<'_>,
    layout: &TableLayout,
    memory: Option<&TableMemory>,
) -> Result<(Partitions, TableMemory), FormatError> {
    let name = table.name();
    let (location, bytes) = locate(storage, table)?;
    let key = LayoutKey::of(layout);
    let memory = memory.filter(|m| m.layout == key);
    let remember = |snapshot_id: Option<i64>, mut sums: PartitionSums| {
        let partitions = sums.partitions();
        let memory = TableMemory {
            metadata_location: location.clone(),
            snapshot_id,
            layout: key.clone(),
            partitions: sums,
        };
        (partitions, memory)
    };
    // Metadata files are never rewritten: the same file, the same table.
    if let Some(m) = memory
        && m.metadata_location == location
    {
        return Ok(remember(m.snapshot_id, m.partitions.clone()));
    }
    let metadata = load(storage, name, (&location, bytes))?;
    let Some(snapshot) = metadata.current_snapshot() else {
        return Ok(remember(None, PartitionSums::default()));
    };
    let specs = metadata.specs();
    let sources = metadata.source_fields();
    let reader = SnapshotReader {
        storage,
        context: ManifestContext {
            table: name,
            layout,
            specs: &specs,
            sources: &sources,
        },
    };
    if let Some(m) = memory
        && let Some(remembered) = m.snapshot_id
    {
        if remembered == snapshot.snapshot_id {
            return Ok(remember(m.snapshot_id, m.partitions.clone()));
        }
        if let Some(newer) = metadata.descendants(remembered, snapshot)
            && let Some(sums) = reader.since(m.partitions.clone(), &newer)?
        {
            return Ok(remember(Some(snapshot.snapshot_id), sums));
        }
    }
    let sums = reader.live(snapshot)?;
    Ok(remember(Some(snapshot.snapshot_id), sums))
}

/// Reads a snapshot's manifests, in parallel.
struct SnapshotReader<'a> {
    storage: &'a dyn Storage,
    context: ManifestContext<'a>,
}

impl SnapshotReader<'_> {
    fn table(&self) -> &str {
        self.context.table
    }

    /// The snapshot's manifests; `None` for an early format 1 snapshot
    /// that lists manifests without a manifest list (no `added_snapshot_id`).
    fn manifests(&self, snapshot: &Snapshot) -> Result<Option<Vec<ManifestFile>>, FormatError> {
        if let Some(list) = &snapshot.manifest_list {
            let bytes = self.bytes(list)?;
            return manifest::read_manifest_list(self.table(), list, &bytes).map(Some);
        }
        Ok(None)
    }

    fn bytes(&self, file: &str) -> Result<Vec<u8>, FormatError> {
        self.storage
            .read(file)
            .map_err(|e| unreachable(self.table(), file, e))
    }

    /// The wanted entries of `manifests`, read in parallel, in their order.
    fn entries(
        &self,
        manifests: &[ManifestFile],
        wanted: impl Fn(&ManifestFile, Status, Option<i64>) -> bool + Sync,
    ) -> Result<Vec<Vec<Entry>>, FormatError> {
        manifests
            .par_iter()
            .map(|m| {
                let bytes = self.bytes(&m.path)?;
                manifest::read_manifest(&self.context, m, &bytes, |status, id| {
                    wanted(m, status, id)
                })
            })
            .collect()
    }

    /// Cold: every live file of the snapshot.
    fn live(&self, snapshot: &Snapshot) -> Result<PartitionSums, FormatError> {
        let manifests = match self.manifests(snapshot)? {
            Some(manifests) => manifests,
            None => (snapshot.manifests.iter().flatten())
                .map(|path| ManifestFile {
                    path: path.clone(),
                    spec_id: None,
                    added_snapshot_id: None,
                    changed_files: None,
                })
                .collect(),
        };
        let mut sums = PartitionSums::default();
        for entries in self.entries(&manifests, |_, status, _| status != Status::Deleted)? {
            for entry in &entries {
                sums.apply(entry.day, &identity(entry), Change::Added, true);
            }
        }
        Ok(sums)
    }

    /// Warm: `sums` moved through `newer` (oldest first); `None` when a
    /// snapshot cannot be followed, or the counts come out impossible.
    fn since(
        &self,
        mut sums: PartitionSums,
        newer: &[&Snapshot],
    ) -> Result<Option<PartitionSums>, FormatError> {
        for snapshot in newer {
            let id = snapshot.snapshot_id;
            let Some(manifests) = self.manifests(snapshot)? else {
                return Ok(None);
            };
            // A manifest the snapshot wrote with no added or deleted file
            // only carries existing ones over: not read.
            let written: Vec<ManifestFile> = manifests
                .into_iter()
                .filter(|m| m.added_snapshot_id == Some(id) && m.changed_files != Some(0))
                .collect();
            let entries = self.entries(&written, |_, status, entry_snapshot| {
                status != Status::Existing && entry_snapshot.is_none_or(|s| s == id)
            })?;
            let fingerprinted = !snapshot.is_replace();
            for entry in entries.iter().flatten() {
                let change = match entry.status {
                    Status::Deleted => Change::Removed,
                    _ => Change::Added,
                };
                sums.apply(entry.day, &identity(entry), change, fingerprinted);
            }
        }
        Ok(sums.consistent().then_some(sums))
    }
}

fn identity(entry: &Entry) -> FileIdentity<'_> {
    FileIdentity {
        path: &entry.path,
        size: entry.size,
        records: Some(entry.records),
        content: entry.content,
        deletion_vector: None,
    }
}

#[cfg(test)]
mod tests;
