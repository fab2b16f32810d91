//! The adopt writer: a thread that owns the state while jobs are keyed and
//! probed, and writes what they record in order. What queued while the last
//! batch was written goes in the next one: a transaction per batch, never a
//! job split between two; a failed write ends the thread with its error.

use std::sync::mpsc::Receiver;

use crate::error::Error;
use crate::hash::Hash;
use crate::partition::Day;
use crate::plan::BuildRecord;
use crate::store::{NodeKey, StateStore};

/// The most targets the adopt writer puts in one transaction.
const BATCH_TARGETS: usize = 4096;

/// What the adopt writer writes, in order.
pub(super) enum Write {
    /// A job's targets.
    Job(Recording),
    /// A node's memo, sent after all its targets.
    Memo(NodeKey, Hash),
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

    /// Writes jobs' targets in one transaction (one sequence number, the
    /// input partitions they read recorded once), then the memos (writing a
    /// node's targets deletes its memo).
    fn write(batch: Vec<Write>, store: &mut StateStore) -> Result<(), Error> {
        let mut jobs = Vec::new();
        let mut memos = Vec::new();
        for write in batch {
            match write {
                Write::Job(job) => jobs.push(job),
                Write::Memo(node, memo) => memos.push((node, memo)),
            }
        }
        let built: Vec<_> = jobs
            .iter()
            .flat_map(|job| job.records.iter().zip(&job.outputs))
            .filter_map(|(r, o)| o.map(|o| r.built(o)))
            .collect();
        let mut read: Vec<(String, Day, Hash)> = jobs
            .iter()
            .flat_map(|job| job.read.iter().cloned())
            .collect();
        read.sort_unstable();
        read.dedup();
        if !built.is_empty() {
            store.record_built_after(&built, &read, None)?;
        }
        if !memos.is_empty() {
            store.record_memos(&memos)?;
        }
        Ok(())
    }
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
