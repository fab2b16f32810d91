//! The schema: its version, the oldest version a reader reads as it is,
//! and the migrations a writer runs to reach the current one, the same on
//! both backends (`db::pg_ddl` words them for PostgreSQL). The version is
//! SQLite's `PRAGMA user_version`, and PostgreSQL's `schema_version`
//! table.

use super::db::{Db, DbResult, pg_ddl};
use super::{StateStore, StoreError};

pub const SCHEMA_VERSION: i64 = 8;

/// The oldest schema a reader reads as it is (readers never migrate):
/// schemas 2, 3 and 5 only added and changed node memos, which a plan can
/// do without (a memo of another version never matches), a reader of a
/// state before 4 reads its ranges from `target_reads` (`ranges_read`), one
/// before 6 knows no node's output table (`recorded_nodes`), and one before
/// 8 has no memo by versions (`load_memos`).
pub(super) const READABLE_FROM: i64 = 1;

/// A migration's statements: for both backends, or only to convert rows
/// of a SQLite state (a PostgreSQL state begins empty, at the latest schema).
enum Part {
    Both(&'static str),
    SqliteRows(&'static str),
}

/// PostgreSQL advisory lock key that serializes migrations between hosts.
const MIGRATION_LOCK: i64 = 0x6368_726f_6e6f_6e01;

const MIGRATIONS: &[&[Part]] = &[
    // 1: initial schema.
    &[Part::Both(
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
    )],
    // 2: per node, the memo of its last all-fresh plan (plan::memo).
    &[Part::Both(
        "CREATE TABLE node_memos (
        node INTEGER PRIMARY KEY REFERENCES nodes(id),
        memo BLOB NOT NULL
    );",
    )],
    // 3: memos no longer digest the node's recorded targets: every write of
    // a node's targets deletes its memo instead, so a plan can trust a memo
    // without loading the targets. Schema-2 memos are dropped, and a
    // schema-2 binary (which would not delete them) refuses this state.
    &[Part::Both("DELETE FROM node_memos;")],
    // 4: each target's key document inputs beside its key (`inputs_doc`,
    // the JSON the key hashed), in place of `target_reads`: one row per
    // build, and any recorded key explains itself. Ranges recorded before
    // carry table and days only.
    &[
        Part::Both("ALTER TABLE targets ADD COLUMN inputs_doc TEXT;"),
        Part::SqliteRows(
            "UPDATE targets SET inputs_doc = (
         SELECT json_group_array(json_object(
             'table', json_extract(e.value, '$[0]'),
             'from', json_extract(e.value, '$[1]'),
             'to', json_extract(e.value, '$[2]')))
         FROM target_reads r, json_each(r.ranges) e
         WHERE r.node = targets.node AND r.day = targets.day);",
        ),
        Part::Both("DROP TABLE target_reads;"),
    ],
    // 5: a memo covers the node's targets up to a day (`last`), so a plan
    // whose `--until` moved on evaluates only the days after it, and a
    // write of later days keeps it. Schema-4 memos (whole nodes, deleted by
    // any write) are dropped: their digests are of another version.
    &[Part::Both(
        "DELETE FROM node_memos;
         ALTER TABLE node_memos ADD COLUMN last INTEGER NOT NULL DEFAULT 0;",
    )],
    // 6: the table each node writes, as its last recorded build wrote it
    // (`nodes.output`): once no config makes the node any more (a config
    // renamed, a join part removed), `gc` still knows which table it left.
    // Nodes recorded before have none until they are built again.
    &[Part::Both("ALTER TABLE nodes ADD COLUMN output TEXT;")],
    // 7: per-target claims (`claims.rs`): the run building a target now,
    // its runner (host, pid, start time), and the lease the runner renews.
    &[Part::Both(
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
    )],
    // 8: beside a node memo, its digest with every table it reads or
    // writes as the table's version instead of its partitions
    // (`plan::unchanged`): a plan that finds the same versions holds the
    // node without listing its tables. Memos before have none.
    &[Part::Both(
        "ALTER TABLE node_memos ADD COLUMN versions BLOB;",
    )],
];

impl StateStore {
    pub(super) fn version(&self) -> Result<i64, StoreError> {
        version(&self.db).map_err(|e| self.err(e))
    }

    pub(super) fn migrate(&mut self) -> Result<(), StoreError> {
        let found = self
            .db
            .transaction(|db| {
                if db.is_pg() {
                    // One host migrates; the others then find it done.
                    db.query(
                        "SELECT pg_advisory_xact_lock(?1)::text",
                        super::db::args![MIGRATION_LOCK],
                        |_| Ok(()),
                    )?;
                    db.batch(
                        "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)",
                    )?;
                }
                let version = version(db)?;
                if version > SCHEMA_VERSION {
                    return Ok(Some(version));
                }
                for (i, parts) in MIGRATIONS.iter().enumerate().skip(version as usize) {
                    for part in *parts {
                        match (part, db) {
                            (Part::Both(sql), Db::Sqlite(_)) => db.batch(sql)?,
                            (Part::Both(sql), Db::Pg(_)) => db.batch(&pg_ddl(sql))?,
                            (Part::SqliteRows(sql), Db::Sqlite(_)) => db.batch(sql)?,
                            (Part::SqliteRows(_), Db::Pg(_)) => {}
                        }
                    }
                    set_version(db, (i + 1) as i64)?;
                }
                Ok(None)
            })
            .map_err(|e| self.err(e))?;
        match found {
            Some(found) => Err(StoreError::TooNew {
                path: self.location.name(),
                found,
                known: SCHEMA_VERSION,
            }),
            None => Ok(()),
        }
    }
}

/// The schema version; 0 when there is no schema yet.
fn version(db: &Db) -> DbResult<i64> {
    match db {
        Db::Sqlite(conn) => Ok(conn.pragma_query_value(None, "user_version", |row| row.get(0))?),
        Db::Pg(_) => {
            let exists = db.query_opt(
                "SELECT 1 FROM pg_tables WHERE tablename = 'schema_version' AND schemaname = current_schema()",
                &[],
                |_| Ok(()),
            )?;
            if exists.is_none() {
                return Ok(0);
            }
            let found = db.query_opt("SELECT max(version) FROM schema_version", &[], |row| {
                row.opt_int(0)
            })?;
            Ok(found.flatten().unwrap_or(0))
        }
    }
}

fn set_version(db: &Db, version: i64) -> DbResult<()> {
    match db {
        Db::Sqlite(conn) => Ok(conn.pragma_update(None, "user_version", version)?),
        Db::Pg(_) => {
            db.batch("DELETE FROM schema_version")?;
            db.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                super::db::args![version],
            )?;
            Ok(())
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
