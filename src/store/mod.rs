//! The state: what was built, with which key, and what it read.
//!
//! One SQLite file (default `.chronon-build/state.db` beside the config
//! repo; WAL mode, schema version in `PRAGMA user_version`), or a
//! PostgreSQL database (`[state] url`, shared between hosts; the schema
//! version in `schema_version`): the same tables and migrations on both
//! (`db` knows the difference). A state with a newer version than this
//! binary knows is refused. Tables:
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
//! - `location.rs`: where it is (a file, or a PostgreSQL URL with its
//!   credentials, kept out of every message), and connecting to PostgreSQL
//!   (the Iceberg SQL catalog connects the same way);
//! - `db.rs`: the two backends behind one interface, and the dialect;
//! - `retry.rs`: writes run again on a new connection when it was lost;
//! - `tls.rs`: TLS for PostgreSQL connections;
//! - `pg_lock.rs`: the state's lock on PostgreSQL (an advisory lock);
//! - `pg_write.rs`: recording builds on PostgreSQL, in bulk (`COPY`);
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
//! - `admin.rs`: `state info` and `state copy` (every row, verified);
//! - `claims.rs`: per-target claims, so runs started together build each
//!   target once (`claims`).

mod admin;
mod claims;
mod db;
mod keys;
mod location;
mod memos;
mod nodes;
pub(crate) mod pg_lock;
mod pg_write;
mod records;
mod retry;
mod runs;
mod schema;
mod tls;
mod write;
pub use write::JobWrite;

use std::collections::HashMap;
use std::path::Path;

use crate::hash::Hash;
use crate::partition::Day;

pub use claims::{ActiveClaim, Claimant, Claimed, Holder};
pub use db::pg_message;
use db::{Db, DbError};
pub use keys::{NO_PARTITION, NodeKey, day_column, day_from_column};
pub use location::{PgLocation, StateLocation, redact_url, redacted_args};
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
    /// A PostgreSQL error; `location` is the URL without its password,
    /// and the message is redacted too.
    #[error("{location}: {message}")]
    Postgres { location: String, message: String },
}

pub struct StateStore {
    db: Db,
    location: StateLocation,
    /// Per table, the newest fingerprint recorded per day, loaded on first
    /// use, so recording writes only versions that changed.
    latest_seen: HashMap<String, HashMap<Day, Hash>>,
    /// Slices known to be stored.
    slices_stored: std::collections::HashSet<Hash>,
    /// Node ids known to be stored.
    node_ids: HashMap<NodeKey, i64>,
    /// Writes of targets since this store was opened for writing.
    writes: write::Writes,
}

impl StateStore {
    /// Opens a state file for writing, creating it and its folder when
    /// missing.
    #[cfg(test)]
    pub fn open(path: &Path) -> Result<StateStore, StoreError> {
        Self::open_at(&StateLocation::File(path.to_path_buf()))
    }

    /// Opens a state file for reading only; `None` when there is none yet.
    pub fn open_read(path: &Path) -> Result<Option<StateStore>, StoreError> {
        Self::open_read_at(&StateLocation::File(path.to_path_buf()))
    }

    /// Opens for writing, creating the file (or the schema) when missing,
    /// and migrating it.
    pub fn open_at(location: &StateLocation) -> Result<StateStore, StoreError> {
        let db = match location {
            StateLocation::File(path) => open_file(path)?,
            StateLocation::Postgres(pg) => Db::postgres(
                pg.connect()
                    .map_err(|e| pg_error(location, DbError::Pg(e)))?,
            ),
        };
        let mut store = StateStore::new(db, location);
        store.migrate()?;
        store.writes = write::Writes::at(store.last_seq()?);
        Ok(store)
    }

    fn new(db: Db, location: &StateLocation) -> StateStore {
        StateStore {
            db,
            location: location.clone(),
            latest_seen: HashMap::new(),
            slices_stored: Default::default(),
            node_ids: HashMap::new(),
            writes: write::Writes::default(),
        }
    }

    /// Opens for reading only; `None` when there is no state yet. Readers
    /// never create or migrate anything.
    pub fn open_read_at(location: &StateLocation) -> Result<Option<StateStore>, StoreError> {
        let db = match location {
            StateLocation::File(path) => {
                if !path.exists() {
                    return Ok(None);
                }
                check_state_path(path)?;
                Db::Sqlite(crate::sqlite::open_read_only(path).map_err(|e| sqlite(path, e))?)
            }
            StateLocation::Postgres(pg) => Db::postgres(
                pg.connect()
                    .map_err(|e| pg_error(location, DbError::Pg(e)))?,
            ),
        };
        let store = StateStore::new(db, location);
        let version = store.version()?;
        if version == 0 {
            // Being created by a writer that has not written the schema
            // yet: nothing is recorded.
            return Ok(None);
        }
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: location.name(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        if version < READABLE_FROM {
            return Err(StoreError::Open {
                path: location.name(),
                message: format!(
                    "schema version {version} needs an upgrade; run a command that writes the state first"
                ),
            });
        }
        Ok(Some(store))
    }

    /// Writes from now on check that this process still holds `lock`, the
    /// state's lock on PostgreSQL, and fail once it is lost for good.
    pub fn guard(&self, lock: &pg_lock::PgLock) {
        self.db.guard(lock.keeper());
    }

    fn err(&self, e: DbError) -> StoreError {
        match (e, &self.location) {
            (DbError::Sqlite(e), StateLocation::File(path)) => sqlite(path, e),
            (e, location) => pg_error(location, e),
        }
    }

    /// The rows of a query, each read by `read`. Statements are cached, so a
    /// query asked again (per table, per node) is prepared once.
    fn select<T>(
        &self,
        sql: &str,
        args: &[db::Arg],
        read: impl FnMut(&db::Row) -> db::DbResult<T>,
    ) -> Result<Vec<T>, StoreError> {
        let mut read = read;
        retry::reading(&self.db, &self.location, |db| {
            db.query(sql, args, &mut read)
        })
        .map_err(|e| self.err(e))
    }
}

/// Opens (creating) a state file for writing.
fn open_file(path: &Path) -> Result<Db, StoreError> {
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
    Ok(Db::Sqlite(conn))
}

/// An error of the database (or of reaching it), with the password taken
/// out of its message.
fn pg_error(location: &StateLocation, e: DbError) -> StoreError {
    StoreError::Postgres {
        location: location.name(),
        message: location.redact(&e.to_string()),
    }
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
