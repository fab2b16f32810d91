//! The recorder: where what a job ended with is written, one place for
//! each of the run's modes. A real run writes a job's built targets as it
//! ends, in one transaction with the attempt that built them
//! (`StateStore::record_built_after`), and marks failures so the next plan
//! says `previous-run-failed`; adopt hands the targets to its writer
//! thread, which owns the state meanwhile (`writer`); a dry run writes
//! nothing.

use std::sync::mpsc::SyncSender;

use super::writer::{Recording, Write};
use crate::error::Error;
use crate::graph::{Graph, Node};
use crate::hash::Hash;
use crate::partition::Day;
use crate::plan::{self, BuildRecord, Plan};
use crate::store::{Attempt, StateStore};

/// Where a run's outcomes go.
pub(super) enum Recorder<'r> {
    /// The state, written as jobs end (a real run).
    State(&'r mut StateStore),
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
        writer: Option<&'r SyncSender<Write>>,
    ) -> Recorder<'r> {
        match (action, store, writer) {
            (_, _, Some(writer)) => Recorder::Writer(writer),
            (super::Action::DryRun, _, None) | (_, None, None) => Recorder::Nowhere,
            (_, Some(store), None) => Recorder::State(store),
        }
    }

    /// Writes the targets of a job whose outputs are there, with the
    /// attempt that built them (or the attempt alone when none is); returns
    /// the write's sequence number. It is 0 when no write was made here:
    /// adopt's writer thread numbers its own writes (`hand_off`), and the
    /// run's plan never reads it.
    pub fn built(
        &mut self,
        planned: Planned<'_>,
        node: &Node,
        (records, outputs): (&[BuildRecord], &[Option<Hash>]),
        attempt: Option<&Attempt>,
    ) -> Result<i64, Error> {
        let Recorder::State(store) = self else {
            return Ok(0);
        };
        let mut built = Vec::new();
        let mut days = Vec::new();
        for (record, output) in records.iter().zip(outputs) {
            if let Some(output) = output {
                built.push(record.built(*output));
                days.push(record.day);
            }
        }
        if built.is_empty() {
            if let Some(attempt) = attempt {
                store.record_attempt(attempt)?;
            }
            return Ok(0);
        }
        Ok(store.record_built_after(&built, &planned.reads(node, &days), attempt)?)
    }

    /// Adopt: sends a job's targets whose outputs are there to the writer
    /// thread, with the input partitions they read. A closed channel means
    /// the writer stopped on an error, which the adoption returns when it
    /// ends.
    pub fn hand_off(
        &self,
        planned: Planned<'_>,
        node: &Node,
        records: Vec<BuildRecord>,
        outputs: Vec<Option<Hash>>,
    ) {
        let Recorder::Writer(writer) = self else {
            return;
        };
        let days: Vec<Option<Day>> = records
            .iter()
            .zip(&outputs)
            .filter(|(_, output)| output.is_some())
            .map(|(record, _)| record.day)
            .collect();
        if days.is_empty() {
            return;
        }
        let read = planned.reads(node, &days);
        let _ = writer.send(Write::Job(Recording {
            records,
            outputs,
            read,
        }));
    }

    /// Records an attempt that built nothing (it failed, or was killed).
    pub fn attempt(&mut self, attempt: &Attempt) -> Result<(), Error> {
        if let Recorder::State(store) = self {
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
        if let Recorder::State(store) = self {
            store.record_failed(&plan::node_key(node), days, run_id, exit_code)?;
        }
        Ok(())
    }
}
