//! The adopt writer: a thread that owns the state while jobs are keyed and
//! probed, and writes what they record in order. What queued while the last
//! batch was written goes in the next one: a transaction per batch, never a
//! job split between two; a failed write ends the thread with its error.

use std::sync::mpsc::Receiver;

use crate::error::Error;
use crate::hash::Hash;
use crate::partition::Day;
use crate::plan::BuildRecord;
use crate::store::{Memo, NodeKey, StateStore};

/// The most targets the adopt writer puts in one transaction.
const BATCH_TARGETS: usize = 4096;

/// What the adopt writer writes, in order.
pub(super) enum Write {
    /// A job's targets.
    Job(Recording),
    /// A node's memo, sent after all its targets.
    Memo(NodeKey, Memo),
}

/// A job's targets to record, for the writer thread.
pub(super) struct Recording {
    pub records: Vec<BuildRecord>,
    pub outputs: Vec<Option<Hash>>,
    pub read: Vec<(String, Day, Hash)>,
}

impl Write {
    fn targets(&self) -> usize {
        match self {
            Write::Job(job) => job.records.len(),
            Write::Memo(..) => 0,
        }
    }

    /// Writes jobs' targets in one transaction (`record`), then the memos
    /// (writing a node's targets deletes a memo of their days).
    fn write(batch: Vec<Write>, store: &mut StateStore) -> Result<(), Error> {
        let mut jobs = Vec::new();
        let mut memos = Vec::new();
        for write in batch {
            match write {
                Write::Job(job) => jobs.push(job),
                Write::Memo(node, memo) => memos.push((node, memo)),
            }
        }
        record(&jobs, store)?;
        if !memos.is_empty() {
            store.record_memos(&memos)?;
        }
        Ok(())
    }
}

/// Records jobs' targets in one transaction: one sequence number, each
/// input partition they read recorded once. Jobs that read one partition
/// with two fingerprints cannot share a sequence number (`inputs_seen`
/// keeps one per partition and write): they are written one by one.
fn record(jobs: &[Recording], store: &mut StateStore) -> Result<(), Error> {
    let built: Vec<_> = jobs
        .iter()
        .flat_map(|job| job.records.iter().zip(&job.outputs))
        .filter_map(|(r, o)| o.map(|o| r.built(o)))
        .collect();
    if built.is_empty() {
        return Ok(());
    }
    let mut read: Vec<(String, Day, Hash)> = jobs
        .iter()
        .flat_map(|job| job.read.iter().cloned())
        .collect();
    read.sort_unstable();
    read.dedup();
    let twice = read
        .windows(2)
        .any(|w| (&w[0].0, w[0].1) == (&w[1].0, w[1].1));
    if twice && jobs.len() > 1 {
        for job in jobs {
            record(std::slice::from_ref(job), store)?;
        }
        return Ok(());
    }
    store.record_built_after(&built, &read, None)?;
    Ok(())
}

/// Writes everything sent until the channel closes.
pub(super) fn write_all(receiver: Receiver<Write>, store: &mut StateStore) -> Result<(), Error> {
    while let Ok(first) = receiver.recv() {
        let mut targets = first.targets();
        let mut batch = vec![first];
        while targets < BATCH_TARGETS {
            let Ok(next) = receiver.try_recv() else { break };
            targets += next.targets();
            batch.push(next);
        }
        Write::write(batch, store)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::graph::Step;

    fn job(config: &str, read: Hash) -> Recording {
        let day = Day(20_100);
        let record = BuildRecord {
            node: Arc::new(NodeKey::new(Step::StagingQuery, config, None)),
            day: Some(day),
            key: Hash::of(config.as_bytes()),
            slice: Hash::of(b"slice"),
            slice_json: "{}".into(),
            inputs_hash: Hash::of(b"[]"),
            inputs_doc: "[]".into(),
            sole: false,
            output_table: None,
        };
        Recording {
            outputs: vec![Some(Hash::of(b"out"))],
            records: vec![record],
            read: vec![("raw.t".into(), day, read)],
        }
    }

    #[test]
    fn a_partition_read_with_two_fingerprints_keeps_both() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mut store = StateStore::open(&path).unwrap();
        let batch = vec![
            Write::Job(job("a", Hash::of(b"first"))),
            Write::Job(job("b", Hash::of(b"first"))),
        ];
        Write::write(batch, &mut store).unwrap();
        let batch = vec![
            Write::Job(job("c", Hash::of(b"second"))),
            Write::Job(job("d", Hash::of(b"third"))),
            Write::Memo(
                NodeKey::new(Step::StagingQuery, "d", None),
                Memo {
                    digest: Hash::of(b"m"),
                    last: crate::store::NO_PARTITION,
                    versions: None,
                },
            ),
        ];
        Write::write(batch, &mut store).unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(count("SELECT count(*) FROM targets"), 4);
        // One write for the first batch, one per job for the second.
        assert_eq!(count("SELECT count(DISTINCT seq) FROM targets"), 3);
        assert_eq!(
            count("SELECT count(DISTINCT fingerprint) FROM inputs_seen"),
            3
        );
        assert_eq!(count("SELECT count(*) FROM node_memos"), 1);
    }
}
