//! The SQLite state: what was built, with which key, and what it read.
//!
//! One file (default `.chronon-build/state.db` beside the config repo), WAL
//! mode, schema version in `PRAGMA user_version`. A file with a newer version
//! than this binary knows is refused. Tables:
//!
//! - `nodes`: one row per (step, config, part), so targets store an integer,
//!   with the table it writes (`output`) as its last recorded build named it;
//! - `targets`: per built target its key, slice hash, inputs hash, output
//!   fingerprint, the sequence number of the write that recorded it, and
//!   its key document's inputs (`inputs_doc`: what it read, the JSON its key
//!   hashed);
//! - `slices`: each semantic slice's canonical JSON once, content-addressed,
//!   so a `config-changed` reason can name field paths;
//! - `inputs_seen`: the fingerprint of every input partition as read by a
//!   recorded build, versioned by sequence number, so an `input-changed`
//!   reason can name the partition and its old fingerprint;
//! - `runs`, `attempts`: run history; `failures`, `forced`: per target;
//! - `claims`: the targets runs are building now (`claims.rs`);
//! - `node_memos`: per node, a digest of everything that decided its
//!   targets up to a day (`last`) all fresh the last time they were
//!   (`plan::memo`), so a plan with the same digest skips evaluating those
//!   targets one by one, and loading them. Writing any of a node's targets
//!   up to `last` deletes its memo.
//!
//! A target is written here only after its command exited 0 and its outputs
//! were probed, in one transaction with everything else it implies.
//!
//! The files:
//!
//! - `mod.rs`: opening the state (`open`, `open_read`) and its errors;
//! - `schema.rs`: the schema version and the migrations;
//! - `keys.rs`: how nodes and days are keyed in the tables (`NodeKey` and
//!   node ids, day columns);
//! - `records.rs`: recorded targets and how the planner reads them back;
//! - `write.rs`: recording builds (the hot path of `adopt`) and forced
//!   marks;
//! - `memos.rs`: node memos;
//! - `nodes.rs`: every node with rows, the table it wrote and when (what
//!   `gc` finds orphans with), and forgetting nodes;
//! - `runs.rs`: the run history (`runs`, `attempts`) and `failures`;
//! - `claims.rs`: per-target claims, so runs started together build each
//!   target once (`claims`).

mod claims;
mod keys;
mod memos;
mod nodes;
mod records;
mod runs;
mod schema;
mod write;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use crate::hash::Hash;
use crate::partition::Day;

pub use claims::{ActiveClaim, Claimant, Claimed, Holder};
pub use keys::{NO_PARTITION, NodeKey, day_column, day_from_column};
pub use memos::Memo;
pub use nodes::RecordedNode;
pub use records::{Built, NodeState, Recorded};
pub use runs::{Attempt, RunRow};
use schema::READABLE_FROM;
pub use schema::SCHEMA_VERSION;

/// What can go wrong with the state; each names the state file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {message}")]
    Open { path: String, message: String },
    #[error(
        "{path}: schema version {found} is newer than this chronon-build understands (up to {known}); use a newer chronon-build"
    )]
    TooNew {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("{path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
}

pub struct StateStore {
    conn: Connection,
    path: PathBuf,
    /// Per table, the newest fingerprint recorded per day, loaded on first
    /// use, so recording writes only versions that changed.
    latest_seen: HashMap<String, HashMap<Day, Hash>>,
    /// Slices known to be stored.
    slices_stored: std::collections::HashSet<Hash>,
    /// Node ids known to be stored.
    node_ids: HashMap<NodeKey, i64>,
}

impl StateStore {
    /// Opens for writing, creating the file and its folder when missing.
    pub fn open(path: &Path) -> Result<StateStore, StoreError> {
        check_state_path(path)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Open {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        }
        let conn = crate::sqlite::open_write(path).map_err(|e| sqlite(path, e))?;
        crate::sqlite::use_wal(&conn).map_err(|e| sqlite(path, e))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| sqlite(path, e))?;
        let mut store = StateStore {
            conn,
            path: path.to_path_buf(),
            latest_seen: HashMap::new(),
            slices_stored: Default::default(),
            node_ids: HashMap::new(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Opens for reading only; `None` when there is no state yet. Readers
    /// never create or migrate anything.
    pub fn open_read(path: &Path) -> Result<Option<StateStore>, StoreError> {
        if !path.exists() {
            return Ok(None);
        }
        check_state_path(path)?;
        let conn = crate::sqlite::open_read_only(path).map_err(|e| sqlite(path, e))?;
        let store = StateStore {
            conn,
            path: path.to_path_buf(),
            latest_seen: HashMap::new(),
            slices_stored: Default::default(),
            node_ids: HashMap::new(),
        };
        let version = store.version()?;
        if version == 0 {
            // Being created by a writer that has not written the schema
            // yet: nothing is recorded.
            return Ok(None);
        }
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: path.display().to_string(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        if version < READABLE_FROM {
            return Err(StoreError::Open {
                path: path.display().to_string(),
                message: format!(
                    "schema version {version} needs an upgrade; run a command that writes the state first"
                ),
            });
        }
        Ok(Some(store))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        sqlite(&self.path, e)
    }

    /// The rows of a query, each read by `read`. Statements are cached, so a
    /// query asked again (per table, per node) is prepared once.
    fn select<T>(
        &self,
        sql: &str,
        args: impl rusqlite::Params,
        read: impl FnMut(&rusqlite::Row) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let rows = stmt.query_map(args, read).map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }
}

/// A write transaction that takes the write lock at once (`BEGIN
/// IMMEDIATE`), so runs writing one state together wait for each other
/// (`BUSY_TIMEOUT`) instead of failing when a read turns into a write.
fn write_transaction<'c>(
    conn: &'c mut Connection,
    path: &Path,
) -> Result<rusqlite::Transaction<'c>, StoreError> {
    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| sqlite(path, e))
}

fn sqlite(path: &Path, source: rusqlite::Error) -> StoreError {
    if crate::sqlite::is_damaged(&source) {
        return StoreError::Open {
            path: path.display().to_string(),
            message: format!(
                "the state file is damaged ({source}). To recover, move it aside (keep it for \
                 inspection) and run `chronon-build adopt --until DAY`: it records as built \
                 every target whose outputs the warehouse holds, so nothing is recomputed"
            ),
        };
    }
    StoreError::Sqlite {
        path: path.display().to_string(),
        source,
    }
}

/// A state path must name a file: a folder or a device is said plainly
/// rather than as SQLite's "unable to open database file".
fn check_state_path(path: &Path) -> Result<(), StoreError> {
    let fail = |message: String| StoreError::Open {
        path: path.display().to_string(),
        message,
    };
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(fail(
            "is a folder; expected the state file, e.g. state.db inside it".into(),
        )),
        Ok(meta) if !meta.is_file() => Err(fail(
            "is not a regular file; expected the state file (a SQLite database)".into(),
        )),
        _ => Ok(()),
    }
}
