//! Built targets, and how the planner reads them back: per node its
//! recorded targets, failures, forced marks and memo; per target its slice
//! and what it read.

use std::collections::{HashMap, HashSet};

use super::db::{DbResult, Row, args};
use super::{Memo, NodeKey, StateStore, StoreError, day_column, day_from_column};
use crate::hash::Hash;
use crate::partition::Day;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub key: Hash,
    pub slice: Hash,
    pub inputs: Hash,
    /// The output fingerprint; for steps with no probeable output, the key.
    pub output: Hash,
    pub seq: i64,
}

/// Everything the planner reads from the state, per node.
#[derive(Default)]
pub struct NodeState {
    pub built: HashMap<i64, Recorded>,
    pub failed: HashMap<i64, i64>,
    pub forced: Vec<i64>,
    /// The memo of the targets the node's last plan found all fresh, up to
    /// a day.
    pub memo: Option<Memo>,
}

/// One target to record as built.
pub struct Built<'a> {
    pub node: &'a NodeKey,
    pub day: Option<Day>,
    pub key: Hash,
    pub slice: Hash,
    pub slice_json: &'a str,
    pub inputs: Hash,
    pub output: Hash,
    /// The key document's inputs, as JSON: per input read, table, range,
    /// partitions present and their digest.
    pub inputs_doc: &'a str,
    /// The output holds one version (a KV dataset): recording this day
    /// forgets the node's other days, which it overwrote.
    pub sole: bool,
    /// The table the node writes, if it writes one: kept with the node
    /// (`nodes.output`), so `gc` knows it once no config makes the node.
    pub output_table: Option<&'a str>,
}

impl StateStore {
    /// The nodes with at least one target recorded as built: found by
    /// the targets' primary key, one seek per node, without loading them.
    pub fn built_nodes(&self) -> Result<HashSet<NodeKey>, StoreError> {
        let ids = self.node_keys()?;
        let built = self.select(
            "SELECT id FROM nodes WHERE EXISTS (SELECT 1 FROM targets WHERE targets.node = nodes.id)",
            &[],
            |row| row.int(0),
        )?;
        Ok(built
            .into_iter()
            .filter_map(|id| ids.get(&id).cloned())
            .collect())
    }

    pub fn load(&self) -> Result<HashMap<NodeKey, NodeState>, StoreError> {
        self.load_with(true)
    }

    /// Every node's failures, forced partitions and memo, without its
    /// recorded targets: `load_targets` reads those per node, as needed.
    pub fn load_lazily(&self) -> Result<HashMap<NodeKey, NodeState>, StoreError> {
        self.load_with(false)
    }

    /// One node's recorded targets in a range of day columns
    /// (`NO_PARTITION..=i64::MAX`: all of them), by day column.
    pub fn load_targets(
        &self,
        node: &NodeKey,
        days: std::ops::RangeInclusive<i64>,
    ) -> Result<HashMap<i64, Recorded>, StoreError> {
        let mut built = HashMap::new();
        super::retry::reading(&self.db, &self.location, |db| {
            db.for_each(
                "SELECT day, key, slice, inputs, output, seq FROM targets
                 WHERE node = (SELECT id FROM nodes WHERE step = ?1 AND config = ?2 AND part = ?3)
                   AND day >= ?4 AND day <= ?5",
                args![
                    node.step.name(),
                    &node.config,
                    &node.part,
                    *days.start(),
                    *days.end()
                ],
                |row| {
                    built.insert(row.int(0)?, recorded(row, 1)?);
                    Ok(())
                },
            )
        })
        .map_err(|e| self.err(e))?;
        Ok(built)
    }

    fn load_with(&self, targets: bool) -> Result<HashMap<NodeKey, NodeState>, StoreError> {
        let ids = self.node_keys()?;

        let mut by_id: HashMap<i64, NodeState> = HashMap::new();
        if targets {
            self.db
                .for_each(
                    "SELECT node, day, key, slice, inputs, output, seq FROM targets",
                    &[],
                    |row| {
                        let (node, day) = (row.int(0)?, row.int(1)?);
                        let recorded = recorded(row, 2)?;
                        by_id.entry(node).or_default().built.insert(day, recorded);
                        Ok(())
                    },
                )
                .map_err(|e| self.err(e))?;
        }

        let failures = self.select("SELECT node, day, run FROM failures", &[], |row| {
            Ok((row.int(0)?, row.int(1)?, row.opt_int(2)?))
        })?;
        for (node, day, run) in failures {
            by_id
                .entry(node)
                .or_default()
                .failed
                .insert(day, run.unwrap_or(0));
        }
        for (node, day) in self.select("SELECT node, day FROM forced", &[], node_and_day)? {
            by_id.entry(node).or_default().forced.push(day);
        }
        for (node, memo) in self.load_memos()? {
            by_id.entry(node).or_default().memo = memo;
        }
        Ok(by_id
            .into_iter()
            .filter_map(|(id, state)| Some((ids.get(&id)?.clone(), state)))
            .collect())
    }

