//! The schema: its version, the oldest version a reader reads as it is,
//! and the migrations a writer runs to reach the current one.

use super::{StateStore, StoreError, sqlite};

pub const SCHEMA_VERSION: i64 = 7;

/// The oldest schema a reader reads as it is (readers never migrate):
/// schemas 2, 3 and 5 only added and changed node memos, which a plan can
/// do without (a memo of another version never matches), a reader of a
/// state before 4 reads its ranges from `target_reads` (`ranges_read`), and
/// one before 6 knows no node's output table (`recorded_nodes`).
pub(super) const READABLE_FROM: i64 = 1;

const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    "CREATE TABLE nodes (
        id INTEGER PRIMARY KEY,
        step TEXT NOT NULL,
        config TEXT NOT NULL,
        part TEXT NOT NULL DEFAULT '',
        UNIQUE (step, config, part)
    );
    CREATE TABLE targets (
        node INTEGER NOT NULL REFERENCES nodes(id),
        day INTEGER NOT NULL,
        key BLOB NOT NULL,
        slice BLOB NOT NULL,
        inputs BLOB NOT NULL,
        output BLOB,
        seq INTEGER NOT NULL,
        built_at INTEGER NOT NULL,
        PRIMARY KEY (node, day)
    ) WITHOUT ROWID;
    CREATE TABLE target_reads (
        node INTEGER NOT NULL,
        day INTEGER NOT NULL,
        ranges TEXT NOT NULL,
        PRIMARY KEY (node, day)
    ) WITHOUT ROWID;
    CREATE TABLE slices (hash BLOB PRIMARY KEY, json TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE inputs_seen (
        tbl TEXT NOT NULL,
        day INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        fingerprint BLOB NOT NULL,
        PRIMARY KEY (tbl, day, seq)
    ) WITHOUT ROWID;
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        args TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        ended_at INTEGER,
        result TEXT
    );
    CREATE TABLE attempts (
        id INTEGER PRIMARY KEY,
        run INTEGER NOT NULL REFERENCES runs(id),
        node INTEGER NOT NULL REFERENCES nodes(id),
        day_from INTEGER NOT NULL,
        day_to INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        argv TEXT NOT NULL,
        exit_code INTEGER,
        duration_ms INTEGER,
        log_path TEXT,
        started_at INTEGER NOT NULL
    );
    CREATE TABLE failures (
        node INTEGER NOT NULL REFERENCES nodes(id),
        day INTEGER NOT NULL,
        run INTEGER,
        exit_code INTEGER,
        PRIMARY KEY (node, day)
    ) WITHOUT ROWID;
    CREATE TABLE forced (
        node INTEGER NOT NULL REFERENCES nodes(id),
        day INTEGER NOT NULL,
        PRIMARY KEY (node, day)
    ) WITHOUT ROWID;
    CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;",
    // 2: per node, the memo of its last all-fresh plan (plan::memo).
    "CREATE TABLE node_memos (
        node INTEGER PRIMARY KEY REFERENCES nodes(id),
        memo BLOB NOT NULL
    );",
    // 3: memos no longer digest the node's recorded targets: every write of
    // a node's targets deletes its memo instead, so a plan can trust a memo
    // without loading the targets. Schema-2 memos are dropped, and a
    // schema-2 binary (which would not delete them) refuses this state.
    "DELETE FROM node_memos;",
    // 4: each target's key document inputs beside its key (`inputs_doc`,
    // the JSON the key hashed), in place of `target_reads`: one row per
    // build, and any recorded key explains itself. Ranges recorded before
    // carry table and days only.
    "ALTER TABLE targets ADD COLUMN inputs_doc TEXT;
     UPDATE targets SET inputs_doc = (
         SELECT json_group_array(json_object(
             'table', json_extract(e.value, '$[0]'),
             'from', json_extract(e.value, '$[1]'),
             'to', json_extract(e.value, '$[2]')))
         FROM target_reads r, json_each(r.ranges) e
         WHERE r.node = targets.node AND r.day = targets.day);
     DROP TABLE target_reads;",
    // 5: a memo covers the node's targets up to a day (`last`), so a plan
    // whose `--until` moved on evaluates only the days after it, and a
    // write of later days keeps it. Schema-4 memos (whole nodes, deleted by
    // any write) are dropped: their digests are of another version.
    "DELETE FROM node_memos;
     ALTER TABLE node_memos ADD COLUMN last INTEGER NOT NULL DEFAULT 0;",
    // 6: the table each node writes, as its last recorded build wrote it
    // (`nodes.output`): once no config makes the node any more (a config
    // renamed, a join part removed), `gc` still knows which table it left.
    // Nodes recorded before have none until they are built again.
    "ALTER TABLE nodes ADD COLUMN output TEXT;",
    // 7: per-target claims (`claims.rs`): the run building a target now,
    // its runner (host, pid, start time), and the lease the runner renews.
    "CREATE TABLE claims (
        node INTEGER NOT NULL REFERENCES nodes(id),
        day INTEGER NOT NULL,
        run INTEGER NOT NULL,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        pid_start INTEGER NOT NULL,
        expires INTEGER NOT NULL,
        PRIMARY KEY (node, day)
    );
    CREATE INDEX claims_by_run ON claims (run);",
];

impl StateStore {
    pub(super) fn version(&self) -> Result<i64, StoreError> {
        self.conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(|e| self.err(e))
    }

    /// Runs the migrations this file lacks, each in a write transaction
    /// that reads the version again first: runs opening one state together
    /// migrate it once between them.
    pub(super) fn migrate(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |e| sqlite(&path, e);
        loop {
            let tx = super::write_transaction(&mut self.conn, &path)?;
            let version: i64 = tx
                .pragma_query_value(None, "user_version", |row| row.get(0))
                .map_err(err)?;
            if version > SCHEMA_VERSION {
                return Err(StoreError::TooNew {
                    path: path.display().to_string(),
                    found: version,
                    known: SCHEMA_VERSION,
                });
            }
            let Some(sql) = MIGRATIONS.get(version as usize) else {
                return Ok(());
            };
            tx.execute_batch(sql).map_err(err)?;
            tx.pragma_update(None, "user_version", version + 1)
                .map_err(err)?;
            tx.commit().map_err(err)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;

    #[test]
    fn refuses_a_newer_schema_and_leaves_it_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        drop(StateStore::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        let err = StateStore::open(&path).err().unwrap();
        assert!(
            err.to_string()
                .contains("newer than this chronon-build understands"),
            "{err}"
        );
        assert!(StateStore::open_read(&path).is_err());
    }
}
