//! How nodes and days are keyed in the tables: a node by an integer id
//! (`nodes`), a day by an integer column.

use std::collections::HashMap;

use super::db::{Db, DbResult, args};
use super::{StateStore, StoreError};
use crate::partition::Day;
use crate::step::Step;

/// How unpartitioned targets are stored in integer day columns.
pub const NO_PARTITION: i64 = i64::MIN;

/// Identifies a node across runs, independent of graph indices.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeKey {
    pub step: Step,
    pub config: String,
    pub part: String,
}

impl NodeKey {
    /// `step:config[#part]`, as `Node::label`.
    pub fn label(&self) -> String {
        crate::step::node_label(
            self.step,
            &self.config,
            Some(self.part.as_str()).filter(|p| !p.is_empty()),
        )
    }

    pub fn new(step: Step, config: &str, part: Option<&str>) -> NodeKey {
        NodeKey {
            step,
            config: config.to_string(),
            part: part.unwrap_or_default().to_string(),
        }
    }
}

pub fn day_column(day: Option<Day>) -> i64 {
    day.map_or(NO_PARTITION, |d| i64::from(d.0))
}

pub fn day_from_column(day: i64) -> Option<Day> {
    (day != NO_PARTITION).then_some(Day(day as i32))
}

impl StateStore {
    /// Node ids to keys. A step this binary does not know (from a newer
    /// version) is left out, and so are its rows in other tables.
    pub(super) fn node_keys(&self) -> Result<HashMap<i64, NodeKey>, StoreError> {
        let rows = self.select("SELECT id, step, config, part FROM nodes", &[], |row| {
            Ok((row.int(0)?, row.text(1)?, row.text(2)?, row.text(3)?))
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, step, config, part)| {
                let step = Step::parse(&step)?;
                Some((id, NodeKey { step, config, part }))
            })
            .collect())
    }

    /// The node's id, inserting the node when new; cached, since ids never
    /// change once written.
    pub(super) fn node_id(
        cache: &mut HashMap<NodeKey, i64>,
        db: &Db,
        key: &NodeKey,
    ) -> DbResult<i64> {
        if let Some(id) = cache.get(key) {
            return Ok(*id);
        }
        let id = Self::insert_node(db, key)?;
        cache.insert(key.clone(), id);
        Ok(id)
    }

    fn insert_node(db: &Db, key: &NodeKey) -> DbResult<i64> {
        let key_args = args![key.step.name(), &key.config, &key.part];
        db.execute(
            "INSERT INTO nodes (step, config, part) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            key_args,
        )?;
        db.query_opt(
            "SELECT id FROM nodes WHERE step = ?1 AND config = ?2 AND part = ?3",
            key_args,
            |row| row.int(0),
        )?
        .ok_or_else(|| super::db::DbError::Other(format!("node {} not stored", key.label())))
    }
}
