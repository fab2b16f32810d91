//! Every node the state holds rows for, with what it wrote and when: what
//! `gc` compares with the graph to find the nodes no config makes any more
//! (a config renamed, a join part removed), and forgetting them.

use super::db::args;
use super::{NodeKey, StateStore, StoreError};

/// A node with rows in the state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedNode {
    pub key: NodeKey,
    /// The table it wrote, as its last recorded build named it; `None` for
    /// nodes that write none, and for those recorded before schema 6.
    pub output: Option<String>,
    /// Its rows: targets, failures, forced marks and memo.
    pub rows: usize,
    /// When its last target was recorded (seconds since the epoch).
    pub last_built: Option<i64>,
}

impl StateStore {
    /// The nodes with at least one target, failure, forced mark or memo,
    /// sorted by key. Steps this binary does not know are left out.
    pub fn recorded_nodes(&self) -> Result<Vec<RecordedNode>, StoreError> {
        let keys = self.node_keys()?;
        let output = if self.version()? >= 6 {
            "output"
        } else {
            "NULL"
        };
        let rows = self.select(
            &format!(
                "SELECT id, {output},
                    (SELECT count(*) FROM targets WHERE node = nodes.id)
                    + (SELECT count(*) FROM failures WHERE node = nodes.id)
                    + (SELECT count(*) FROM forced WHERE node = nodes.id)
                    + (SELECT count(*) FROM node_memos WHERE node = nodes.id),
                    (SELECT max(built_at) FROM targets WHERE node = nodes.id)
                 FROM nodes"
            ),
            &[],
            |row| Ok((row.int(0)?, row.opt_text(1)?, row.int(2)?, row.opt_int(3)?)),
        )?;
        let mut nodes: Vec<RecordedNode> = rows
            .into_iter()
            .filter(|(_, _, rows, _)| *rows > 0)
            .filter_map(|(id, output, rows, last_built)| {
                Some(RecordedNode {
                    key: keys.get(&id)?.clone(),
                    output,
                    rows: rows as usize,
                    last_built,
                })
            })
            .collect();
        nodes.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(nodes)
    }

    /// Deletes the nodes' targets, failures, forced marks and memos in one
    /// transaction; the nodes and their attempts stay, so `history` still
    /// shows what ran. Returns how many rows went.
    pub fn forget_nodes(&mut self, keys: &[NodeKey]) -> Result<usize, StoreError> {
        let removed =
            super::retry::retrying(&self.db, &self.location, &mut self.node_ids, |db, _| {
                let mut removed = 0;
                for key in keys {
                    let id = db.query_opt(
                        "SELECT id FROM nodes WHERE step = ?1 AND config = ?2 AND part = ?3",
                        args![key.step.name(), &key.config, &key.part],
                        |row| row.int(0),
                    )?;
                    let Some(id) = id else { continue };
                    for table in ["targets", "failures", "forced", "node_memos"] {
                        removed +=
                            db.execute(&format!("DELETE FROM {table} WHERE node = ?1"), args![id])?;
                    }
                }
                Ok(removed)
            });
        removed.map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Hash;
    use crate::partition::Day;
    use crate::step::Step;
    use crate::store::Built;

    #[test]
    fn nodes_keep_their_output_table_and_forgetting_keeps_their_history() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(&dir.path().join("s.db")).unwrap();
        let node = NodeKey::new(Step::GroupByBackfill, "t.g", None);
        let built = Built {
            node: &node,
            day: Some(Day(10)),
            key: Hash::of(b"k"),
            slice: Hash::of(b"slice"),
            slice_json: "{}",
            inputs: Hash::of(b"in"),
            output: Hash::of(b"out"),
            inputs_doc: "[]",
            sole: false,
            output_table: Some("ns.t_g"),
        };
        store.record_built(&[built], &[]).unwrap();
        let recorded = store.recorded_nodes().unwrap();
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0].key, node);
        assert_eq!(recorded[0].output.as_deref(), Some("ns.t_g"));
        assert_eq!(recorded[0].rows, 1);
        assert!(recorded[0].last_built.is_some());

        assert_eq!(store.forget_nodes(std::slice::from_ref(&node)).unwrap(), 1);
        assert!(store.recorded_nodes().unwrap().is_empty());
        assert!(
            store
                .load()
                .unwrap()
                .get(&node)
                .is_none_or(|s| s.built.is_empty())
        );
    }

    /// Schema 6 adds `nodes.output`: a state of schema 5 migrates, and its
    /// nodes have no output table until they are built again.
    #[test]
    fn a_schema_5_state_migrates_to_nodes_with_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        drop(StateStore::open(&path).unwrap());
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(
                "ALTER TABLE nodes DROP COLUMN output;
                 ALTER TABLE node_memos DROP COLUMN versions;
                 DROP TABLE claims;
                 INSERT INTO nodes (step, config, part) VALUES ('group-by-backfill', 't.g', '');
                 INSERT INTO targets (node, day, key, slice, inputs, output, seq, built_at)
                     VALUES (1, 10, x'00', x'00', x'00', x'00', 1, 100);
                 PRAGMA user_version = 5;",
            )
            .unwrap();
        }
        let old = StateStore::open_read(&path).unwrap().unwrap();
        assert_eq!(
            old.recorded_nodes().unwrap()[0].output,
            None,
            "read as it is"
        );
        drop(old);
        let store = StateStore::open(&path).unwrap();
        assert_eq!(store.version().unwrap(), crate::store::SCHEMA_VERSION);
        let recorded = store.recorded_nodes().unwrap();
        assert_eq!(recorded[0].output, None);
        assert_eq!(recorded[0].last_built, Some(100));
    }
}
