//! The dry run's driver (`run --dry-run`): jobs taken one after another,
//! no process started; each "succeeds" with an unknown output, so what
//! reads it is planned as if it ran, and its command is listed. Nothing is
//! written (`recorder::Recorder::Nowhere`).

use super::whole_join::Cover;
use super::{Runner, summary};
use crate::error::Error;

impl Runner<'_, '_> {
    pub(super) fn dry_run_loop(&mut self) -> Result<(), Error> {
        while !self.work.queue.is_empty() || self.release_blocks() {
            let job = self.work.queue.pop_front().expect("the queue is not empty");
            self.prepare(job);
            let node = &self.session.graph.nodes[self.work.jobs[job].node];
            let pulled_in = self.live.plan().pulled_in(node.id);
            let command = summary::PlannedCommand::new(&self.work.jobs[job], node, pulled_in);
            self.summary.commands.push(command);
            let outputs = self.work.jobs[job].dry_run_outputs();
            self.succeeded(job, outputs, None)?;
            self.set_cover(job, Cover::Done);
        }
        Ok(())
    }
}
