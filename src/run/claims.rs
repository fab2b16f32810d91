//! A real run's claims (`store::claims`): a job's targets are claimed
//! just before it starts, with those of the jobs queued after it that the
//! run will start within `AHEAD_WINDOW` at its pace (`Pace`: as many as
//! ended in the last window; none when jobs take longer, so that another
//! run is never kept waiting on a target this one is not about to build),
//! in one transaction; a job whose targets another live run holds waits
//! (its dependents with it) and is looked at again every poll; claims of a
//! runner that is gone are taken over once its jobs are; targets another
//! run recorded meanwhile, with the key this run would build, are taken as
//! built instead of being built twice. Claims are renewed while the run
//! lives, released with the record of what they covered, and all released
//! when the run ends.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Runner;
use crate::error::Error;
use crate::identity::Identity;
use crate::partition::Day;
use crate::plan;
use crate::store::{Claimant, Claimed, Holder, Recorded, day_column};

/// How often jobs waiting for another run's claims look again.
const RECHECK: Duration = Duration::from_secs(1);

/// The most a run waits for the jobs of a runner that is gone beyond
/// their stop grace (its watchdog stops them within it).
const ORPHAN_SLACK: Duration = Duration::from_secs(10);

/// How far ahead of the job it starts a run claims: as many jobs queued
/// next as ended within this time (`Pace`), at most `AHEAD_MOST`.
const AHEAD_WINDOW: Duration = Duration::from_millis(100);
const AHEAD_MOST: usize = 32;

/// The run's side of claims.
#[derive(Default)]
pub(super) struct Claims {
    /// Who this run claims as; `None` when nothing is claimed (a dry run,
    /// `adopt`, no state).
    me: Option<Claimant>,
    /// Jobs whose targets another live run holds, with the holder.
    waiting: Vec<(usize, Holder)>,
    next_check: Option<Instant>,
    next_renew: Option<Instant>,
    /// Queued jobs whose targets this run claimed ahead of their start,
    /// with whether another run had recorded targets by then (if not, none
    /// can record theirs before they start: this run holds them).
    ahead: HashMap<usize, bool>,
    pace: Pace,
}

/// How many of the run's jobs ended in the last whole `AHEAD_WINDOW`:
/// ends, not starts, so that the burst of a run's first jobs, or jobs
/// that take minutes, claim nothing ahead.
#[derive(Default)]
struct Pace {
    window: Option<Instant>,
    this: usize,
    last: usize,
}

impl Pace {
    /// Moves the window on to `now`.
    fn roll(&mut self, now: Instant) {
        match self.window {
            Some(at) if now < at + AHEAD_WINDOW => {}
            Some(at) if now < at + 2 * AHEAD_WINDOW => {
                (self.last, self.this) = (self.this, 0);
                self.window = Some(at + AHEAD_WINDOW);
            }
            _ => (self.window, self.last, self.this) = (Some(now), 0, 0),
        }
    }

    /// A job ended at `now`.
    fn ended(&mut self, now: Instant) {
        self.roll(now);
        self.this += 1;
    }

    /// How many jobs to claim ahead of the one starting at `now`.
    fn ahead(&mut self, now: Instant) -> usize {
        self.roll(now);
        self.last.min(AHEAD_MOST)
    }
}

impl Claims {
    pub(super) fn new(me: Option<Claimant>) -> Claims {
        let next_renew = me.as_ref().map(|me| Instant::now() + me.lease / 3);
        Claims {
            me,
            next_renew,
            ..Claims::default()
        }
    }

    /// One of the run's jobs ended (its pace: `Pace`).
    pub(super) fn job_ended(&mut self) {
        self.pace.ended(Instant::now());
    }

