//! Job ranges fixed by the plan. At the start of a run, each node's
//! targets that may run (stale, or waiting on upstream work) are cut once
//! into blocks: contiguous days, at most `step_days` each, from the first.
//! A job is a block's ready targets, dispatched when no target of the block
//! still waits on upstream work. So the same plan makes the same jobs,
//! whatever order upstream jobs end in (cutting ready targets as they came
//! made a block's days two jobs or one depending on timing).
//!
//! A target whose upstream never runs in this run (blocked, or held) would
//! hold its block's ready targets for ever: when nothing else is left to
//! do, `Blocks::release` hands them out as they are.

use crate::partition::Day;
use crate::plan::Status;
use crate::plan::live::{LivePlan, Phase, is_ready};

/// No block: a target that could not run when the run started (blocked on
/// a missing input that landed since, with `--wait`).
const NONE: u32 = u32::MAX;

pub struct Blocks {
    /// Per node, per target: its block, or `NONE`.
    of: Vec<Vec<u32>>,
    /// Per node, per block: its targets, by day.
    members: Vec<Vec<Vec<usize>>>,
}

impl Blocks {
    /// Cuts every planned node's targets; `step_days` gives a node's
    /// longest job.
    pub fn new(live: &LivePlan, step_days: impl Fn(usize) -> usize) -> Blocks {
        let plan = live.plan();
        let mut of = Vec::with_capacity(plan.nodes.len());
        let mut members = Vec::with_capacity(plan.nodes.len());
        for (id, node) in plan.nodes.iter().enumerate() {
            let mut may_run: Vec<usize> = (0..node.targets.len())
                .filter(|&i| plan.planned[id] && may_run(&node.targets[i].status))
                .collect();
            may_run.sort_by_key(|&i| node.targets[i].day);
            let days: Vec<Option<Day>> = may_run.iter().map(|&i| node.targets[i].day).collect();
            let cut = cut(&days, step_days(id).max(1));
            let mut block_of = vec![NONE; node.targets.len()];
            let mut blocks: Vec<Vec<usize>> = Vec::with_capacity(cut.len());
            for range in cut {
                for &i in &may_run[range.clone()] {
                    block_of[i] = blocks.len() as u32;
                }
                blocks.push(may_run[range].to_vec());
            }
            of.push(block_of);
            members.push(blocks);
        }
        Blocks { of, members }
    }

    /// The jobs due now among `ready` targets of node `id`: for each block
    /// they touch whose targets no longer wait, its ready idle targets;
    /// targets of no block, as one group. Each group is by day; the caller
    /// cuts it where days are not contiguous.
    pub fn due(&self, live: &LivePlan, id: usize, ready: &[usize]) -> Vec<Vec<usize>> {
        let mut touched: Vec<u32> = ready.iter().map(|&i| self.of[id][i]).collect();
        touched.sort_unstable();
        touched.dedup();
        let mut due = Vec::new();
        for block in touched {
            if block == NONE {
                let mut loose: Vec<usize> = ready
                    .iter()
                    .copied()
                    .filter(|&i| self.of[id][i] == NONE)
                    .collect();
                loose.sort_by_key(|&i| live.target(id, i).day);
                due.push(loose);
                continue;
            }
            let members = &self.members[id][block as usize];
            if members.iter().any(|&i| waits(live, id, i)) {
                continue;
            }
            due.push(idle_ready(live, id, members));
        }
        due.retain(|group| !group.is_empty());
        due
    }

    /// Every node's ready idle targets held by a block that still waits:
    /// when nothing else runs, what waits will not come in this run.
    pub fn release(&self, live: &LivePlan) -> Vec<(usize, Vec<usize>)> {
        let mut out = Vec::new();
        for (id, blocks) in self.members.iter().enumerate() {
            for members in blocks {
                let ready = idle_ready(live, id, members);
                if !ready.is_empty() {
                    out.push((id, ready));
                }
            }
        }
        out
    }
}

/// Whether a target may run in this run, as planned at its start.
fn may_run(status: &Status) -> bool {
    matches!(status, Status::Stale(_) | Status::Waiting { .. })
}

/// Whether a target not handed out yet still waits on upstream work.
fn waits(live: &LivePlan, id: usize, i: usize) -> bool {
    let target = live.target(id, i);
    live.phase(id, i) == Phase::Idle && may_run(&target.status) && !is_ready(target)
}

fn idle_ready(live: &LivePlan, id: usize, members: &[usize]) -> Vec<usize> {
    members
        .iter()
        .copied()
        .filter(|&i| live.phase(id, i) == Phase::Idle && is_ready(live.target(id, i)))
        .collect()
}

/// `days` (sorted) cut into runs of contiguous days of at most `most`:
/// index ranges. Unpartitioned targets are each a run of their own.
fn cut(days: &[Option<Day>], most: usize) -> Vec<std::ops::Range<usize>> {
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    for (i, day) in days.iter().enumerate() {
        match out.last_mut() {
            Some(run) if run.len() < most && super::contiguous(days[run.end - 1], *day) => {
                run.end = i + 1;
            }
            _ => out.push(i..i + 1),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_contiguous_runs_of_at_most_step_days_from_the_first() {
        let days: Vec<Option<Day>> = [1, 2, 3, 4, 5, 7, 8, 9, 10]
            .iter()
            .map(|d| Some(Day(*d)))
            .collect();
        assert_eq!(cut(&days, 3), vec![0..3, 3..5, 5..8, 8..9]);
        assert_eq!(cut(&[None, None], 30), vec![0..1, 1..2]);
        assert_eq!(cut(&[], 3), Vec::<std::ops::Range<usize>>::new());
    }
}
