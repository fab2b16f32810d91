//! The SQLite state: what was built, with which key, and what it read.
//!
//! One file (default `.chronon-build/state.db` beside the config repo), WAL
//! mode, schema version in `PRAGMA user_version`. A file with a newer version
//! than this binary knows is refused. Tables:
//!
//! - `nodes`: one row per (step, config, part), so targets store an integer;
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
//! - `node_memos`: per node, a digest of everything that decided its
//!   targets up to a day (`last`) all fresh the last time they were
//!   (`plan::memo`), so a plan with the same digest skips evaluating those
//!   targets one by one, and loading them. Writing any of a node's targets
//!   up to `last` deletes its memo.
//!
//! A target is written here only after its command exited 0 and its outputs
//! were probed, in one transaction with everything else it implies.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use crate::hash::Hash;
use crate::partition::Day;
use crate::step::Step;

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

pub const SCHEMA_VERSION: i64 = 5;

/// The oldest schema a reader reads as it is (readers never migrate):
/// schemas 2, 3 and 5 only added and changed node memos, which a plan can
/// do without (a memo of another version never matches), and a reader of a
/// state before 4 reads its ranges from `target_reads` (`ranges_read`).
const READABLE_FROM: i64 = 1;

/// How unpartitioned targets are stored in integer day columns.
pub const NO_PARTITION: i64 = i64::MIN;

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
];

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

/// A node memo (`plan::memo`): the digest of what decided the node's
/// targets up to `last` (a day column) fresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memo {
    pub digest: Hash,
    pub last: i64,
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
}

/// One attempt of a job, recorded when it ended: with the targets it built,
/// in their transaction, when it succeeded. (A crash loses the attempts in
/// flight from the history; their log files stay.) `history` reads them back.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub run: i64,
    pub node: NodeKey,
    pub from: Option<Day>,
    pub to: Option<Day>,
    pub attempt: u32,
    pub argv: Vec<String>,
    pub log_path: String,
    pub started_at: i64,
    /// `None` when a signal ended the job or it could not start.
    pub exit_code: Option<i32>,
    pub duration: std::time::Duration,
}

/// A run in the history.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunRow {
    pub id: i64,
    /// The command line.
    pub args: Vec<String>,
    pub started_at: i64,
    /// `None` while it runs, or when it crashed.
    pub ended_at: Option<i64>,
    /// `ok`, `failed`, `blocked` or `interrupted`.
    pub result: Option<String>,
}

impl Attempt {
    /// The job's target range: `step:config[#part][@from[..to]]`.
    pub fn label(&self) -> String {
        format!(
            "{}{}",
            self.node.label(),
            crate::partition::at_range(self.from, self.to)
        )
    }

    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0)
    }
}

pub fn day_column(day: Option<Day>) -> i64 {
    day.map_or(NO_PARTITION, |d| i64::from(d.0))
}

