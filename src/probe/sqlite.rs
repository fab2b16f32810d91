//! The `sqlite` probe: the embedded warehouse's partition catalog, read
//! through one connection per namespace and batch of tables.

use std::collections::BTreeMap;

use super::{Partitions, Probe, ProbeError};
use crate::hash::Hash;
use crate::partition::Day;

/// The fewest tables one connection reads when a namespace is split
/// between threads.
const MIN_BATCH: usize = 256;

/// Tables as asked for, by namespace, each with its name there.
type ByNamespace<'t> = BTreeMap<String, Vec<(&'t str, String)>>;

/// The embedded warehouse: its catalog knows each table's partition column,
/// and keeps every partition as a `yyyy-MM-dd` day (the local engine
/// refuses jobs that would need another layout:
/// `exec::partitioning::Partitioning::refuse_for_local`).
pub struct SqliteProbe {
    pub warehouse: crate::warehouse::Warehouse,
}

impl SqliteProbe {
    fn listing_error(&self, table: &str, message: String) -> ProbeError {
        ProbeError::Listing {
            table: table.to_string(),
            path: self.warehouse.root.display().to_string(),
            message,
        }
    }

    /// Tables by namespace, each with its name there.
    fn by_namespace<'t>(&self, tables: &'t [String]) -> Result<ByNamespace<'t>, ProbeError> {
        let mut by_namespace = ByNamespace::new();
        for table in tables {
            let name = crate::warehouse::TableName::parse(table)
                .map_err(|e| self.listing_error(table, e.to_string()))?;
            by_namespace
                .entry(name.namespace)
                .or_default()
                .push((table.as_str(), name.table));
        }
        Ok(by_namespace)
    }

    /// Tables of one namespace, read through one connection.
    fn list_in(
        &self,
        namespace: &str,
        tables: &[(&str, String)],
    ) -> Result<Vec<(String, Partitions)>, ProbeError> {
        let names: Vec<&str> = tables.iter().map(|(_, name)| name.as_str()).collect();
        let mut out: Vec<Partitions> = vec![Partitions::new(); tables.len()];
        self.warehouse
            .read_catalogs(namespace, &names, |i, partition, fingerprint| {
                let table = tables[i].0;
                let day = Day::parse(partition).ok_or_else(|| {
                    self.listing_error(
                        table,
                        format!("catalog partition {partition:?} is not a date"),
                    )
                })?;
                let fingerprint = Hash::from_hex(fingerprint).ok_or_else(|| {
                    self.listing_error(
                        table,
                        format!("catalog fingerprint of {partition} is not a hash"),
                    )
                })?;
                out[i].insert(day, fingerprint);
                Ok(())
            })
            .map_err(|e| match e {
                crate::warehouse::Catalog::Read(e) => {
                    self.listing_error(tables.first().map_or("", |t| t.0), e.to_string())
                }
                crate::warehouse::Catalog::Entry(e) => e,
            })?;
        Ok(tables
            .iter()
            .map(|(table, _)| table.to_string())
            .zip(out)
            .collect())
    }
}

impl Probe for SqliteProbe {
    /// Per table, a digest of its namespace file's epoch and its version
    /// in the catalog (`Warehouse::table_versions`): one read per namespace.
    fn versions(&self, tables: &[String]) -> Result<super::Versions, ProbeError> {
        use crate::warehouse::Versions;
        let by_namespace = self.by_namespace(tables)?;
        let mut out = super::Versions::new();
        for (namespace, tables) in by_namespace {
            let kept = self
                .warehouse
                .table_versions(&namespace)
                .map_err(|e| self.listing_error(tables[0].0, e.to_string()))?;
            for (table, name) in tables {
                let version = match &kept {
                    Versions::NoFile => Hash::of(b"no namespace file"),
                    Versions::Unknown => continue,
                    Versions::Kept { epoch, tables } => {
                        let mut hasher = blake3::Hasher::new();
                        hasher.update(b"table version");
                        hasher.update(epoch);
                        match tables.get(&name) {
                            Some(v) => hasher.update(&v.to_le_bytes()),
                            None => hasher.update(b"unchanged since the epoch"),
                        };
                        Hash(*hasher.finalize().as_bytes())
                    }
                };
                out.insert(table.to_string(), version);
            }
        }
        Ok(out)
    }

    fn list(&self, table: &str) -> Result<Partitions, ProbeError> {
        let mut listed = self.list_all(vec![table.to_string()])?;
        Ok(listed.pop().map(|(_, p)| p).unwrap_or_default())
    }