    /// Every built target's partition, per node: what `diff --state` counts.
    pub fn built_days(&self) -> Result<HashMap<NodeKey, Vec<Option<Day>>>, StoreError> {
        let ids = self.node_keys()?;
        let rows = self.select(
            "SELECT node, day FROM targets ORDER BY node, day",
            &[],
            node_and_day,
        )?;
        let mut out: HashMap<NodeKey, Vec<Option<Day>>> = HashMap::new();
        for (node, day) in rows {
            if let Some(key) = ids.get(&node) {
                out.entry(key.clone())
                    .or_default()
                    .push(day_from_column(day));
            }
        }
        Ok(out)
    }

    pub fn slice_json(&self, hash: &Hash) -> Result<Option<String>, StoreError> {
        super::retry::reading(&self.db, &self.location, |db| {
            db.query_opt(
                "SELECT json FROM slices WHERE hash = ?1",
                args![&hash.0[..]],
                |row| row.text(0),
            )
        })
        .map_err(|e| self.err(e))
    }

    /// The fingerprint each partition of `table` in `[from, to]` had as read
    /// by the build recorded at `seq`: the newest version at or before it.
    pub fn seen_at(
        &self,
        table: &str,
        from: Day,
        to: Day,
        seq: i64,
    ) -> Result<HashMap<Day, Hash>, StoreError> {
        let rows = self.select(
            "SELECT day, fingerprint FROM inputs_seen s
             WHERE tbl = ?1 AND day BETWEEN ?2 AND ?3 AND seq = (
                SELECT MAX(seq) FROM inputs_seen t WHERE t.tbl = s.tbl AND t.day = s.day AND t.seq <= ?4)",
            args![table, from.0, to.0, seq],
            day_and_fingerprint,
        )?;
        Ok(rows.into_iter().collect())
    }

    /// The input ranges a recorded target read: (table, from, to).
    pub fn ranges_read(
        &self,
        node: &NodeKey,
        day: Option<Day>,
    ) -> Result<Vec<(String, Day, Day)>, StoreError> {
        // One text column of a target's row, found by its node's key.
        let text = |sql: &str| -> Result<Option<String>, StoreError> {
            let text: Option<Option<String>> = self
                .db
                .query_opt(
                    sql,
                    args![node.step.name(), &node.config, &node.part, day_column(day)],
                    |row| row.opt_text(0),
                )
                .map_err(|e| self.err(e))?;
            Ok(text.flatten())
        };
        // A reader of a state before schema 4 (readers never migrate).
        if self.version()? < 4 {
            let ranges = text(
                "SELECT r.ranges FROM target_reads r JOIN nodes n ON n.id = r.node
                 WHERE n.step = ?1 AND n.config = ?2 AND n.part = ?3 AND r.day = ?4",
            )?;
            return Ok(ranges
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default());
        }
        #[derive(serde::Deserialize)]
        struct Read {
            table: String,
            from: Day,
            to: Day,
        }
        let doc = text(
            "SELECT t.inputs_doc FROM targets t JOIN nodes n ON n.id = t.node
             WHERE n.step = ?1 AND n.config = ?2 AND n.part = ?3 AND t.day = ?4",
        )?;
        let reads: Vec<Read> = doc
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        Ok(reads.into_iter().map(|r| (r.table, r.from, r.to)).collect())
    }
}

fn node_and_day(row: &Row) -> DbResult<(i64, i64)> {
    Ok((row.int(0)?, row.int(1)?))
}

pub(super) fn day_and_fingerprint(row: &Row) -> DbResult<(Day, Hash)> {
    Ok((
        Day(row.int(0)? as i32),
        Hash::from_slice(row.blob(1)?).unwrap_or_default(),
    ))
}

/// A `Recorded` from key, slice, inputs, output and seq at `first`.
fn recorded(row: &Row, first: usize) -> DbResult<Recorded> {
    let blob = |i: usize| -> DbResult<Hash> {
        Ok(Hash::from_slice(row.blob(first + i)?).unwrap_or_default())
    };
    Ok(Recorded {
        key: blob(0)?,
        slice: blob(1)?,
        inputs: blob(2)?,
        output: blob(3)?,
        seq: row.int(first + 4)?,
    })
}
