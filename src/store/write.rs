//! Recording builds: targets, their slices, the input partitions they read
//! and everything a build clears, in one transaction per write. This is
//! the hot path of `adopt` (a million targets): statements are prepared
//! once per transaction and most nodes cost no query per target.

use std::collections::{HashMap, HashSet};

use rusqlite::{CachedStatement, Connection, params};

use super::db::{Db, DbError, DbResult, args};
use super::records::day_and_fingerprint;
use super::{Attempt, Built, NO_PARTITION, NodeKey, StateStore, StoreError, day_column};
use crate::hash::Hash;
use crate::partition::Day;

impl StateStore {
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
        let seqs = self.record_jobs(&[JobWrite {
            built,
            read,
            attempt,
        }])?;
        Ok(seqs[0])
    }

    /// Several jobs' `record_built_after` in one transaction, in order,
    /// each its own write with its own sequence number (returned in
    /// order): a group commit, which costs the transaction's log writes
    /// once for all of them.
    pub fn record_jobs(&mut self, jobs: &[JobWrite]) -> Result<Vec<i64>, StoreError> {
        let tables: HashSet<&str> = jobs
            .iter()
            .flat_map(|j| j.read.iter().map(|(t, _, _)| t.as_str()))
            .collect();
        self.load_latest_seen(tables.into_iter())?;
        let now = crate::clock::unix_now();
        let (node_ids, latest_seen) = (&mut self.node_ids, &self.latest_seen);
        let slices_stored = &self.slices_stored;
        let written = super::retry::retrying(&self.db, &self.location, node_ids, |db, node_ids| {
            let mut seqs = Vec::with_capacity(jobs.len());
            let mut seen = HashMap::new();
            let mut new_slices = Vec::new();
            // Prepared once for all the jobs: each node's marks are read
            // once per transaction.
            let mut sqlite_writes = match db {
                Db::Sqlite(conn) => Some(TargetWrites::prepare(conn, now)?),
                Db::Pg(_) => None,
            };
            for job in jobs {
                let seq = next_seq(db)?;
                if let Some(attempt) = job.attempt {
                    Self::insert_attempt(node_ids, db, attempt)?;
                }
                record_inputs_seen(db, latest_seen, &mut seen, job.read, seq)?;
                new_slices.extend(match sqlite_writes.as_mut() {
                    Some(writes) => {
                        writes.seq = seq;
                        writes.write_all(db, node_ids, slices_stored, job.built)?
                    }
                    None => super::pg_write::write_targets(
                        db,
                        node_ids,
                        slices_stored,
                        job.built,
                        seq,
                        now,
                    )?,
                });
                if let Some(attempt) = job.attempt {
                    // The attempt's run held claims on what it built:
                    // released in the transaction that records it.
                    super::claims::release_built(db, node_ids, job.built, attempt.run)?;
                }
                seqs.push(seq);
            }
            Ok((seqs, seen, new_slices))
        });
        let (seqs, seen, new_slices) = written.map_err(|e| self.err(e))?;
        self.writes.own += seqs.len() as i64;
        for ((table, day), fp) in seen {
            self.latest_seen
                .entry(table.to_string())
                .or_default()
                .insert(day, fp);
        }
        self.slices_stored.extend(new_slices);
        Ok(seqs)
    }

    /// Forces targets stale until they are next built (a restatement).
    pub fn force(&mut self, node: &NodeKey, days: &[Option<Day>]) -> Result<(), StoreError> {
        let node_ids = &mut self.node_ids;
        let done = super::retry::retrying(&self.db, &self.location, node_ids, |db, node_ids| {
            let id = Self::node_id(node_ids, db, node)?;
            for day in days {
                db.execute(
                    "INSERT INTO forced (node, day) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                    args![id, day_column(*day)],
                )?;
            }
            Ok(())
        });
        done.map_err(|e| self.err(e))
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
                args![table],
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
        let (Db::Sqlite(conn), super::StateLocation::File(path)) = (&self.db, &self.location)
        else {
            // PostgreSQL checkpoints on its own.
            return Ok(write(self));
        };
        let path = path.clone();
        let err = |e| super::sqlite(&path, e);
        let checkpointer = crate::sqlite::open_write(&path).map_err(err)?;
        const WRITER_CHECKPOINT_PAGES: i64 = 16_384;
        const DEFAULT_CHECKPOINT_PAGES: i64 = 1_000;
        conn.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)
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
        if let Db::Sqlite(conn) = &self.db {
            conn.pragma_update(None, "wal_autocheckpoint", DEFAULT_CHECKPOINT_PAGES)
                .map_err(err)?;
        }
        Ok(result)
    }
}

