//! Delta tables (https://github.com/delta-io/delta/blob/master/PROTOCOL.md):
//! the log under `_delta_log/` replayed ("Action Reconciliation") from the
//! newest classic or multi-part checkpoint ("Checkpoints", found through
//! "Last Checkpoint File" and a listing) through the JSON commits after it
//! ("Delta Log Entries"), to the live `add` files, each file's day from its
//! `partitionValues`, summed per day (see `formats`).
//!
//! A warm read starts from a `TableMemory` (the log version it was made at)
//! and reads only the commits after it, in order, until one is not there:
//! an `add` adds its file, a `remove` subtracts it (by the partition values
//! and size it carries, "extendedFileMetadata"). A commit whose file actions
//! all say `dataChange: false` (OPTIMIZE, Z-order: "the data was only
//! rearranged") is counted but changes no fingerprint. A log whose commits
//! after the memory are gone (cleaned up past a checkpoint), a table whose
//! id changed, or a remove without its day is a cold read.
//!
//! V2 checkpoints ("V2 Spec"): a UUID-named checkpoint (JSON or Parquet),
//! or a classic-named one, whose `sidecar` actions name Parquet files of
//! `add` and `remove` actions under `_delta_log/_sidecars/`, read with it.
//!
//! Refused, naming the table and the log file: reader versions above 3,
//! reader features other than those `log::check_readable` lists, and
//! column mapping. Deletion vectors are read:
//! a file's vector is part of its identity.

mod checkpoint;
mod log;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use self::log::{Action, LastCheckpoint, LogFile, Metadata, Protocol};
use super::storage::{Storage, StorageError, join};
use super::{Change, Content, FileIdentity, FormatError, LayoutKey, PartitionSums};
use crate::partition::Day;
use crate::table::{Partitions, TableLayout};

/// What a read remembers, for the next read of the same table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableMemory {
    /// The log version read.
    pub version: u64,
    /// `metaData.id`: a table dropped and made again has another.
    pub table_id: Option<String>,
    pub layout: LayoutKey,
    pub partitions: PartitionSums,
}

/// The table's days with fingerprints, and what to remember for the next
/// read. With a `memory`, only the commits after it are read (see the
/// module's header).
pub fn read(
    storage: &dyn Storage,
    table: &str,
    layout: &TableLayout,
    memory: Option<&TableMemory>,
) -> Result<(Partitions, TableMemory), FormatError> {
    let log = Log {
        storage,
        table,
        folder: join(table, "_delta_log"),
    };
    let key = LayoutKey::of(layout);
    let warm = match memory.filter(|m| m.layout == key) {
        Some(memory) => log.since(layout, memory)?,
        None => None,
    };
    let mut memory = match warm {
        Some(memory) => memory,
        None => log.cold(layout)?,
    };
    let partitions = memory.partitions.partitions();
    Ok((partitions, memory))
}

struct Log<'a> {
    storage: &'a dyn Storage,
    table: &'a str,
    folder: String,
}

/// A live file, by its key: path and deletion vector id.
struct LiveFile {
    /// The value of the caller's column: `None` when the file has none.
    value: Option<Option<String>>,
    size: u64,
    deletion_vector: Option<String>,
}

/// What a cold read reads: a checkpoint, then commits.
struct Plan {
    checkpoint: Option<Checkpoint>,
    commits: Vec<u64>,
}

/// A complete checkpoint: its version and files under `_delta_log/` (the
/// parts of a classic or multi-part one, or one UUID-named file).
struct Checkpoint {
    version: u64,
    files: Vec<String>,
}

/// A log replayed: its live files by path and deletion vector, what
/// governs it, and the version reached.
struct Replayed {
    live: HashMap<(String, Option<String>), LiveFile>,
    governing: Governing,
    version: u64,
}

/// The protocol and metadata in force, with the file that set them.
#[derive(Default)]
struct Governing {
    protocol: Option<(Protocol, String)>,
    metadata: Option<(Metadata, String)>,
}

