//! Node memos (`plan::memo`): per node, the digest of what decided its
//! targets fresh up to a day, so a plan with the same digest skips them.

use super::db::args;
use super::{NodeKey, StateStore, StoreError};
use crate::hash::Hash;

/// A node memo (`plan::memo`): the digest of what decided the node's
/// targets up to `last` (a day column) fresh, and, when it covers all the
/// node's targets and the warehouse keeps versions, the same with every
/// table as its version (`plan::unchanged`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memo {
    pub digest: Hash,
    pub last: i64,
    pub versions: Option<Hash>,
}

impl StateStore {
    /// Stores the memos of nodes planned fresh up to a day (`plan::memo`).
    pub fn record_memos(&mut self, memos: &[(NodeKey, Memo)]) -> Result<(), StoreError> {
        if memos.is_empty() {
            return Ok(());
        }
        let node_ids = &mut self.node_ids;
        let written = super::retry::retrying(&self.db, &self.location, node_ids, |db, node_ids| {
            for (key, memo) in memos {
                let node = Self::node_id(node_ids, db, key)?;
                db.execute(
                    "INSERT INTO node_memos (node, memo, last, versions) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (node) DO UPDATE
                     SET memo = excluded.memo, last = excluded.last, versions = excluded.versions",
                    args![
                        node,
                        &memo.digest.0[..],
                        memo.last,
                        memo.versions.as_ref().map(|v| &v.0[..])
                    ],
                )?;
            }
            Ok(())
        });
        written.map_err(|e| self.err(e))
    }

    /// Every node's memo, by node id (`None` when its digest does not
    /// parse). A reader never migrates: memos before schema 5 are of another
    /// version, which never matches, so they are not read; before schema 8
    /// they have no digest by versions.
    pub(super) fn load_memos(&self) -> Result<Vec<(i64, Option<Memo>)>, StoreError> {
        let version = self.version()?;
        if version < 5 {
            return Ok(Vec::new());
        }
        let with_versions = version >= 8;
        let sql = match with_versions {
            false => "SELECT node, memo, last FROM node_memos",
            true => "SELECT node, memo, last, versions FROM node_memos",
        };
        self.select(sql, &[], |row| {
            let node = row.int(0)?;
            let digest = row.blob(1)?;
            let last = row.int(2)?;
            let versions = match with_versions {
                true => row.opt_blob(3)?.and_then(Hash::from_slice),
                false => None,
            };
            Ok((
                node,
                Hash::from_slice(digest).map(|digest| Memo {
                    digest,
                    last,
                    versions,
                }),
            ))
        })
    }
}