/// Writes of targets (each numbered by `next_seq`) since a store was
/// opened for writing: how many there were then, and how many it made.
#[derive(Clone, Copy, Default)]
pub(super) struct Writes {
    at_open: i64,
    own: i64,
}

impl Writes {
    pub(super) fn at(last_seq: i64) -> Writes {
        Writes {
            at_open: last_seq,
            own: 0,
        }
    }
}

impl StateStore {
    /// The number of the state's last write of targets (0 when none).
    pub(super) fn last_seq(&self) -> Result<i64, StoreError> {
        let rows = self.select(
            "SELECT value FROM counters WHERE name = 'seq'",
            args![],
            |row| row.int(0),
        )?;
        Ok(rows.first().copied().unwrap_or(0))
    }

    /// Whether anything but this store wrote targets since it was opened
    /// (before the plan read the state): when not, no other run recorded
    /// what this run is about to build.
    pub fn others_wrote(&self) -> Result<bool, StoreError> {
        Ok(self.last_seq()? - self.writes.at_open != self.writes.own)
    }
}

/// The sequence number of this write: one more than the last one, stored.
pub(super) fn next_seq(db: &Db) -> DbResult<i64> {
    let seq = db
        .query_opt(
            "INSERT INTO counters (name, value) VALUES ('seq', 1)
             ON CONFLICT (name) DO UPDATE SET value = counters.value + 1
             RETURNING value",
            &[],
            |row| row.int(0),
        )?
        .ok_or_else(|| DbError::Other("no sequence number returned".into()))?;
    Ok(seq)
}

/// Writes the input partitions read (table, day, fingerprint) whose
/// fingerprint differs from the newest one recorded (in the state, or by
/// this transaction's earlier writes: `seen`), at `seq`; `seen` gets them,
/// for the cache once the transaction commits.
fn record_inputs_seen<'r>(
    db: &Db,
    latest_seen: &HashMap<String, HashMap<Day, Hash>>,
    seen: &mut HashMap<(&'r str, Day), Hash>,
    read: &'r [(String, Day, Hash)],
    seq: i64,
) -> DbResult<()> {
    for (table, day, fp) in read {
        let latest = seen
            .get(&(table.as_str(), *day))
            .or_else(|| latest_seen.get(table.as_str()).and_then(|m| m.get(day)));
        if latest != Some(fp) {
            db.execute(
                "INSERT INTO inputs_seen (tbl, day, seq, fingerprint) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (tbl, day, seq) DO UPDATE SET fingerprint = excluded.fingerprint",
                args![table, day.0, seq, &fp.0[..]],
            )?;
            seen.insert((table.as_str(), *day), *fp);
        }
    }
    Ok(())
}

/// One job's write in `record_jobs`: the targets it built, the input
/// partitions they read (table, day, fingerprint, once each) and the
/// attempt that built them.
pub struct JobWrite<'w> {
    pub built: &'w [Built<'w>],
    pub read: &'w [(String, Day, Hash)],
    pub attempt: Option<&'w Attempt>,
}

/// A node as a write of its targets finds it: its id, and whether it has
/// failures or forced marks to clear (most nodes have none: one query per
/// node instead of two deletes per target).
#[derive(Clone, Copy)]
struct NodeMarks {
    id: i64,
    failed: bool,
    forced: bool,
}

/// The statements that record targets, prepared once per transaction, the
/// current write's sequence number, the time, and the marks of the nodes
/// written so far in the transaction (a write clears marks, never adds
/// any: what was read first stays true enough to skip the deletes).
struct TargetWrites<'c> {
    seq: i64,
    now: i64,
    marks: HashMap<i64, NodeMarks>,
    slice: CachedStatement<'c>,
    target: CachedStatement<'c>,
    clear_failed: CachedStatement<'c>,
    clear_forced: CachedStatement<'c>,
    forget_targets: CachedStatement<'c>,
    forget_memo: CachedStatement<'c>,
    has_failed: CachedStatement<'c>,
    has_forced: CachedStatement<'c>,
    set_output: CachedStatement<'c>,
}

