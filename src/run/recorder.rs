//! The recorder: where what a job ended with is written, one place for
//! each of the run's modes. A real run writes a job's built targets with
//! the attempt that built them, each job its own write
//! (`StateStore::record_jobs`), and marks failures so the next plan says
//! `previous-run-failed`; adopt hands the targets to its writer thread,
//! which owns the state meanwhile (`writer`); a dry run writes nothing.
//!
//! A real run's writes are committed in groups (`Unwritten`): the jobs
//! that ended well within `GROUP_WAIT` of the first, at most `GROUP_JOBS`,
//! in one transaction. A transaction's commit costs more than a job's
//! rows (its log pages written): one per job was the largest part of the
//! runner's time per job. Writes stay in the order the jobs ended, so the
//! state never holds a target without the producers it read. What is not
//! written yet when the runner is killed is built again by the next run,
//! as a job that was running then is.

use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use super::writer::{Recording, Write};
use crate::error::Error;
use crate::graph::{Graph, Node};
use crate::hash::Hash;
use crate::partition::Day;
use crate::plan::{self, BuildRecord, Plan};
use crate::store::{Attempt, JobWrite, StateStore};

/// The most jobs one transaction writes.
const GROUP_JOBS: usize = 256;

/// How long the first job that ended well waits for others to be written
/// with it.
const GROUP_WAIT: Duration = Duration::from_millis(100);

/// Jobs that ended well, not written yet: the next group commit's.
#[derive(Default)]
pub(super) struct Unwritten {
    jobs: Vec<Ended>,
    /// When the first of them ended.
    since: Option<Instant>,
}

/// A job that ended well: the targets whose outputs are there, with their
/// outputs, the input partitions they read and the attempt.
struct Ended {
    records: Vec<BuildRecord>,
    outputs: Vec<Hash>,
    read: Vec<(String, Day, Hash)>,
    attempt: Option<Attempt>,
}

impl Unwritten {
    /// When the jobs waiting must be written, if any wait.
    pub fn due_at(&self) -> Option<Instant> {
        match self.jobs.len() {
            n if n >= GROUP_JOBS => Some(Instant::now()),
            _ => self.since.map(|since| since + GROUP_WAIT),
        }
    }

    /// How many jobs wait to be written.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }
}

/// Where a run's outcomes go.
pub(super) enum Recorder<'r> {
    /// The state, written as jobs end (a real run), in groups.
    State(&'r mut StateStore, &'r mut Unwritten),
    /// Adopt's writer thread, which owns the state.
    Writer(&'r SyncSender<Write>),
    /// A dry run: nothing is written.
    Nowhere,
}

/// What a job's targets were planned from: the graph and the run's plan,
/// for the input partitions each write records as read.
#[derive(Clone, Copy)]
pub(super) struct Planned<'p> {
    pub graph: &'p Graph,
    pub plan: &'p Plan,
}

impl<'p> Planned<'p> {
    pub fn new(graph: &'p Graph, live: &'p crate::plan::live::LivePlan<'_>) -> Planned<'p> {
        Planned {
            graph,
            plan: live.plan(),
        }
    }

    /// The input partitions the targets of `node` on `days` read, with
    /// their fingerprints as planned.
    fn reads(&self, node: &Node, days: &[Option<Day>]) -> Vec<(String, Day, Hash)> {
        let columns = self.plan.input_columns(self.graph, node);
        plan::reads(node, &columns, days, self.plan.until)
    }
}

impl<'r> Recorder<'r> {
    /// Where a run in mode `action` writes: adopt's writer thread while it
    /// runs, else the state, except in a dry run.
    pub fn new(
        action: super::Action,
        store: Option<&'r mut StateStore>,
        (unwritten, writer): (&'r mut Unwritten, Option<&'r SyncSender<Write>>),
    ) -> Recorder<'r> {
        match (action, store, writer) {
            (_, _, Some(writer)) => Recorder::Writer(writer),
            (super::Action::DryRun, _, None) | (_, None, None) => Recorder::Nowhere,
            (_, Some(store), None) => Recorder::State(store, unwritten),
        }
    }

    /// A job's targets whose outputs are there (`outputs`, per record),
    /// with the attempt that built them: for the next group commit
    /// (`write`), or the attempt alone, at once, when none is there; to
    /// adopt's writer thread, with the input partitions they read. A
    /// closed channel means the writer stopped on an error, which the
    /// adoption returns when it ends.
    pub fn built(
        &mut self,
        planned: Planned<'_>,
        node: &Node,
        (records, outputs): (Vec<BuildRecord>, Vec<Option<Hash>>),
        attempt: Option<Attempt>,
    ) -> Result<(), Error> {
        let days: Vec<Option<Day>> = records
            .iter()
            .zip(&outputs)
            .filter(|(_, output)| output.is_some())
            .map(|(record, _)| record.day)
            .collect();
        match self {
            Recorder::Nowhere => {}
            Recorder::Writer(_) if days.is_empty() => {}
            Recorder::Writer(writer) => {
                let read = planned.reads(node, &days);
                let _ = writer.send(Write::Job(Recording {
                    records,
                    outputs,
                    read,
                }));
            }
            Recorder::State(store, _) if days.is_empty() => {
                if let Some(attempt) = attempt {
                    store.record_attempt(&attempt)?;
                }
            }
            Recorder::State(_, unwritten) => {
                let read = planned.reads(node, &days);
                let (records, outputs) = records
                    .into_iter()
                    .zip(outputs)
                    .filter_map(|(record, output)| Some((record, output?)))
                    .unzip();
                unwritten.since.get_or_insert_with(Instant::now);
                unwritten.jobs.push(Ended {
                    records,
                    outputs,
                    read,
                    attempt,
                });
            }
        }
        Ok(())
    }

    /// Writes the jobs that ended well and wait, in one transaction.
    pub fn write(&mut self) -> Result<(), Error> {
        let Recorder::State(store, unwritten) = self else {
            return Ok(());
        };
        if unwritten.jobs.is_empty() {
            return Ok(());
        }
        let built: Vec<Vec<crate::store::Built>> = unwritten
            .jobs
            .iter()
            .map(|job| {
                job.records
                    .iter()
                    .zip(&job.outputs)
                    .map(|(record, output)| record.built(*output))
                    .collect()
            })
            .collect();
        let writes: Vec<JobWrite> = unwritten
            .jobs
            .iter()
            .zip(&built)
            .map(|(job, built)| JobWrite {
                built,
                read: &job.read,
                attempt: job.attempt.as_ref(),
            })
            .collect();
        store.record_jobs(&writes)?;
        drop(writes);
        drop(built);
        unwritten.jobs.clear();
        unwritten.since = None;
        Ok(())
    }

    /// Records an attempt that built nothing (it failed, or was killed).
    pub fn attempt(&mut self, attempt: &Attempt) -> Result<(), Error> {
        if let Recorder::State(store, _) = self {
            store.record_attempt(attempt)?;
        }
        Ok(())
    }

    /// Marks a node's targets on `days` failed by run `run_id`.
    pub fn failed(
        &mut self,
        node: &Node,
        days: &[Option<Day>],
        run_id: i64,
        exit_code: i32,
    ) -> Result<(), Error> {
        if let Recorder::State(store, _) = self {
            store.record_failed(&plan::node_key(node), days, run_id, exit_code)?;
        }
        Ok(())
    }
}
