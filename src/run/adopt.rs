//! Adopt's driver: a job "succeeds" when its output partitions already
//! exist in the warehouse, and its targets are recorded as built by a
//! writer thread (`writer`) while the next jobs are keyed and probed; one
//! chunk of jobs after another, no process started.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::sync_channel;

use super::writer::{self, Write};
use super::{Runner, job};
use crate::error::Error;
use crate::graph::NodeId;
use crate::plan::{self, BuildRecord, Column};
use crate::probe::Partitions;

impl Runner<'_, '_> {
    /// Adopting: a writer thread records jobs' targets while the next
    /// jobs are keyed and probed (`writer`), and another connection
    /// checkpoints the WAL beside it. A failed write stops the adoption
    /// with its error. Bounded: the jobs keyed ahead of the writer are
    /// held in memory.
    pub(super) fn adopt_loop(&mut self) -> Result<(), Error> {
        let Some(store) = self.session.store.take() else {
            return self.adopt_jobs();
        };
        let (sender, receiver) = sync_channel::<Write>(16);
        let result = std::thread::scope(|scope| {
            let store = &mut *store;
            let writer = scope.spawn(move || {
                store.with_checkpoints_aside(|store| writer::write_all(receiver, store))?
            });
            self.writer = Some(sender);
            let result = self.adopt_jobs();
            self.writer = None;
            let written = writer.join().expect("the state writer does not panic");
            result.and(written)
        });
        self.session.store = Some(store);
        result
    }

    fn adopt_jobs(&mut self) -> Result<(), Error> {
        while !self.work.queue.is_empty() || self.release_blocks() {
            self.adopt_chunk()?;
        }
        Ok(())
    }

    /// Adopting is probing: up to 64 queued jobs are keyed, in parallel,
    /// while their output tables are listed (one listing for all), then
    /// recorded in order.
    fn adopt_chunk(&mut self) -> Result<(), Error> {
        use rayon::prelude::*;
        const CHUNK: usize = 64;
        let take = self.work.queue.len().min(CHUNK);
        let jobs: Vec<usize> = self.work.queue.drain(..take).collect();
        let slices: Vec<Arc<str>> = jobs
            .iter()
            .map(|&j| self.slice_json(self.work.jobs[j].node))
            .collect();
        let (graph, probe, live) = (self.session.graph, self.session.probe, &self.live);
        let mut tables: Vec<String> = jobs
            .iter()
            .filter_map(|&j| graph.nodes[self.work.jobs[j].node].probed_table())
            .map(str::to_string)
            .collect();
        tables.sort_unstable();
        tables.dedup();
        let (records, listed): (Vec<Vec<BuildRecord>>, _) = rayon::join(
            || {
                jobs.par_iter()
                    .zip(&slices)
                    .map(|(&j, slice_json)| {
                        let (id, targets) = (self.work.jobs[j].node, &self.work.jobs[j].targets);
                        job::records(live, graph, id, targets, slice_json)
                    })
                    .collect()
            },
            || probe.list_all(tables),
        );
        let listed: HashMap<String, Partitions> = listed?.into_iter().collect();
        let unlisted = Partitions::new();
        let output = |id: NodeId| {
            let table = graph.nodes[id].probed_table()?;
            Some((table, listed.get(table).unwrap_or(&unlisted)))
        };
        // The memo of each node this chunk adopts whole, from the columns
        // its keys were just made from (no target is recorded yet) and
        // its output as listed: stored once all its targets are, so the
        // first plan after adopting skips them as later plans do.
        let memos: Vec<Option<crate::store::Memo>> = jobs
            .par_iter()
            .map(|&j| {
                let id = self.work.jobs[j].node;
                if self.work.jobs[j].targets.len() != live.plan().nodes[id].targets.len() {
                    return None;
                }
                let column = output(id).map(|(t, p)| Column::from_partitions(t, p));
                live.memo(id, column.as_ref())
            })
            .collect();
        for ((job, records), memo) in jobs.into_iter().zip(records).zip(memos) {
            let id = self.work.jobs[job].node;
            let outputs = job::outputs(&records, output(id).map(|(_, p)| p));
            self.work.jobs[job].records = records;
            self.succeeded(job, outputs, None)?;
            if let (Some(memo), Some(writer)) = (memo, &self.writer)
                && self.live.all_built(id)
            {
                let _ = writer.send(Write::Memo(plan::node_key(&graph.nodes[id]), memo));
            }
        }
        Ok(())
    }
}