impl<'c> TargetWrites<'c> {
    /// The statements, on the SQLite connection (in its transaction).
    fn prepare(tx: &'c Connection, now: i64) -> rusqlite::Result<TargetWrites<'c>> {
        Ok(TargetWrites {
            seq: 0,
            now,
            marks: HashMap::new(),
            slice: tx.prepare_cached("INSERT OR IGNORE INTO slices (hash, json) VALUES (?1, ?2)")?,
            target: tx.prepare_cached(
                "INSERT OR REPLACE INTO targets (node, day, key, slice, inputs, output, seq, built_at, inputs_doc)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?,
            clear_failed: tx.prepare_cached("DELETE FROM failures WHERE node = ?1 AND day = ?2")?,
            clear_forced: tx.prepare_cached("DELETE FROM forced WHERE node = ?1 AND day = ?2")?,
            forget_targets: tx
                .prepare_cached("DELETE FROM targets WHERE node = ?1 AND day != ?2")?,
            // Its targets up to a memo's last day change: the memo no longer
            // holds. One that ends before every day written still does.
            forget_memo: tx
                .prepare_cached("DELETE FROM node_memos WHERE node = ?1 AND last >= ?2")?,
            has_failed: tx
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM failures WHERE node = ?1)")?,
            has_forced: tx
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM forced WHERE node = ?1)")?,
            set_output: tx.prepare_cached(
                "UPDATE nodes SET output = ?2 WHERE id = ?1 AND output IS DISTINCT FROM ?2",
            )?,
        })
    }

    /// Writes the targets, their slices not stored yet, and what they
    /// imply (failures and forced marks cleared, memos forgotten); returns
    /// the slices written.
    fn write_all(
        &mut self,
        db: &Db,
        node_ids: &mut HashMap<NodeKey, i64>,
        slices_stored: &HashSet<Hash>,
        built: &[Built],
    ) -> DbResult<Vec<Hash>> {
        let mut new_slices = Vec::new();
        // Per node, in the order written: the earliest day written.
        let mut earliest: Vec<(i64, i64)> = Vec::new();
        // A job's targets come one node after another: the last node's
        // is found without hashing its key.
        let mut last: Option<(&NodeKey, NodeMarks)> = None;
        for b in built {
            let marks = match last {
                Some((key, marks)) if key == b.node => marks,
                _ => self.node_marks(db, node_ids, b)?,
            };
            last = Some((b.node, marks));
            if !slices_stored.contains(&b.slice) && !new_slices.contains(&b.slice) {
                self.slice.execute(params![&b.slice.0[..], b.slice_json])?;
                new_slices.push(b.slice);
            }
            let day = day_column(b.day);
            // Writing one version forgets every other day: no memo holds.
            let from = if b.sole { NO_PARTITION } else { day };
            match earliest.last_mut() {
                Some((id, min)) if *id == marks.id => *min = from.min(*min),
                _ => earliest.push((marks.id, from)),
            }
            self.target_row(b, marks, day)?;
        }
        self.forget_memos(&earliest)?;
        Ok(new_slices)
    }

    /// The node's id and marks: from the marks read in this transaction,
    /// or read (the node inserted when new, its output table kept) and
    /// kept.
    fn node_marks(
        &mut self,
        db: &Db,
        node_ids: &mut HashMap<NodeKey, i64>,
        b: &Built,
    ) -> DbResult<NodeMarks> {
        let id = StateStore::node_id(node_ids, db, b.node)?;
        if let Some(marks) = self.marks.get(&id) {
            return Ok(*marks);
        }
        if let Some(table) = b.output_table {
            self.set_output.execute(params![id, table])?;
        }
        let marks = NodeMarks {
            id,
            failed: self.has_failed.query_row([id], |r| r.get(0))?,
            forced: self.has_forced.query_row([id], |r| r.get(0))?,
        };
        self.marks.insert(id, marks);
        Ok(marks)
    }