pub fn day_from_column(day: i64) -> Option<Day> {
    (day != NO_PARTITION).then_some(Day(day as i32))
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

    fn version(&self) -> Result<i64, StoreError> {
        self.conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(|e| self.err(e))
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let version = self.version()?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: self.path.display().to_string(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self.conn.transaction().map_err(|e| sqlite(&self.path, e))?;
            tx.execute_batch(sql).map_err(|e| sqlite(&self.path, e))?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(|e| sqlite(&self.path, e))?;
            tx.commit().map_err(|e| sqlite(&self.path, e))?;
        }
        Ok(())
    }

    /// Node ids to keys. A step this binary does not know (from a newer
    /// version) is left out, and so are its rows in other tables.
    fn node_keys(&self) -> Result<HashMap<i64, NodeKey>, StoreError> {
        let rows = self.select("SELECT id, step, config, part FROM nodes", [], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
            ))
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, step, config, part)| {
                let step = Step::parse(&step)?;
                Some((id, NodeKey { step, config, part }))
            })
            .collect())
    }

    /// The nodes with at least one target recorded as built: found by
    /// the targets' primary key, one seek per node, without loading them.
    pub fn built_nodes(&self) -> Result<std::collections::HashSet<NodeKey>, StoreError> {
        let ids = self.node_keys()?;
        let built = self.select(
            "SELECT id FROM nodes WHERE EXISTS (SELECT 1 FROM targets WHERE targets.node = nodes.id)",
            [],
            |row| row.get::<_, i64>(0),
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

    /// One node's recorded targets from a day column on (`NO_PARTITION`:
    /// all of them), by day column.
    pub fn load_targets(
        &self,
        node: &NodeKey,
        from: i64,
    ) -> Result<HashMap<i64, Recorded>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT day, key, slice, inputs, output, seq FROM targets
                 WHERE node = (SELECT id FROM nodes WHERE step = ?1 AND config = ?2 AND part = ?3)
                   AND day >= ?4",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = stmt
            .query(params![node.step.name(), node.config, node.part, from])
            .map_err(|e| self.err(e))?;
        let mut built = HashMap::new();
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let day: i64 = row.get(0).map_err(|e| self.err(e))?;
            built.insert(day, self.recorded(row, 1)?);
        }
        Ok(built)
    }

    /// A `Recorded` from key, slice, inputs, output and seq at `first`.
    fn recorded(&self, row: &rusqlite::Row, first: usize) -> Result<Recorded, StoreError> {
        let blob = |i: usize| -> Result<Hash, StoreError> {
            let bytes: &[u8] = row
                .get_ref(first + i)
                .and_then(|v| Ok(v.as_blob()?))
                .map_err(|e| self.err(e))?;
            Ok(Hash::from_slice(bytes).unwrap_or_default())
        };
        Ok(Recorded {
            key: blob(0)?,
            slice: blob(1)?,
            inputs: blob(2)?,
            output: blob(3)?,
            seq: row.get(first + 4).map_err(|e| self.err(e))?,
        })
    }

    fn load_with(&self, targets: bool) -> Result<HashMap<NodeKey, NodeState>, StoreError> {
        let ids = self.node_keys()?;

        let mut by_id: HashMap<i64, NodeState> = HashMap::new();
        if targets {
            let mut stmt = self
                .conn
                .prepare("SELECT node, day, key, slice, inputs, output, seq FROM targets")
                .map_err(|e| self.err(e))?;
            let mut rows = stmt.query([]).map_err(|e| self.err(e))?;
            while let Some(row) = rows.next().map_err(|e| self.err(e))? {
                let node: i64 = row.get(0).map_err(|e| self.err(e))?;
                let day: i64 = row.get(1).map_err(|e| self.err(e))?;
                let recorded = self.recorded(row, 2)?;
                by_id.entry(node).or_default().built.insert(day, recorded);
            }
        }

        let failures = self.select("SELECT node, day, run FROM failures", [], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, Option<i64>>(2)?,
            ))
        })?;
        for (node, day, run) in failures {
            by_id
                .entry(node)
                .or_default()
                .failed
                .insert(day, run.unwrap_or(0));
        }
        for (node, day) in self.select("SELECT node, day FROM forced", [], node_and_day)? {
            by_id.entry(node).or_default().forced.push(day);
        }
        // A reader never migrates: memos before schema 5 are of another
        // version, which never matches, so they are not read.
        let memos = if self.version()? >= 5 {
            self.select("SELECT node, memo, last FROM node_memos", [], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, Vec<u8>>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })?
        } else {
            Vec::new()
        };
        for (node, digest, last) in memos {
            by_id.entry(node).or_default().memo =
                Hash::from_slice(&digest).map(|digest| Memo { digest, last });
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
            [],
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

    /// Successful attempts: per node, the partitions each covered and how
    /// long it took. Cost estimates are medians of these.
    pub fn job_durations(&self) -> Result<Vec<(NodeKey, u32, std::time::Duration)>, StoreError> {
        let ids = self.node_keys()?;
        let rows = self.select(
            "SELECT node, day_from, day_to, duration_ms FROM attempts
             WHERE exit_code = 0 AND duration_ms IS NOT NULL",
            [],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, i64>(3)?,
                ))
            },
        )?;
        let mut out = Vec::new();
        for (node, from, to, ms) in rows {
            let Some(key) = ids.get(&node) else {
                continue;
            };
            let partitions = if from == NO_PARTITION {
                1
            } else {
                (to - from + 1).clamp(1, i64::from(u32::MAX)) as u32
            };
            let duration = std::time::Duration::from_millis(ms.max(0) as u64);
            out.push((key.clone(), partitions, duration));
        }
        Ok(out)
    }

    /// Runs in the history, newest first, started at or after `since` (unix
    /// seconds), at most `limit`.
    pub fn runs(&self, since: i64, limit: usize) -> Result<Vec<RunRow>, StoreError> {
        self.select(
            "SELECT id, args, started_at, ended_at, result FROM runs
             WHERE started_at >= ?1 ORDER BY id DESC LIMIT ?2",
            params![since, limit.min(i64::MAX as usize) as i64],
            |row| {
                let args: String = row.get(1)?;
                Ok(RunRow {
                    id: row.get(0)?,
                    args: serde_json::from_str(&args).unwrap_or_else(|_| vec![args]),
                    started_at: row.get(2)?,
                    ended_at: row.get(3)?,
                    result: row.get(4)?,
                })
            },
        )
    }

    /// The attempts of runs `first..=last`, in the order they ended.
    pub fn attempts(&self, first: i64, last: i64) -> Result<Vec<Attempt>, StoreError> {
        self.query_attempts("run BETWEEN ?1 AND ?2", params![first, last])
    }

    /// Each node's latest attempt (the one that ended last).
    pub fn latest_attempts(&self) -> Result<HashMap<NodeKey, Attempt>, StoreError> {
        let latest = self.query_attempts(
            "id IN (SELECT max(id) FROM attempts GROUP BY node)",
            params![],
        )?;
        Ok(latest.into_iter().map(|a| (a.node.clone(), a)).collect())
    }

    /// Every attempt of one node, in the order they ended.
    pub fn attempts_of(&self, node: &NodeKey) -> Result<Vec<Attempt>, StoreError> {
        self.query_attempts(
            "node = (SELECT id FROM nodes WHERE step = ?1 AND config = ?2 AND part = ?3)",
            params![node.step.name(), node.config, node.part],
        )
    }

    /// Attempts matching a condition on the `attempts` table, in the order
    /// they ended; those of steps this binary does not know are left out.
    fn query_attempts(
        &self,
        condition: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<Attempt>, StoreError> {
        let ids = self.node_keys()?;
        let sql = format!(
            "SELECT run, node, day_from, day_to, attempt, argv, exit_code, duration_ms,
                    log_path, started_at
             FROM attempts WHERE {condition} ORDER BY id"
        );
        let rows = self.select(&sql, args, |row| {
            let argv: String = row.get(5)?;
            Ok((
                row.get::<_, i64>(1)?,
                Attempt {
                    run: row.get(0)?,
                    node: NodeKey::new(Step::GroupByBackfill, "", None),
                    from: day_from_column(row.get(2)?),
                    to: day_from_column(row.get(3)?),
                    attempt: row.get(4)?,
                    argv: serde_json::from_str(&argv).unwrap_or_else(|_| vec![argv]),
                    exit_code: row.get(6)?,
                    duration: std::time::Duration::from_millis(
                        row.get::<_, Option<i64>>(7)?.unwrap_or(0).max(0) as u64,
                    ),
                    log_path: row.get::<_, Option<String>>(8)?.unwrap_or_default(),
                    started_at: row.get(9)?,
                },
            ))
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|(node, mut attempt)| {
                attempt.node = ids.get(&node)?.clone();
                Some(attempt)
            })
            .collect())
    }

    pub fn slice_json(&self, hash: &Hash) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT json FROM slices WHERE hash = ?1",
                [&hash.0[..]],
                |row| row.get(0),
            )
            .optional()
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
            params![table, from.0, to.0, seq],
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
                .conn
                .query_row(
                    sql,
                    params![node.step.name(), node.config, node.part, day_column(day)],
                    |row| row.get(0),
                )
                .optional()
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

    /// The node's id, inserting the node when new; cached, since ids never
    /// change once written.
    fn node_id(
        cache: &mut HashMap<NodeKey, i64>,
        tx: &rusqlite::Transaction,
        key: &NodeKey,
    ) -> rusqlite::Result<i64> {
        if let Some(id) = cache.get(key) {
            return Ok(*id);
        }
        let id = Self::insert_node(tx, key)?;
        cache.insert(key.clone(), id);
        Ok(id)
    }

    fn insert_node(tx: &rusqlite::Transaction, key: &NodeKey) -> rusqlite::Result<i64> {
        tx.execute(
            "INSERT OR IGNORE INTO nodes (step, config, part) VALUES (?1, ?2, ?3)",
            params![key.step.name(), key.config, key.part],
        )?;
        tx.query_row(
            "SELECT id FROM nodes WHERE step = ?1 AND config = ?2 AND part = ?3",
            params![key.step.name(), key.config, key.part],
            |row| row.get(0),
        )
    }

    /// Loads the newest fingerprint per day of the tables not cached yet.
    fn load_latest_seen<'t>(
        &mut self,
        tables: impl Iterator<Item = &'t str>,
    ) -> Result<(), StoreError> {
        for table in tables {
            if self.latest_seen.contains_key(table) {
                continue;
            }
            // In write order, so each day keeps its newest fingerprint.
            let rows = self.select(
                "SELECT day, fingerprint FROM inputs_seen WHERE tbl = ?1 ORDER BY seq",
                [table],
                day_and_fingerprint,
            )?;
            self.latest_seen
                .insert(table.to_string(), rows.into_iter().collect());
        }
        Ok(())
    }

    /// Runs `write` with the WAL checkpointed by another connection on
    /// another thread, every 20 ms (passive checkpoints, which never block
    /// the writer): a long series of writes (adopt) does not stop for its
    /// own checkpoints. The writer's own checkpoint waits until the WAL
    /// holds 64 MB, by when the other thread has copied most of it, and it
    /// lets the next write start the WAL over, which bounds it.
    pub fn with_checkpoints_aside<T>(
        &mut self,
        write: impl FnOnce(&mut StateStore) -> T,
    ) -> Result<T, StoreError> {
        use std::sync::atomic::{AtomicBool, Ordering};
        /// Stops the checkpoints when `write` returns or unwinds.
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let path = self.path.clone();
        let err = |e| sqlite(&path, e);
        let checkpointer = crate::sqlite::open_write(&path).map_err(err)?;
        const WRITER_CHECKPOINT_PAGES: i64 = 16_384;
        const DEFAULT_CHECKPOINT_PAGES: i64 = 1_000;
        self.conn
            .pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)
            .map_err(err)?;
        let done = AtomicBool::new(false);
        let result = std::thread::scope(|scope| {
            let done = &done;
            scope.spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    // A checkpoint that fails leaves its frames to the next.
                    let _ =
                        checkpointer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                }
            });
            let _stop = Stop(done);
            write(self)
        });
        self.conn
            .pragma_update(None, "wal_autocheckpoint", DEFAULT_CHECKPOINT_PAGES)
            .map_err(err)?;
        Ok(result)
    }

    /// Stores the memos of nodes planned fresh up to a day (`plan::memo`).
    pub fn record_memos(&mut self, memos: &[(NodeKey, Memo)]) -> Result<(), StoreError> {
        if memos.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let err = |e| sqlite(&path, e);
        let tx = self.conn.transaction().map_err(err)?;
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

    /// Records targets as built, in one transaction: keys, slices, the
    /// ranges they read, the input partitions they read (`read`: table, day,
    /// fingerprint, once each), and clears their failures and forced marks.
    /// Returns the sequence number of the write.
    pub fn record_built(
        &mut self,
        built: &[Built],
        read: &[(String, Day, Hash)],
    ) -> Result<i64, StoreError> {
        self.record_built_after(built, read, None)
    }

    /// `record_built`, and in the same transaction the end of the attempt
    /// that built them: (attempt id, exit code, duration).
    pub fn record_built_after(
        &mut self,
        built: &[Built],
        read: &[(String, Day, Hash)],
        attempt: Option<&Attempt>,
    ) -> Result<i64, StoreError> {
        let mut tables: Vec<&str> = read.iter().map(|(t, _, _)| t.as_str()).collect();
        tables.dedup();
        self.load_latest_seen(tables.into_iter())?;
        let path = self.path.clone();
        let err = |e| sqlite(&path, e);
        let tx = self.conn.transaction().map_err(err)?;
        let seq: i64 = tx
            .query_row("SELECT value FROM counters WHERE name = 'seq'", [], |row| {
                row.get(0)
            })
            .optional()
            .map_err(err)?
            .unwrap_or(0)
            + 1;
        tx.execute(
            "INSERT OR REPLACE INTO counters (name, value) VALUES ('seq', ?1)",
            [seq],
        )
        .map_err(err)?;
        let now = crate::clock::unix_now();
        if let Some(attempt) = attempt {
            Self::insert_attempt(&mut self.node_ids, &tx, attempt).map_err(err)?;
        }
        let mut new_seen: Vec<(&str, Day, Hash)> = Vec::new();
        let mut new_slices = Vec::new();
        {
            let mut seen = tx.prepare_cached("INSERT OR REPLACE INTO inputs_seen (tbl, day, seq, fingerprint) VALUES (?1, ?2, ?3, ?4)").map_err(err)?;
            for (table, day, fp) in read {
                let latest = self
                    .latest_seen
                    .get(table.as_str())
                    .and_then(|m| m.get(day));
                if latest != Some(fp) {
                    seen.execute(params![table, day.0, seq, &fp.0[..]])
                        .map_err(err)?;
                    new_seen.push((table, *day, *fp));
                }
            }
            let mut slice = tx
                .prepare_cached("INSERT OR IGNORE INTO slices (hash, json) VALUES (?1, ?2)")
                .map_err(err)?;
            let mut target = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO targets (node, day, key, slice, inputs, output, seq, built_at, inputs_doc)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(err)?;
            let mut clear_failed = tx
                .prepare_cached("DELETE FROM failures WHERE node = ?1 AND day = ?2")
                .map_err(err)?;
            let mut clear_forced = tx
                .prepare_cached("DELETE FROM forced WHERE node = ?1 AND day = ?2")
                .map_err(err)?;
            let mut forget_targets = tx
                .prepare_cached("DELETE FROM targets WHERE node = ?1 AND day != ?2")
                .map_err(err)?;
            // Its targets up to a memo's last day change: the memo no longer
            // holds. One that ends before every day written still does.
            let mut forget_memo = tx
                .prepare_cached("DELETE FROM node_memos WHERE node = ?1 AND last >= ?2")
                .map_err(err)?;
            // Per node, in the order written: the earliest day written.
            let mut earliest: Vec<(i64, i64)> = Vec::new();
            let mut has_failed = tx
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM failures WHERE node = ?1)")
                .map_err(err)?;
            let mut has_forced = tx
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM forced WHERE node = ?1)")
                .map_err(err)?;
            // Per node: its id, and whether it has failures or forced
            // marks to clear (most nodes have none: one query per node
            // instead of two deletes per target).
            // A job's targets come one node after another: the last node's
            // is found without hashing its key.
            let mut ids: HashMap<&NodeKey, (i64, bool, bool)> = HashMap::new();
            let mut last: Option<(&NodeKey, (i64, bool, bool))> = None;
            for b in built {
                let known = match last {
                    Some((key, seen)) if key == b.node => Some(seen),
                    _ => ids.get(b.node).copied(),
                };
                let (node, failed, forced) = match known {
                    Some(seen) => seen,
                    None => {
                        let id = Self::node_id(&mut self.node_ids, &tx, b.node).map_err(err)?;
                        let failed: bool = has_failed.query_row([id], |r| r.get(0)).map_err(err)?;
                        let forced: bool = has_forced.query_row([id], |r| r.get(0)).map_err(err)?;
                        ids.insert(b.node, (id, failed, forced));
                        (id, failed, forced)
                    }
                };
                last = Some((b.node, (node, failed, forced)));
                if !self.slices_stored.contains(&b.slice) && !new_slices.contains(&b.slice) {
                    slice
                        .execute(params![&b.slice.0[..], b.slice_json])
                        .map_err(err)?;
                    new_slices.push(b.slice);
                }
                let day = day_column(b.day);
                // Writing one version forgets every other day: no memo holds.
                let from = if b.sole { NO_PARTITION } else { day };
                match earliest.last_mut() {
                    Some((id, min)) if *id == node => *min = from.min(*min),
                    _ => earliest.push((node, from)),
                }
                if b.sole {
                    forget_targets.execute(params![node, day]).map_err(err)?;
                }
                target
                    .execute(params![
                        node,
                        day,
                        &b.key.0[..],
                        &b.slice.0[..],
                        &b.inputs.0[..],
                        &b.output.0[..],
                        seq,
                        now,
                        b.inputs_doc
                    ])
                    .map_err(err)?;
                if failed {
                    clear_failed.execute(params![node, day]).map_err(err)?;
                }
                if forced {
                    clear_forced.execute(params![node, day]).map_err(err)?;
                }
            }
            for (node, from) in earliest {
                forget_memo.execute(params![node, from]).map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        for (table, day, fp) in new_seen {
            self.latest_seen
                .entry(table.to_string())
                .or_default()
                .insert(day, fp);
        }
        self.slices_stored.extend(new_slices);
        Ok(seq)
    }

    /// Starts a run in the history; returns its id.
    pub fn begin_run(&mut self, args: &[String]) -> Result<i64, StoreError> {
        let args = serde_json::to_string(args).expect("args serialize");
        self.conn
            .execute(
                "INSERT INTO runs (args, started_at) VALUES (?1, ?2)",
                params![args, crate::clock::unix_now()],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn end_run(&mut self, run: i64, result: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE runs SET ended_at = ?2, result = ?3 WHERE id = ?1",
                params![run, crate::clock::unix_now(), result],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Records an ended attempt.
    pub fn record_attempt(&mut self, attempt: &Attempt) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |e| sqlite(&path, e);
        let tx = self.conn.transaction().map_err(err)?;
        Self::insert_attempt(&mut self.node_ids, &tx, attempt).map_err(err)?;
        tx.commit().map_err(err)
    }

    fn insert_attempt(
        cache: &mut HashMap<NodeKey, i64>,
        tx: &rusqlite::Transaction,
        attempt: &Attempt,
    ) -> rusqlite::Result<()> {
        let node = Self::node_id(cache, tx, &attempt.node)?;
        tx.execute(
            "INSERT INTO attempts (run, node, day_from, day_to, attempt, argv, exit_code, duration_ms, log_path, started_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                attempt.run,
                node,
                day_column(attempt.from),
                day_column(attempt.to),
                attempt.attempt,
                serde_json::to_string(&attempt.argv).expect("argv serializes"),
                attempt.exit_code,
                attempt.duration.as_millis() as i64,
                attempt.log_path,
                attempt.started_at,
            ],
        )?;
        Ok(())
    }

    /// Marks targets as failed in a run (cleared when they are next built).
    pub fn record_failed(
        &mut self,
        node: &NodeKey,
        days: &[Option<Day>],
        run: i64,
        exit_code: i32,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |e| sqlite(&path, e);
        let tx = self.conn.transaction().map_err(err)?;
        let id = Self::node_id(&mut self.node_ids, &tx, node).map_err(err)?;
        for day in days {
            tx.execute(
                "INSERT OR REPLACE INTO failures (node, day, run, exit_code) VALUES (?1, ?2, ?3, ?4)",
                params![id, day_column(*day), run, exit_code],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// Forces targets stale until they are next built (a restatement).
    pub fn force(&mut self, node: &NodeKey, days: &[Option<Day>]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |e| sqlite(&path, e);
        let tx = self.conn.transaction().map_err(err)?;
        let id = Self::node_id(&mut self.node_ids, &tx, node).map_err(err)?;
        for day in days {
            tx.execute(
                "INSERT OR IGNORE INTO forced (node, day) VALUES (?1, ?2)",
                params![id, day_column(*day)],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }
}

fn node_and_day(row: &rusqlite::Row) -> rusqlite::Result<(i64, i64)> {
    Ok((row.get(0)?, row.get(1)?))
}

fn day_and_fingerprint(row: &rusqlite::Row) -> rusqlite::Result<(Day, Hash)> {
    let fingerprint: Vec<u8> = row.get(1)?;
    Ok((
        Day(row.get(0)?),
        Hash::from_slice(&fingerprint).unwrap_or_default(),
    ))
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

#[cfg(test)]
mod tests {
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

    fn built<'a>(node: &'a NodeKey, key: &[u8]) -> Built<'a> {
        Built {
            node,
            day: Some(Day(10)),
            key: Hash::of(key),
            slice: Hash::of(b"slice"),
            slice_json: "{}",
            inputs: Hash::of(b"in"),
            output: Hash::of(b"out"),
            inputs_doc: "[]",
            sole: false,
        }
    }

    #[test]
    fn records_and_reads_back_builds_with_versioned_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(&dir.path().join("s.db")).unwrap();
        let node = NodeKey::new(Step::GroupByBackfill, "t.g", None);
        let read1 = vec![("ns.src".to_string(), Day(10), Hash::of(b"a"))];
        let read2 = vec![("ns.src".to_string(), Day(10), Hash::of(b"b"))];
        store.record_built(&[built(&node, b"k1")], &read1).unwrap();
        store.record_built(&[built(&node, b"k2")], &read2).unwrap();
        let state = store.load().unwrap();
        let recorded = state[&node].built[&10];
        assert_eq!(recorded.key, Hash::of(b"k2"));
        assert_eq!(recorded.seq, 2);
        assert_eq!(
            store.seen_at("ns.src", Day(0), Day(20), 1).unwrap()[&Day(10)],
            Hash::of(b"a")
        );
        assert_eq!(
            store.seen_at("ns.src", Day(0), Day(20), 2).unwrap()[&Day(10)],
            Hash::of(b"b")
        );
        assert_eq!(
            store.slice_json(&Hash::of(b"slice")).unwrap().as_deref(),
            Some("{}")
        );
    }

    #[test]
    fn writing_a_nodes_targets_up_to_its_memo_deletes_it_and_lazy_loads_agree() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(&dir.path().join("s.db")).unwrap();
        let (node, other) = (
            NodeKey::new(Step::GroupByBackfill, "t.g", None),
            NodeKey::new(Step::GroupByUpload, "t.g", None),
        );
        store
            .record_built(&[built(&node, b"k1"), built(&other, b"k1")], &[])
            .unwrap();
        // Both cover day 10, the day recorded.
        let memo = Memo {
            digest: Hash::of(b"memo"),
            last: 10,
        };
        let memo_of = |store: &StateStore, node: &NodeKey| {
            store.load_lazily().unwrap().get(node).and_then(|s| s.memo)
        };
        store
            .record_memos(&[(node.clone(), memo), (other.clone(), memo)])
            .unwrap();
        let lazy = store.load_lazily().unwrap();
        assert_eq!(lazy[&node].memo, Some(memo));
        assert!(lazy[&node].built.is_empty(), "targets are not loaded");
        assert_eq!(
            store.load_targets(&node, NO_PARTITION).unwrap(),
            store.load().unwrap()[&node].built
        );
        assert_eq!(
            store.built_nodes().unwrap(),
            [node.clone(), other.clone()].into_iter().collect()
        );

        // A day after the memo's last keeps it; the memo's own day does not.
        let later = Built {
            day: Some(Day(11)),
            ..built(&node, b"k3")
        };
        store.record_built(&[later], &[]).unwrap();
        assert_eq!(memo_of(&store, &node), Some(memo), "day 11 is after it");
        store
            .record_built(&[built(&node, b"k2"), built(&node, b"k4")], &[])
            .unwrap();
        assert_eq!(memo_of(&store, &node), None, "day 10 changed");
        assert_eq!(memo_of(&store, &other), Some(memo), "another node's stays");
        assert_eq!(
            store.load_targets(&node, NO_PARTITION).unwrap()[&10].key,
            Hash::of(b"k4")
        );
        assert_eq!(
            store.load_targets(&node, 11).unwrap().len(),
            1,
            "from day 11"
        );

        // A version that replaces every other day (a KV upload) forgets any
        // memo, even one that ends before it.
        let sole = Built {
            day: Some(Day(12)),
            sole: true,
            ..built(&other, b"k5")
        };
        store.record_built(&[sole], &[]).unwrap();
        assert_eq!(memo_of(&store, &other), None, "the other days are gone");
    }
}