    /// One connection per namespace and batch of tables, not per table.
    fn list_all(&self, tables: Vec<String>) -> Result<Vec<(String, Partitions)>, ProbeError> {
        use rayon::prelude::*;
        let by_namespace = self.by_namespace(&tables)?;
        // Each connection parses its namespace's whole schema (every table
        // of a user's warehouse: thousands in one team namespace), so a
        // namespace is read through as few connections as keep the threads
        // busy, not one per fixed-size batch.
        let threads = rayon::current_num_threads().max(1);
        let batches: Vec<(&str, &[(&str, String)])> = by_namespace
            .iter()
            .flat_map(|(ns, tables)| {
                let size = tables.len().div_ceil(threads).max(MIN_BATCH);
                tables.chunks(size).map(move |chunk| (ns.as_str(), chunk))
            })
            .collect();
        let listed: Vec<Vec<(String, Partitions)>> = batches
            .into_par_iter()
            .map(|(ns, chunk)| self.list_in(ns, chunk))
            .collect::<Result<_, _>>()?;
        Ok(listed.into_iter().flatten().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::warehouse::Warehouse;

    /// Any writer's insert, update or delete of a table's partitions gives
    /// the table another version, and no other table; a namespace file
    /// made again gives even its unchanged tables others; a file that
    /// keeps no versions gives none.
    #[test]
    fn a_tables_version_changes_with_any_change_of_its_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let probe = SqliteProbe {
            warehouse: Warehouse::new(dir.path().to_path_buf(), "ds"),
        };
        let tables = ["ns.a".to_string(), "ns.b".to_string()];
        let versions = || probe.versions(&tables).unwrap();
        let none = versions();
        assert_eq!(none.len(), 2, "a namespace without a file has versions");
        assert_eq!(none["ns.a"], none["ns.b"]);
        assert_eq!(versions(), none, "and they stay");

        let conn = probe.warehouse.open_write("ns").unwrap();
        let made = versions();
        assert_ne!(made["ns.a"], none["ns.a"], "a file made");
        let mut seen = vec![made.clone()];
        let mut changes = |sql: &str, table: &str| {
            let before = versions();
            conn.execute_batch(sql).unwrap();
            let after = versions();
            assert_ne!(after[table], before[table], "{sql}");
            for other in tables.iter().filter(|t| **t != table) {
                assert_eq!(after[other], before[other], "{sql} changes only {table}");
            }
            assert!(!seen.contains(&after), "{sql}: a version seen before");
            seen.push(after);
        };
        changes(
            "INSERT INTO _partitions VALUES ('a', '2025-01-01', 1, 'f1', 0)",
            "ns.a",
        );
        changes(
            "INSERT OR REPLACE INTO _partitions VALUES ('a', '2025-01-01', 1, 'f2', 0)",
            "ns.a",
        );
        changes(
            "UPDATE _partitions SET fingerprint = 'f3' WHERE tbl = 'a'",
            "ns.a",
        );
        changes(
            "INSERT INTO _partitions VALUES ('b', '2025-01-01', 1, 'f1', 0)",
            "ns.b",
        );
        changes("DELETE FROM _partitions WHERE tbl = 'b'", "ns.b");
        // Writing the same fingerprint again is a change too: the version
        // tells that something was written, not what.
        changes(
            "UPDATE _partitions SET fingerprint = 'f3' WHERE tbl = 'a'",
            "ns.a",
        );
        let before = versions();
        conn.execute_batch("UPDATE _tables SET partition_column = 'x'")
            .unwrap();
        assert_eq!(versions(), before, "only partitions count");
        drop(conn);

        // The file made again: even a table without partitions differs.
        let file = probe.warehouse.namespace_file("ns");
        let remove = || {
            for suffix in ["", "-wal", "-shm"] {
                let path = format!("{}{suffix}", file.display());
                let _ = std::fs::remove_file(path);
            }
        };
        remove();
        drop(probe.warehouse.open_write("ns").unwrap());
        assert_ne!(versions()["ns.b"], made["ns.b"]);

        // A file written before versions were kept has none.
        remove();
        rusqlite::Connection::open(&file)
            .unwrap()
            .execute_batch(
                "CREATE TABLE _partitions (tbl TEXT, partition TEXT, row_count INTEGER,
                 fingerprint TEXT, written_at INTEGER)",
            )
            .unwrap();
        assert!(versions().is_empty());
    }
}