    /// One target's row, in place of the node's other days when it is
    /// their sole version, and its failure and forced marks cleared.
    fn target_row(&mut self, b: &Built, marks: NodeMarks, day: i64) -> rusqlite::Result<()> {
        let node = marks.id;
        if b.sole {
            self.forget_targets.execute(params![node, day])?;
        }
        self.target.execute(params![
            node,
            day,
            &b.key.0[..],
            &b.slice.0[..],
            &b.inputs.0[..],
            &b.output.0[..],
            self.seq,
            self.now,
            b.inputs_doc
        ])?;
        if marks.failed {
            self.clear_failed.execute(params![node, day])?;
        }
        if marks.forced {
            self.clear_forced.execute(params![node, day])?;
        }
        Ok(())
    }

    /// Deletes the memos of the nodes written that cover a day written:
    /// per node, the earliest day written.
    fn forget_memos(&mut self, earliest: &[(i64, i64)]) -> rusqlite::Result<()> {
        for (node, from) in earliest {
            self.forget_memo.execute(params![node, from])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::Step;
    use crate::store::Memo;

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
            output_table: Some("t.g"),
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

    /// A group commit writes each job as a write of its own: its own
    /// sequence number, an input version only when it differs from the one
    /// an earlier job of the group wrote, and the failures of every job's
    /// targets cleared (the node's marks are read once).
    #[test]
    fn jobs_written_together_are_each_their_own_write() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(&dir.path().join("s.db")).unwrap();
        let node = NodeKey::new(Step::GroupByBackfill, "t.g", None);
        let on = |day: i32, key: &[u8]| Built {
            day: Some(Day(day)),
            ..built(&node, key)
        };
        store
            .record_failed(&node, &[Some(Day(10)), Some(Day(11))], 1, 1)
            .unwrap();
        let (a, b) = (Hash::of(b"a"), Hash::of(b"b"));
        let read = |fp: Hash| vec![("ns.src".to_string(), Day(10), fp)];
        let (read_a, read_b) = (read(a), read(b));
        let (first, second, third) = ([on(10, b"k1")], [on(11, b"k2")], [on(12, b"k3")]);
        let job = |built, read| JobWrite {
            built,
            read,
            attempt: None,
        };
        let seqs = store
            .record_jobs(&[
                job(&first[..], &read_a),
                job(&second[..], &read_a),
                job(&third[..], &read_b),
            ])
            .unwrap();
        assert_eq!(seqs, [1, 2, 3]);
        let state = store.load().unwrap();
        let seq_of = |day: i64| state[&node].built[&day].seq;
        assert_eq!((seq_of(10), seq_of(11), seq_of(12)), (1, 2, 3));
        assert!(state[&node].failed.is_empty(), "{:?}", state[&node].failed);
        let versions = store
            .select("SELECT seq FROM inputs_seen ORDER BY seq", args![], |row| {
                row.int(0)
            })
            .unwrap();
        assert_eq!(versions, [1, 3]);
        assert_eq!(
            store.seen_at("ns.src", Day(0), Day(20), 2).unwrap()[&Day(10)],
            a
        );
    }

    /// A store tells whether anything else wrote targets since it opened
    /// the state: its own writes do not count, another store's do.
    #[test]
    fn a_store_knows_whether_others_wrote_since_it_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let node = NodeKey::new(Step::GroupByBackfill, "t.g", None);
        let mut other = StateStore::open(&path).unwrap();
        other.record_built(&[built(&node, b"k0")], &[]).unwrap();
        let mut mine = StateStore::open(&path).unwrap();
        assert!(!mine.others_wrote().unwrap());
        mine.record_built(&[built(&node, b"k1")], &[]).unwrap();
        assert!(!mine.others_wrote().unwrap());
        other.record_built(&[built(&node, b"k2")], &[]).unwrap();
        assert!(mine.others_wrote().unwrap());
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
            versions: Some(Hash::of(b"versions")),
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
            store.load_targets(&node, NO_PARTITION..=i64::MAX).unwrap(),
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
            store.load_targets(&node, NO_PARTITION..=i64::MAX).unwrap()[&10].key,
            Hash::of(b"k4")
        );
        assert_eq!(
            store.load_targets(&node, 11..=i64::MAX).unwrap().len(),
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