    pub(super) fn waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// When the run must wake up for its claims.
    pub(super) fn next_wakeup(&self) -> Option<Instant> {
        match (self.next_check, self.next_renew) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// What claiming a job's targets decided.
pub(super) enum Go {
    /// Start it.
    Start,
    /// Not now: another run holds its targets, or another run built them.
    Not,
}

impl Runner<'_, '_> {
    fn job_days(&self, job: usize) -> Vec<Option<Day>> {
        let j = &self.work.jobs[job];
        j.targets
            .iter()
            .map(|&i| self.live.target(j.node, i).day)
            .collect()
    }

    /// Claims a job's targets before it starts (its records made), unless
    /// they were claimed ahead, with those of the jobs queued next at the
    /// run's pace.
    pub(super) fn claim(&mut self, job: usize) -> Result<Go, Error> {
        let Some(me) = self.work.claims.me.clone() else {
            return Ok(Go::Start);
        };
        if let Some(others_wrote) = self.work.claims.ahead.remove(&job) {
            return self.take_built_elsewhere(job, others_wrote);
        }
        let ahead = self.work.claims.pace.ahead(Instant::now());
        let claims = &self.work.claims;
        let batch: Vec<usize> = std::iter::once(job)
            .chain(
                self.work
                    .queue
                    .iter()
                    .copied()
                    .filter(|j| !claims.ahead.contains_key(j))
                    .take(ahead),
            )
            .collect();
        let keys: Vec<(crate::store::NodeKey, Vec<Option<Day>>)> = batch
            .iter()
            .map(|&j| {
                let node = &self.session.graph.nodes[self.work.jobs[j].node];
                (plan::node_key(node), self.job_days(j))
            })
            .collect();
        let Some(store) = self.session.store.as_deref_mut() else {
            return Ok(Go::Start);
        };
        let jobs: Vec<_> = keys.iter().map(|(n, d)| (n, d.as_slice())).collect();
        let claimed = store.claim_jobs(&me, &jobs)?;
        let others_wrote = store.others_wrote()?;
        let mut go = Go::Start;
        for (j, claimed) in batch.into_iter().zip(claimed) {
            match claimed {
                Claimed::Held(holder) => {
                    self.progress.note(&format!(
                        "waiting: {} is being built by {}",
                        self.describe(j),
                        holder.describe()
                    ));
                    if j == job {
                        go = Go::Not;
                    } else {
                        self.work.queue.retain(|&q| q != j);
                    }
                    self.work.claims.waiting.push((j, holder));
                    self.work
                        .claims
                        .next_check
                        .get_or_insert(Instant::now() + RECHECK);
                }
                Claimed::Taken { over } => {
                    for holder in &over {
                        self.wait_for_orphans(holder);
                    }
                    if j != job {
                        self.work.claims.ahead.insert(j, others_wrote);
                    }
                }
            }
        }
        match go {
            Go::Start => self.take_built_elsewhere(job, others_wrote),
            Go::Not => Ok(Go::Not),
        }
    }

    /// A runner of this host that is gone may have left jobs stopping
    /// (its watchdog gives them the stop grace, then SIGKILLs them): waits
    /// until that watchdog is gone, bounded.
    fn wait_for_orphans(&mut self, holder: &Holder) {
        let Some((pid, grace)) = crate::exec::watch::of_runner(&holder.runner) else {
            return;
        };
        self.progress.note(&format!(
            "{} is gone; waiting for its jobs to stop before building their targets again",
            holder.describe()
        ));
        let tag = crate::exec::watch::runner_tag(&holder.runner);
        let give_up = Instant::now() + self.session.opts.stop_grace.max(grace) + ORPHAN_SLACK;
        while crate::exec::watch::watchdog_grace(pid, &tag).is_some() {
            if Instant::now() >= give_up {
                self.progress.note(&format!(
                    "the watchdog (pid {pid}) of {} still runs past its stop grace; going on",
                    holder.describe()
                ));
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Targets of a claimed job that another run recorded since this run's
    /// plan, with the key this run would record, are built: taken as such,
    /// their claims released. The rest, if any are left out, get jobs of
    /// their own. When no other run recorded any target since this run
    /// opened the state (`others_wrote` false, read after the claim),
    /// there is nothing to look for.
    fn take_built_elsewhere(&mut self, job: usize, others_wrote: bool) -> Result<Go, Error> {
        let id = self.work.jobs[job].node;
        let records = &self.work.jobs[job].records;
        if records.is_empty() || !others_wrote {
            return Ok(Go::Start);
        }
        let store = self
            .session
            .store
            .as_deref_mut()
            .expect("claims need a state");
        let node = plan::node_key(&self.session.graph.nodes[id]);
        // The job's own days only: this runs as every job starts.
        let days = records.iter().map(|r| day_column(r.day));
        let (from, to) = (days.clone().min(), days.max());
        let recorded =
            store.load_targets(&node, from.unwrap_or_default()..=to.unwrap_or_default())?;
        let by_day: std::collections::HashMap<i64, usize> = self.work.jobs[job]
            .targets
            .iter()
            .map(|&i| (day_column(self.live.target(id, i).day), i))
            .collect();
        // Recorded since this run's plan read the state (a newer write
        // than the plan knew of), with this run's key: built elsewhere. A
        // record the plan knew is what this run was asked to build again
        // (forced, a streaming job not running).
        let known = &self.live.plan().state[id].built;
        let done: Vec<(usize, Recorded)> = records
            .iter()
            .filter_map(|r| {
                let day = day_column(r.day);
                let found = recorded.get(&day).filter(|found| {
                    found.key == r.key && known.get(&day).is_none_or(|k| found.seq > k.seq)
                })?;
                Some((*by_day.get(&day)?, *found))
            })
            .collect();
        if done.is_empty() {
            return Ok(Go::Start);
        }
        let targets = self.work.jobs[job].targets.clone();
        let rest: Vec<usize> = targets
            .iter()
            .copied()
            .filter(|i| !done.iter().any(|(d, _)| d == i))
            .collect();
        if !rest.is_empty() && self.whole_join(&self.session.graph.nodes[id]) {
            // A join's one backfill covers the range: it runs as it is.
            return Ok(Go::Start);
        }
        let run = self.run_id;
        let days = self.job_days(job);
        if let Some(store) = self.session.store.as_deref_mut() {
            store.release(run, &node, &days)?;
        }
        self.progress.note(&format!(
            "{}: {} partition(s) built by another run meanwhile",
            self.describe(job),
            done.len()
        ));
        // Fresh without this run building them.
        self.summary.fresh += done.len();
        let ready = self.live.built(id, &targets, done, &[]);
        if !rest.is_empty() {
            self.push_jobs(id, rest);
        }
        self.dispatch_ready(ready);
        Ok(Go::Not)
    }

    /// Jobs waiting for other runs' claims: those no longer held go back
    /// to the front of the queue (claimed again as they start).
    pub(super) fn recheck_claims(&mut self) -> Result<(), Error> {
        let now = Instant::now();
        if self.work.claims.next_check.is_none_or(|at| now < at) {
            return Ok(());
        }
        self.work.claims.next_check = None;
        let (Some(me), Some(store)) = (&self.work.claims.me, self.session.store.as_deref()) else {
            return Ok(());
        };
        let waiting = std::mem::take(&mut self.work.claims.waiting);
        let mut still = Vec::new();
        let mut free = Vec::new();
        for (job, _) in waiting {
            let node = plan::node_key(&self.session.graph.nodes[self.work.jobs[job].node]);
            match store.held_elsewhere(me.run, &node, &self.job_days(job))? {
                Some(holder) => still.push((job, holder)),
                None => free.push(job),
            }
        }
        for job in free.into_iter().rev() {
            self.work.queue.push_front(job);
        }
        if !still.is_empty() {
            self.work.claims.next_check = Some(now + RECHECK);
        }
        self.work.claims.waiting = still;
        Ok(())
    }

    /// Renews this run's claims when a third of the lease has passed.
    pub(super) fn renew_claims(&mut self) -> Result<(), Error> {
        let now = Instant::now();
        let (Some(me), Some(at)) = (&self.work.claims.me, self.work.claims.next_renew) else {
            return Ok(());
        };
        if now < at {
            return Ok(());
        }
        if let Some(store) = self.session.store.as_deref_mut() {
            store.renew(me)?;
        }
        self.work.claims.next_renew = Some(now + me.lease / 3);
        Ok(())
    }

    /// The run stops starting jobs: those waiting for other runs' claims
    /// are left, said so.
    pub(super) fn drop_waiting(&mut self) {
        for (job, holder) in std::mem::take(&mut self.work.claims.waiting) {
            let why: Arc<str> = format!("being built by {}", holder.describe()).into();
            let j = &self.work.jobs[job];
            self.live.hold(j.node, &j.targets, Some(&why));
        }
        self.work.claims.next_check = None;
    }

    /// Releases a job's claims (it failed for good, or was stopped).
    pub(super) fn release_claims(&mut self, job: usize) -> Result<(), Error> {
        if self.work.claims.me.is_none() {
            return Ok(());
        }
        let node = plan::node_key(&self.session.graph.nodes[self.work.jobs[job].node]);
        let days = self.job_days(job);
        if let Some(store) = self.session.store.as_deref_mut() {
            store.release(self.run_id, &node, &days)?;
        }
        Ok(())
    }

    /// Starts claiming as run `run_id` (a real run with a state).
    pub(super) fn start_claiming(&mut self) {
        let me = (self.session.store.is_some() && self.session.opts.action == super::Action::Run)
            .then(|| Claimant {
                run: self.run_id,
                runner: Identity::me(),
                lease: self.session.opts.lease,
            });
        self.work.claims = Claims::new(me);
    }

    /// Releases whatever claims the run still holds (it ends).
    pub(super) fn release_all_claims(&mut self) -> Result<(), Error> {
        if self.work.claims.me.take().is_none() {
            return Ok(());
        }
        if let Some(store) = self.session.store.as_deref_mut() {
            store.release_run(self.run_id)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run claims ahead as many jobs as ended in the last whole window:
    /// none at first (the burst of first jobs), none once jobs stop ending
    /// for a window, never more than `AHEAD_MOST`.
    #[test]
    fn the_pace_is_what_ended_in_the_last_window() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut pace = Pace::default();
        assert_eq!(pace.ahead(at(0)), 0);
        for ms in 0..5 {
            pace.ended(at(ms * 10));
        }
        assert_eq!(pace.ahead(at(60)), 0, "the first window is not over");
        assert_eq!(pace.ahead(at(120)), 5);
        assert_eq!(pace.ahead(at(150)), 5);
        assert_eq!(pace.ahead(at(210)), 0, "nothing ended in the window before");
        for _ in 0..100 {
            pace.ended(at(220));
        }
        assert_eq!(pace.ahead(at(310)), AHEAD_MOST);
        assert_eq!(pace.ahead(at(900)), 0, "jobs stopped ending");
    }
}
