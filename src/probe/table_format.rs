//! The `iceberg` and `delta` probes: each table read from its own
//! metadata (`formats`), never by listing its data files. Where a table is
//! (`locate`), through which storage, and what the last read remembered
//! (`memory`) are shared; what differs per format is in `iceberg.rs` and
//! `delta.rs`.
//!
//! A table is `ROOT/<ns>.db/<table>` (a table with no namespace is in
//! `default`, as Hive and Spark place them), unless `warehouse.tables`
//! names its location, or an Iceberg catalog names its metadata file.

use std::collections::{BTreeMap, HashMap};

use rayon::prelude::*;

use super::memory::Memories;
use super::progress::ColdReads;
use super::{Layouts, Partitions, Probe, ProbeError};
use crate::config::TableRef;
use crate::formats::FormatError;
use crate::formats::storage::Storage;

/// How one format reads a table, given where it is and what the last read
/// of it remembered (JSON); returns the partitions and what to remember.
pub trait TableReader: Sync {
    /// What locates tables, read once per listing: a catalog's pointers
    /// move with every commit, so they are never kept longer.
    type Catalog: Sync;

    /// The name memories are kept under: `iceberg` or `delta`.
    fn kind(&self) -> &'static str;

    /// Whether a table by path may also be at `ROOT/<ns>/<table>`.
    fn namespace_folders(&self) -> bool {
        false
    }

    fn catalog(&self) -> Result<Self::Catalog, FormatError>;

    /// Where `table` (without sub-partition) is; `None` when a catalog
    /// does not know it (absent). `default` is its location by path.
    fn locate(
        &self,
        catalog: &Self::Catalog,
        table: &str,
        default: String,
    ) -> Result<Option<Located>, FormatError>;

    /// What a read remembers for the next (`formats::*::TableMemory`).
    type Memory: serde::Serialize + serde::de::DeserializeOwned;

    fn read(
        &self,
        storage: &dyn Storage,
        located: &Located,
        layout: &super::TableLayout,
        memory: Option<&Self::Memory>,
    ) -> Result<(Partitions, Self::Memory), FormatError>;
}

/// A read table's partitions, and what it remembers (key and JSON) when
/// that changed.
type Read = (Partitions, Option<(String, String)>);

/// A table found: what the format reads (a location or a metadata file)
/// and the stable name its memory is kept under (a metadata file changes
/// with every commit; the table's identity does not).
pub struct Located {
    pub key: String,
    pub target: String,
}

pub struct TableFormatProbe<R: TableReader> {
    pub reader: R,
    pub storage: Box<dyn Storage>,
    /// `ROOT`, a local path or a URL, without a trailing slash.
    pub root: String,
    pub tables: BTreeMap<String, String>,
    pub layouts: Layouts,
    pub memories: Memories,
}

impl<R: TableReader> TableFormatProbe<R> {
    /// Where a table may be by path: `ROOT/<ns>.db/<table>` (Hive's and
    /// Spark's session catalog's layout), and for formats that allow it
    /// `ROOT/<ns>/<table>` (Iceberg's Hadoop catalog, and pyiceberg's SQL
    /// catalog, place tables so), unless `warehouse.tables` names it.
    fn candidates(&self, table: &str) -> Vec<String> {
        if let Some(location) = self.tables.get(table) {
            return vec![location.clone()];
        }
        let (ns, name) = table.split_once('.').unwrap_or(("default", table));
        let root = self.root.trim_end_matches('/');
        let mut out = vec![format!("{root}/{ns}.db/{name}")];
        if self.reader.namespace_folders() {
            out.push(format!("{root}/{ns}/{name}"));
        }
        out
    }

    /// Whether a read of `table` has a memory to start from (by path, or
    /// by a catalog's name).
    fn remembers(&self, table: &str, remembered: &HashMap<String, String>) -> bool {
        let base = TableRef::split(table).0;
        remembered.contains_key(&format!("catalog:{base}"))
            || (self.candidates(base).iter()).any(|c| remembered.contains_key(c))
    }

    /// One table, with what to remember when that changed.
    fn read_one(
        &self,
        catalog: &R::Catalog,
        table: &str,
        remembered: &HashMap<String, String>,
    ) -> Result<Read, ProbeError> {
        let base = TableRef::split(table).0;
        for default in self.candidates(base) {
            let located = match self.reader.locate(catalog, base, default) {
                Ok(Some(located)) => located,
                Ok(None) => return Ok((Partitions::new(), None)),
                Err(e) => return Err(ProbeError::Format(e)),
            };
            let memory = remembered.get(&located.key).map(String::as_str);
            // A memory that does not parse (another version's) is a cold read.
            let parsed: Option<R::Memory> = memory.and_then(|m| serde_json::from_str(m).ok());
            let layout = self.layouts.of(table);
            match self
                .reader
                .read(self.storage.as_ref(), &located, layout, parsed.as_ref())
            {
                Ok((partitions, next)) => {
                    let next = serde_json::to_string(&next).unwrap_or_default();
                    let changed = memory != Some(next.as_str());
                    return Ok((partitions, changed.then_some((located.key, next))));
                }
                Err(e) if e.is_absent() => continue,
                Err(e) => return Err(ProbeError::Format(e)),
            }
        }
        Ok((Partitions::new(), None))
    }
}

impl<R: TableReader> Probe for TableFormatProbe<R> {
    fn list(&self, table: &str) -> Result<Partitions, ProbeError> {
        let mut listed = self.list_all(vec![table.to_string()])?;
        Ok(listed.pop().map(|(_, p)| p).unwrap_or_default())
    }

    /// Every table in parallel, then what they remember in one write.
    fn list_all(&self, tables: Vec<String>) -> Result<Vec<(String, Partitions)>, ProbeError> {
        let remembered = self.memories.load(self.reader.kind());
        let catalog = self.reader.catalog().map_err(ProbeError::Format)?;
        let cold = tables
            .iter()
            .filter(|t| !self.remembers(t, &remembered))
            .count();
        let progress = ColdReads::new(self.reader.kind(), tables.len(), cold);
        let read: Vec<(String, Read)> = tables
            .into_par_iter()
            .map(|table| {
                let read = self.read_one(&catalog, &table, &remembered)?;
                progress.read();
                Ok((table, read))
            })
            .collect::<Result<_, ProbeError>>()?;
        drop(progress);
        let mut memories: Vec<(String, String)> =
            read.iter().filter_map(|(_, (_, m))| m.clone()).collect();
        memories.sort();
        memories.dedup_by(|a, b| a.0 == b.0);
        if let Err(e) = self.memories.store(self.reader.kind(), &memories) {
            errln!("note: cannot remember table reads ({e}); the next plan reads them again");
        }
        Ok(read.into_iter().map(|(t, (p, _))| (t, p)).collect())
    }
}
