//! The embedded warehouse as `run` will see it once it has imported the
//! `[warehouse.seed]` files that changed: those tables are read from a
//! scratch import of their files (`warehouse::seed_preview`), the others
//! from the warehouse itself. What `plan` and `run -n` probe, so they list
//! the work `run` does while writing nothing.

use std::collections::HashSet;

use super::{Partitions, Probe, ProbeError, SqliteProbe};
use crate::partition::Day;

pub struct Seeded {
    pub inner: Box<dyn Probe>,
    /// The scratch warehouse with the changed seed files imported.
    pub scratch: SqliteProbe,
    /// Its tables, as `namespace.table`.
    pub tables: HashSet<String>,
    /// Kept until the probe is dropped: the scratch warehouse's folder.
    pub _folder: tempfile::TempDir,
}

impl Seeded {
    fn seeded(&self, table: &str) -> bool {
        crate::warehouse::TableName::parse(table)
            .is_ok_and(|name| self.tables.contains(&name.to_string()))
    }

    fn for_table(&self, table: &str) -> &dyn Probe {
        if self.seeded(table) {
            &self.scratch
        } else {
            self.inner.as_ref()
        }
    }
}

impl Probe for Seeded {
    fn list(&self, table: &str) -> Result<Partitions, ProbeError> {
        self.for_table(table).list(table)
    }

    fn list_days(&self, table: &str, days: &[Day]) -> Result<Partitions, ProbeError> {
        self.for_table(table).list_days(table, days)
    }

    /// The inner probe's versions of the tables not seeded: the scratch
    /// warehouse is made anew by each command, its versions with it.
    fn versions(&self, tables: &[String]) -> Result<super::Versions, ProbeError> {
        let rest: Vec<String> = tables.iter().filter(|t| !self.seeded(t)).cloned().collect();
        self.inner.versions(&rest)
    }

    fn list_all(&self, tables: Vec<String>) -> Result<Vec<(String, Partitions)>, ProbeError> {
        let (seeded, rest): (Vec<String>, Vec<String>) =
            tables.into_iter().partition(|t| self.seeded(t));
        let mut out = self.inner.list_all(rest)?;
        out.extend(self.scratch.list_all(seeded)?);
        Ok(out)
    }
}
