//! The `sqlite` probe: the embedded warehouse's partition catalog, read
//! through one connection per namespace and batch of tables.

use std::collections::BTreeMap;

use super::{Partitions, Probe, ProbeError};
use crate::hash::Hash;
use crate::partition::Day;

/// The fewest tables one connection reads when a namespace is split
/// between threads.
const MIN_BATCH: usize = 256;

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
    fn list(&self, table: &str) -> Result<Partitions, ProbeError> {
        let mut listed = self.list_all(vec![table.to_string()])?;
        Ok(listed.pop().map(|(_, p)| p).unwrap_or_default())
    }

    /// One connection per namespace and batch of tables, not per table.
    fn list_all(&self, tables: Vec<String>) -> Result<Vec<(String, Partitions)>, ProbeError> {
        use rayon::prelude::*;
        let mut by_namespace: BTreeMap<String, Vec<(&str, String)>> = BTreeMap::new();
        for table in &tables {
            let name = crate::warehouse::TableName::parse(table)
                .map_err(|e| self.listing_error(table, e.to_string()))?;
            by_namespace
                .entry(name.namespace)
                .or_default()
                .push((table.as_str(), name.table));
        }
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