impl Log<'_> {
    fn path(&self, name: &str) -> String {
        join(&self.folder, name)
    }

    fn corrupt(&self, file: &str, message: impl Into<String>) -> FormatError {
        FormatError::Corrupt {
            table: self.table.to_string(),
            file: file.to_string(),
            message: message.into(),
        }
    }

    fn unreachable(&self, file: &str, e: StorageError) -> FormatError {
        FormatError::Unreachable {
            table: self.table.to_string(),
            file: file.to_string(),
            message: e.to_string(),
        }
    }

    /// An object of the log, `None` when not there.
    fn object(&self, name: &str) -> Result<Option<Vec<u8>>, FormatError> {
        let file = self.path(name);
        match self.storage.read(&file) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(StorageError::NotFound) => Ok(None),
            Err(e) => Err(self.unreachable(&file, e)),
        }
    }

    /// A commit's actions, `None` when the commit is not there.
    fn commit(&self, version: u64) -> Result<Option<Vec<Action>>, FormatError> {
        let name = log::commit_name(version);
        let Some(bytes) = self.object(&name)? else {
            return Ok(None);
        };
        self.json_actions(&self.path(&name), &bytes).map(Some)
    }

    /// The actions of a file of JSON lines (a commit, a JSON v2
    /// checkpoint).
    fn json_actions(&self, file: &str, bytes: &[u8]) -> Result<Vec<Action>, FormatError> {
        let text = std::str::from_utf8(bytes).map_err(|e| self.corrupt(file, e.to_string()))?;
        let mut actions = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let action: Action = serde_json::from_str(line)
                .map_err(|e| self.corrupt(file, format!("line {}: {e}", i + 1)))?;
            actions.push(action);
        }
        Ok(actions)
    }

    /// A checkpoint's actions, per file read: its parts, or its one
    /// UUID-named file and the sidecar files it names ("V2 Spec": the
    /// top-level file holds the non-file actions and `sidecar` actions; a
    /// classic-named checkpoint may be a v2 one too). Read in parallel.
    fn read_checkpoint(&self, names: &[String]) -> Result<Vec<(String, Vec<Action>)>, FormatError> {
        let read = |name: &String| -> Result<(String, Vec<Action>), FormatError> {
            let file = self.path(name);
            let bytes = self
                .object(name)?
                .ok_or_else(|| self.unreachable(&file, StorageError::NotFound))?;
            let actions = match name.ends_with(".json") {
                true => self.json_actions(&file, &bytes)?,
                false => checkpoint::read_part(self.table, &file, bytes)?,
            };
            Ok((file, actions))
        };
        let mut files: Vec<(String, Vec<Action>)> =
            names.par_iter().map(read).collect::<Result<_, _>>()?;
        let mut sidecars = Vec::new();
        for (file, actions) in &files {
            for sidecar in actions.iter().filter_map(|a| a.sidecar.as_ref()) {
                sidecars.push(self.sidecar_name(file, &sidecar.path)?);
            }
        }
        let sidecars: Vec<(String, Vec<Action>)> =
            sidecars.par_iter().map(read).collect::<Result<_, _>>()?;
        files.extend(sidecars);
        Ok(files)
    }

    /// A sidecar's name under `_delta_log/`: "Sidecar File Information"
    /// says sidecars always live in `_delta_log/_sidecars/`, and that the
    /// path is best its file name alone; a longer path is read by that
    /// file name there.
    fn sidecar_name(&self, file: &str, path: &str) -> Result<String, FormatError> {
        let decoded = self.decoded(file, path)?;
        match decoded.rsplit('/').next().filter(|name| !name.is_empty()) {
            Some(name) => Ok(format!("_sidecars/{name}")),
            None => Err(self.corrupt(file, format!("sidecar path {path:?} names no file"))),
        }
    }

    /// `_last_checkpoint`, a hint: one that does not parse (written
    /// halfway, on a store without atomic overwrite) is as none, and the
    /// log is listed from its start.
    fn last_checkpoint(&self) -> Result<Option<LastCheckpoint>, FormatError> {
        let Some(bytes) = self.object("_last_checkpoint")? else {
            return Ok(None);
        };
        Ok(serde_json::from_slice(&bytes).ok())
    }

    /// Whether the log still ends at `version`, with nothing cleaned up
    /// past it: no checkpoint newer than it, and its commit still there
    /// when there is no checkpoint to say the log exists.
    fn still_at(&self, version: u64) -> Result<bool, FormatError> {
        match self.last_checkpoint()? {
            Some(last) => Ok(last.version <= version),
            None => Ok(self.object(&log::commit_name(version))?.is_some()),
        }
    }

    /// The log files listed after `after`.
    fn listing(&self, after: Option<&str>) -> Result<Vec<LogFile>, FormatError> {
        let listed = self
            .storage
            .list(&self.folder, after)
            .map_err(|e| self.unreachable(&self.folder, e))?;
        Ok(listed
            .iter()
            .filter_map(|l| LogFile::parse(&l.name))
            .collect())
    }

    /// Warm: the commits after `memory`; `None` when a cold read must be
    /// done instead.
    fn since(
        &self,
        layout: &TableLayout,
        memory: &TableMemory,
    ) -> Result<Option<TableMemory>, FormatError> {
        let mut sums = memory.partitions.clone();
        let mut version = memory.version;
        while let Some(actions) = self.commit(version + 1)? {
            version += 1;
            let file = self.path(&log::commit_name(version));
            let mut governing = Governing::default();
            for action in &actions {
                governing.take(action, &file);
            }
            governing.check(self.table)?;
            if let Some((metadata, _)) = &governing.metadata
                && (Some(&metadata.id) != memory.table_id.as_ref()
                    || !metadata.partition_columns.contains(&layout.column))
            {
                return Ok(None);
            }
            let fingerprinted = actions.iter().any(|a| {
                a.add.as_ref().is_some_and(|f| f.data_change)
                    || a.remove.as_ref().is_some_and(|f| f.data_change)
            });
            for action in &actions {
                if let Some(add) = &action.add {
                    let path = self.decoded(&file, &add.path)?;
                    let value = add.partition_values.get(&layout.column).cloned();
                    let day = self.day(layout, &path, value.as_ref())?;
                    let dv = add
                        .deletion_vector
                        .as_ref()
                        .map(log::DeletionVector::identity);
                    let identity = file_identity(&path, add.size, dv.as_deref());
                    sums.apply(day, &identity, Change::Added, fingerprinted);
                }
                if let Some(remove) = &action.remove {
                    let (Some(values), Some(size)) = (&remove.partition_values, remove.size) else {
                        return Ok(None);
                    };
                    let path = self.decoded(&file, &remove.path)?;
                    let day = self.day(layout, &path, values.get(&layout.column))?;
                    let dv = remove
                        .deletion_vector
                        .as_ref()
                        .map(log::DeletionVector::identity);
                    let identity = file_identity(&path, size, dv.as_deref());
                    sums.apply(day, &identity, Change::Removed, fingerprinted);
                }
            }
        }
        if version == memory.version && !self.still_at(version)? {
            return Ok(None);
        }
        Ok(sums.consistent().then(|| TableMemory {
            version,
            table_id: memory.table_id.clone(),
            layout: memory.layout.clone(),
            partitions: sums,
        }))
    }

    /// Cold: the checkpoint and the commits after it, replayed.
    fn cold(&self, layout: &TableLayout) -> Result<TableMemory, FormatError> {
        let plan = self.cold_plan()?;
        let Replayed {
            live,
            governing,
            version,
        } = self.replayed(layout, plan)?;
        governing.check(self.table)?;
        let Some((metadata, metadata_file)) = &governing.metadata else {
            return Err(self.corrupt(&self.folder, "no metaData action in the log"));
        };
        if !metadata.partition_columns.contains(&layout.column) {
            return Err(FormatError::NoPartitionColumn {
                table: self.table.to_string(),
                file: metadata_file.clone(),
                column: layout.column.clone(),
                detail: match metadata.partition_columns.as_slice() {
                    [] => " (the table is not partitioned)".into(),
                    columns => format!(" (its partition columns: {})", columns.join(", ")),
                },
            });
        }
        let mut sums = PartitionSums::default();
        for ((path, _), file) in &live {
            let day = self.day(layout, path, file.value.as_ref())?;
            let identity = file_identity(path, file.size as i64, file.deletion_vector.as_deref());
            sums.apply(day, &identity, Change::Added, true);
        }
        Ok(TableMemory {
            version,
            table_id: Some(metadata.id.clone()),
            layout: LayoutKey::of(layout),
            partitions: sums,
        })
    }

    /// What a cold read reads: the newest checkpoint `_last_checkpoint`
    /// leads to and the commits after it.
    fn cold_plan(&self) -> Result<Plan, FormatError> {
        let last = self.last_checkpoint()?;
        let after = last.as_ref().map(|c| format!("{:020}", c.version));
        let plan = match self.plan(&self.listing(after.as_deref())?) {
            Ok(Some(plan)) => Some(plan),
            // `_last_checkpoint` names a checkpoint that is not (or not
            // wholly) there: the whole log, as if it did not exist.
            _ if after.is_some() => self.plan(&self.listing(None)?)?,
            other => other?,
        };
        plan.ok_or_else(|| FormatError::Absent {
            table: self.table.to_string(),
            looked: format!("no commit in {}", self.folder),
        })
    }

    /// The live files after replaying `plan`, with the protocol and
    /// metadata in force and the version reached.
    fn replayed(&self, layout: &TableLayout, plan: Plan) -> Result<Replayed, FormatError> {
        let mut live: HashMap<(String, Option<String>), LiveFile> = HashMap::new();
        let mut governing = Governing::default();
        let mut version = 0;
        if let Some(checkpoint) = plan.checkpoint {
            version = checkpoint.version;
            for (file, actions) in self.read_checkpoint(&checkpoint.files)? {
                self.replay(layout, &file, &actions, &mut live, &mut governing)?;
            }
        }
        for commit in plan.commits {
            let file = self.path(&log::commit_name(commit));
            let actions = self
                .commit(commit)?
                .ok_or_else(|| self.unreachable(&file, StorageError::NotFound))?;
            self.replay(layout, &file, &actions, &mut live, &mut governing)?;
            version = commit;
        }
        Ok(Replayed {
            live,
            governing,
            version,
        })
    }

    /// Which checkpoint (version, parts) and commits a cold read reads: the
    /// newest complete checkpoint with every commit after it listed, or
    /// every commit from 0. `None` when the listing has neither.
    fn plan(&self, files: &[LogFile]) -> Result<Option<Plan>, FormatError> {
        let commits: BTreeSet<u64> = files
            .iter()
            .filter_map(|f| match f {
                LogFile::Commit(v) => Some(*v),
                _ => None,
            })
            .collect();
        let mut parts: BTreeMap<(u64, u32), BTreeSet<u32>> = BTreeMap::new();
        for file in files {
            if let LogFile::Checkpoint {
                version,
                part,
                parts: of,
            } = file
            {
                parts.entry((*version, *of)).or_default().insert(*part);
            }
        }
        let mut complete: Vec<Checkpoint> = parts
            .iter()
            .filter(|((_, of), found)| found.len() == *of as usize)
            .map(|((version, of), _)| Checkpoint {
                version: *version,
                files: log::checkpoint_names(*version, *of),
            })
            .collect();
        complete.extend(files.iter().filter_map(|f| match f {
            LogFile::UuidCheckpoint { version, name } => Some(Checkpoint {
                version: *version,
                files: vec![name.clone()],
            }),
            _ => None,
        }));
        complete.sort_by_key(|c| c.version);
        let newest = commits
            .last()
            .copied()
            .into_iter()
            .chain(complete.iter().map(|c| c.version))
            .max();
        let Some(latest) = newest else {
            return Ok(None);
        };
        let contiguous = |from: u64| (from..=latest).all(|v| commits.contains(&v));
        if let Some(at) = complete.iter().rposition(|c| contiguous(c.version + 1)) {
            let checkpoint = complete.swap_remove(at);
            return Ok(Some(Plan {
                commits: (checkpoint.version + 1..=latest).collect(),
                checkpoint: Some(checkpoint),
            }));
        }
        if contiguous(0) {
            return Ok(Some(Plan {
                checkpoint: None,
                commits: (0..=latest).collect(),
            }));
        }
        let missing = (0..=latest)
            .find(|v| !commits.contains(v))
            .unwrap_or(latest);
        Err(self.corrupt(
            &self.folder,
            format!("no checkpoint covers the log up to its missing commit {missing}"),
        ))
    }

    /// Reconciles one file's actions into the live files ("Action
    /// Reconciliation": the last action on a path and deletion vector wins).
    fn replay(
        &self,
        layout: &TableLayout,
        file: &str,
        actions: &[Action],
        live: &mut HashMap<(String, Option<String>), LiveFile>,
        governing: &mut Governing,
    ) -> Result<(), FormatError> {
        for action in actions {
            governing.take(action, file);
            if let Some(add) = &action.add {
                let path = self.decoded(file, &add.path)?;
                let size = u64::try_from(add.size)
                    .map_err(|_| self.corrupt(file, format!("{path}: size {}", add.size)))?;
                let dv = add.deletion_vector.as_ref();
                live.insert(
                    (path, dv.map(log::DeletionVector::unique_id)),
                    LiveFile {
                        value: add.partition_values.get(&layout.column).cloned(),
                        size,
                        deletion_vector: dv.map(log::DeletionVector::identity),
                    },
                );
            }
            if let Some(remove) = &action.remove {
                let path = self.decoded(file, &remove.path)?;
                let dv = remove.deletion_vector.as_ref();
                live.remove(&(path, dv.map(log::DeletionVector::unique_id)));
            }
        }
        Ok(())
    }

    fn decoded(&self, file: &str, path: &str) -> Result<String, FormatError> {
        log::decode_path(path)
            .ok_or_else(|| self.corrupt(file, format!("path {path:?} is not a valid URI")))
    }

    /// The day of a data file from its partition value for the column.
    fn day(
        &self,
        layout: &TableLayout,
        path: &str,
        value: Option<&Option<String>>,
    ) -> Result<Day, FormatError> {
        match value {
            None => Err(FormatError::NoPartitionColumn {
                table: self.table.to_string(),
                file: path.to_string(),
                column: layout.column.clone(),
                detail: " (no partition value for it)".into(),
            }),
            Some(value) => value
                .as_deref()
                .and_then(|text| layout.format.parse_day(text))
                .ok_or_else(|| FormatError::NotADay {
                    table: self.table.to_string(),
                    file: path.to_string(),
                    column: layout.column.clone(),
                    value: value
                        .as_ref()
                        .map_or("null".to_string(), |text| format!("{text:?}")),
                    format: layout.format.pattern().to_string(),
                }),
        }
    }
}

impl Governing {
    fn take(&mut self, action: &Action, file: &str) {
        if let Some(protocol) = &action.protocol {
            self.protocol = Some((protocol.clone(), file.to_string()));
        }
        if let Some(metadata) = &action.meta_data {
            self.metadata = Some((metadata.clone(), file.to_string()));
        }
    }

    /// Refuses what the reader cannot read, naming the file that set it.
    fn check(&self, table: &str) -> Result<(), FormatError> {
        if let Some((protocol, file)) = &self.protocol {
            log::check_readable(table, file, Some(protocol), None)?;
        }
        if let Some((metadata, file)) = &self.metadata {
            log::check_readable(table, file, None, Some(metadata))?;
        }
        Ok(())
    }
}

fn file_identity<'a>(path: &'a str, size: i64, dv: Option<&'a str>) -> FileIdentity<'a> {
    FileIdentity {
        path,
        size: size.max(0) as u64,
        records: None,
        content: Content::Data,
        deletion_vector: dv,
    }
}

#[cfg(test)]
mod tests;
