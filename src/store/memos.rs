//! Node memos (`plan::memo`): per node, the digest of what decided its
//! targets fresh up to a day, so a plan with the same digest skips them.

use rusqlite::params;

use super::{NodeKey, StateStore, StoreError, sqlite};
use crate::hash::Hash;

/// A node memo (`plan::memo`): the digest of what decided the node's
/// targets up to `last` (a day column) fresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memo {
    pub digest: Hash,
    pub last: i64,
}

impl StateStore {
    /// Stores the memos of nodes planned fresh up to a day (`plan::memo`).
    pub fn record_memos(&mut self, memos: &[(NodeKey, Memo)]) -> Result<(), StoreError> {
        if memos.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let err = |e| sqlite(&path, e);
        let tx = super::write_transaction(&mut self.conn, &path)?;
        {
            let mut put = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO node_memos (node, memo, last) VALUES (?1, ?2, ?3)",
                )
                .map_err(err)?;
            for (key, memo) in memos {
                let node = Self::node_id(&mut self.node_ids, &tx, key).map_err(err)?;
                put.execute(params![node, &memo.digest.0[..], memo.last])
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Every node's memo, by node id (`None` when its digest does not
    /// parse). A reader never migrates: memos before schema 5 are of another
    /// version, which never matches, so they are not read.
    pub(super) fn load_memos(&self) -> Result<Vec<(i64, Option<Memo>)>, StoreError> {
        if self.version()? < 5 {
            return Ok(Vec::new());
        }
        self.select("SELECT node, memo, last FROM node_memos", [], |row| {
            let node = row.get::<_, i64>(0)?;
            let digest = row.get::<_, Vec<u8>>(1)?;
            let last = row.get::<_, i64>(2)?;
            Ok((
                node,
                Hash::from_slice(&digest).map(|digest| Memo { digest, last }),
            ))
        })
    }
}
