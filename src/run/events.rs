//! The real run's driver: jobs started as processes within the limits,
//! their exits received as events, retries after a backoff, timeouts,
//! interrupts (Ctrl-C twice), and `--wait`'s polls for inputs that land.

use std::sync::Arc;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use super::job::Running;
use super::summary::Interruption;
use super::whole_join::Cover;
use super::{BOUND_BACKSTOP, Event, KILL_GRACE, Runner, process, summary};
use crate::error::{Error, Exit};
use crate::plan;
use crate::store::Attempt;

impl Runner<'_, '_> {
    pub(super) fn event_loop(&mut self) -> Result<(), Error> {
        let signals = process::forward_signals(self.processes.events.0.clone(), Event::Signal);
        // What ended well is written however the loop ends, but when the
        // state itself failed: trying again would only wait as long again.
        let result = match self.event_loop_inner() {
            Err(lost @ Error::Store(_)) => Err(lost),
            ended => ended.and(self.recorder().write()),
        };
        let result = match result {
            Err(Error::Store(e)) => Err(self.state_lost(e)),
            result => result,
        };
        if let Some(handle) = signals {
            handle.close();
        }
        result
    }

    pub(super) fn event_loop_inner(&mut self) -> Result<(), Error> {
        loop {
            if self.interrupts == 0 {
                self.dispatch()?;
            }
            let idle = self.work.running.is_empty()
                && self.work.lingering.is_empty()
                && self.work.queue.is_empty()
                && self.work.delayed.is_empty()
                && !self.work.claims.waiting();
            if idle && self.interrupts == 0 && self.release_blocks() {
                continue;
            }
            let stopped = self.interrupts > 0
                && self.work.running.is_empty()
                && self.work.lingering.is_empty();
            if (idle || stopped) && (self.interrupts > 0 || !self.should_poll()) {
                break;
            }
            let timeout = self.next_wakeup().saturating_duration_since(Instant::now());
            match self.processes.events.1.recv_timeout(timeout) {
                Ok(Event::Exited { job, code, logged }) => self.exited(job, code, logged)?,
                Ok(Event::Signal(libc::SIGINT)) => self.interrupted(),
                Ok(Event::Signal(signal)) => self.stopped(signal),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            // Due even while events keep coming: timeouts, retries, polls,
            // claims to renew, the next group commit.
            if Instant::now() >= self.next_wakeup() {
                self.tick()?;
            }
        }
        Ok(())
    }

    /// The state is gone for good (its server down past every retry): no
    /// new jobs; the running ones are let finish, as on a first Ctrl-C (a
    /// stop signal meanwhile sends them SIGTERM), but cannot be recorded:
    /// the next run redoes them. The run fails (exit 1).
    fn state_lost(&mut self, e: crate::store::StoreError) -> Error {
        self.progress.note(&format!(
            "error: state: {e}; no new jobs; waiting for {} running job(s); they and {} job(s) \
             that ended well cannot be recorded (the next run redoes them)",
            self.work.running.len(),
            self.work.unwritten.len()
        ));
        while !self.work.running.is_empty() {
            match self.processes.events.1.recv() {
                Ok(Event::Exited { job, .. }) => {
                    self.work.running.remove(&job);
                }
                Ok(Event::Signal(_)) => {
                    for running in self.work.running.values() {
                        crate::exec::command::kill_group(running.pid, libc::SIGTERM);
                    }
                }
                Err(_) => break,
            }
        }
        Error::StateLost(e.to_string())
    }

    /// With `--wait`, whether blocked targets are worth probing for again.
    pub(super) fn should_poll(&mut self) -> bool {
        let Some(deadline) = self.sensing.wait_deadline else {
            return false;
        };
        if Instant::now() >= deadline || self.live.blocked_tables().is_empty() {
            return false;
        }
        if self.sensing.next_poll.is_none() {
            self.sensing.next_poll = Some(Instant::now() + self.session.opts.poll);
        }
        true
    }

    pub(super) fn next_wakeup(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let deadlines = self
            .work
            .running
            .values()
            .filter_map(|r| r.kill_at.or(r.deadline))
            .chain(self.work.lingering.iter().map(|(_, at)| *at));
        let retries = self.work.delayed.iter().map(|(at, _)| *at);
        deadlines
            .chain(retries)
            .chain(self.work.claims.next_wakeup())
            .chain(self.work.unwritten.due_at())
            .chain(self.sensing.next_poll)
            .chain(self.sensing.wait_deadline)
            .min()
            .unwrap_or(far)
            .min(far)
    }

    /// SIGTERM or SIGHUP to the run (what cron wrappers, systemd, CI
    /// runners and Kubernetes send to stop something): no new jobs, SIGTERM
    /// forwarded at once to every running job's process group, SIGKILL to
    /// what is left after `stop_grace`; what finishes meanwhile is recorded.
    pub(super) fn stopped(&mut self, signal: i32) {
        let first = !matches!(self.summary.interrupted, Interruption::Signal(_));
        if first {
            self.summary.interrupted = Interruption::Signal(signal);
        }
        self.interrupts = self.interrupts.max(2);
        self.work.delayed.clear();
        self.drop_waiting();
        if !first {
            return;
        }
        let now = Instant::now();
        self.progress.note(&format!(
            "{}: stopping {} running job(s) (SIGTERM now, SIGKILL in {})",
            if signal == libc::SIGHUP {
                "SIGHUP"
            } else {
                "SIGTERM"
            },
            self.work.running.len(),
            summary::seconds(self.session.opts.stop_grace)
        ));
        for running in self.work.running.values_mut() {
            crate::exec::command::kill_group(running.pid, libc::SIGTERM);
            running.terminated = Some(now);
            running.kill_at = Some(now + self.session.opts.stop_grace);
        }
    }

    pub(super) fn interrupted(&mut self) {
        self.interrupts += 1;
        if self.summary.interrupted == Interruption::None {
            self.summary.interrupted = Interruption::Interrupt;
        }
        if self.interrupts == 1 {
            self.work.delayed.clear();
            self.drop_waiting();
            self.progress.note(&format!(
                "interrupted: no new jobs; waiting for {} running job(s) (Ctrl-C again to kill them)",
                self.work.running.len()
            ));
        } else {
            self.progress
                .note("interrupted again: killing running jobs");
            for running in self.work.running.values() {
                crate::exec::command::kill_group(running.pid, libc::SIGKILL);
            }
        }
    }

    /// Timeouts, retries that are due, sensor polls, and the group commit
    /// of jobs that ended well.
    pub(super) fn tick(&mut self) -> Result<(), Error> {
        let now = Instant::now();
        if self.work.unwritten.due_at().is_some_and(|at| now >= at) {
            self.recorder().write()?;
        }
        for running in self.work.running.values_mut() {
            match running.kill_at {
                None if running.deadline.is_some_and(|d| now >= d) => {
                    crate::exec::command::kill_group(running.pid, libc::SIGTERM);
                    running.terminated = Some(now);
                    running.kill_at = Some(now + KILL_GRACE);
                }
                Some(at) if now >= at => {
                    crate::exec::command::kill_group(running.pid, libc::SIGKILL);
                }
                _ => {}
            }
        }
        self.work.lingering.retain(|&(pid, at)| {
            let alive = crate::exec::command::group_alive(pid);
            if alive && now >= at {
                crate::exec::command::kill_group(pid, libc::SIGKILL);
            }
            alive && now < at
        });
        let (due, later): (Vec<_>, Vec<_>) =
            self.work.delayed.drain(..).partition(|(at, _)| *at <= now);
        self.work.delayed = later;
        for (_, job) in due {
            self.work.queue.push_back(job);
        }
        if self.sensing.next_poll.is_some_and(|p| now >= p) {
            self.sensing.next_poll = None;
            self.poll_inputs()?;
        }
        self.renew_claims()?;
        if self.interrupts == 0 {
            self.recheck_claims()?;
        }
        Ok(())
    }

    pub(super) fn dispatch(&mut self) -> Result<(), Error> {
        let nodes = &self.session.graph.nodes;
        while !self.slots.full() {
            let fits = |&j: &usize| self.slots.fits(&nodes[self.work.jobs[j].node]);
            let Some(pos) = self.work.queue.iter().position(fits) else {
                break;
            };
            let job = self
                .work
                .queue
                .remove(pos)
                .expect("position is in the queue");
            self.start(job)?;
        }
        Ok(())
    }

    pub(super) fn start(&mut self, job: usize) -> Result<(), Error> {
        self.prepare(job);
        if let super::claims::Go::Not = self.claim(job)? {
            return Ok(());
        }
        self.work.jobs[job].attempt += 1;
        let node_id = self.work.jobs[job].node;
        let node = &self.session.graph.nodes[node_id];
        let log = self.log_path(job);
        self.slots.take(node);
        let what = format!(
            "{} (attempt {}){}",
            self.describe(job),
            self.work.jobs[job].attempt,
            self.mark(job)
        );
        self.progress.started(job, &what);
        let started = Instant::now();
        let tx = self.processes.events.0.clone();
        let waiters = self
            .processes
            .waiters
            .get_or_insert_with(|| process::Waiters::new(self.session.opts.jobs));
        let watchdog = &mut self.processes.watchdog;
        let (grace, log_dir, run_id) = (
            self.session.opts.stop_grace,
            &self.session.log_dir,
            self.run_id,
        );
        let watch = process::watchdog(watchdog, grace, || log_dir.join(format!("run-{run_id}")));
        let spawned = watch.and_then(|watch| {
            process::spawn(
                waiters,
                &self.work.jobs[job].command,
                &log,
                (self.session.opts.log_limit, &watch),
                move |code, logged| {
                    let _ = tx.send(Event::Exited { job, code, logged });
                },
            )
        });
        let pid = match spawned {
            Ok(pid) => pid,
            Err(message) => {
                // The command could not start: an attempt that failed, its
                // log the command and why.
                let header = crate::exec::command::log_header(&self.work.jobs[job].command);
                let _ = super::log::ensure(&log, &header);
                process::append_log(&log, &message);
                let _ = self.processes.events.0.send(Event::Exited {
                    job,
                    code: None,
                    logged: true,
                });
                0
            }
        };
        // A local job's time bound is enforced inside it; a little after
        // it, the runner stops the job as it would for `--timeout`.
        let timeout = self.session.opts.timeout.map(|t| started + t);
        let bound = self
            .local_bounds(job)
            .map(|b| started + b.time + BOUND_BACKSTOP)
            .filter(|b| timeout.is_none_or(|t| *b < t));
        self.work.running.insert(
            job,
            Running {
                pid,
                started,
                deadline: bound.or(timeout),
                bounded: bound.is_some(),
                terminated: None,
                kill_at: None,
                started_at: crate::clock::unix_now(),
                log,
            },
        );
        Ok(())
    }

    /// A job's process ended: its slot is given back, and the job
    /// succeeded, is retried, or failed for good. One that printed nothing
    /// has no log when it succeeded, and a log of its command when not.
    pub(super) fn exited(
        &mut self,
        job: usize,
        code: Option<i32>,
        logged: bool,
    ) -> Result<(), Error> {
        let Some(running) = self.work.running.remove(&job) else {
            return Ok(());
        };
        self.work.claims.job_ended();
        if !logged && code != Some(0) {
            let header = crate::exec::command::log_header(&self.work.jobs[job].command);
            let _ = super::log::ensure(&running.log, &header);
        }
        let logged = logged || code != Some(0);
        let node_id = self.work.jobs[job].node;
        self.slots.give_back(&self.session.graph.nodes[node_id]);
        // Sent SIGTERM, its leader is gone, others of its group live on:
        // they get the rest of the grace, then SIGKILL.
        if let Some(at) = running.kill_at
            && crate::exec::command::group_alive(running.pid)
        {
            self.work.lingering.push((running.pid, at));
        }
        let elapsed = running.started.elapsed();
        // Keep the slots busy: start what is queued before recording.
        if self.interrupts == 0 {
            self.dispatch()?;
        }
        let attempt = self.attempt(job, &running, (code, logged), elapsed);
        self.summary.attempts.push(summary::AttemptReport {
            step: self.session.graph.nodes[node_id].step,
            duration: elapsed,
            retry: attempt.attempt > 1,
        });
        if code == Some(0) {
            // Recorded with the targets it built, in their transaction.
            return self.exited_well(job, &running, attempt);
        }
        self.recorder().attempt(&attempt)?;
        if self.interrupts >= 2 {
            // Killed on request: not a failure of the job; it stays stale.
            let what = self.describe(job);
            let mark = self.mark(job);
            self.progress
                .ended(job, &format!("killed {what}{mark}"), true);
            let why: Arc<str> = "killed by the second interrupt".into();
            self.live
                .hold(node_id, &self.work.jobs[job].targets, Some(&why));
            return self.release_claims(job);
        }
        self.exited_badly(job, &running, code)
    }

    /// The history's record of the attempt that just ended (with no log
    /// when it printed nothing).
    fn attempt(
        &self,
        job: usize,
        running: &Running,
        (code, logged): (Option<i32>, bool),
        took: Duration,
    ) -> Attempt {
        let j = &self.work.jobs[job];
        Attempt {
            run: self.run_id,
            node: plan::node_key(&self.session.graph.nodes[j.node]),
            from: j.range.map(|r| r.from),
            to: j.range.map(|r| r.to),
            attempt: j.attempt,
            argv: j.command.argv.clone(),
            log_path: match logged {
                true => running.log.to_string_lossy().into_owned(),
                false => String::new(),
            },
            started_at: running.started_at,
            exit_code: code,
            duration: took,
        }
    }

    /// A job that exited 0: its outputs probed and recorded.
    fn exited_well(
        &mut self,
        job: usize,
        running: &Running,
        attempt: Attempt,
    ) -> Result<(), Error> {
        let what = self.describe(job);
        let outputs = self.probe_outputs(job)?;
        let missing = outputs.iter().filter(|o| o.is_none()).count();
        self.progress.succeeded(
            job,
            &format!(
                "done {what} in {}{}",
                summary::seconds(attempt.duration),
                self.mark(job)
            ),
        );
        self.summary.ran.push(summary::JobReport {
            target: what.clone(),
            pulled_in: self.pulled_in(job),
            attempts: attempt.attempt,
            duration: attempt.duration,
            log: (!attempt.log_path.is_empty()).then(|| running.log.clone()),
        });
        if missing > 0 {
            self.progress.note(&format!(
                "{what}: the job exited 0 but {missing} output partition(s) are missing"
            ));
        }
        self.succeeded(job, outputs, Some(attempt))?;
        self.set_cover(job, Cover::Done);
        Ok(())
    }

    /// A job that failed: retried after its backoff while retries are
    /// left, else failed for good, and what reads it cannot run.
    fn exited_badly(
        &mut self,
        job: usize,
        running: &Running,
        code: Option<i32>,
    ) -> Result<(), Error> {
        let what = self.describe(job);
        let attempt = self.work.jobs[job].attempt;
        let bounds = self.local_bounds(job);
        let how = match (code, running.terminated, &bounds) {
            (_, Some(_), Some(b)) if running.bounded => b.time_exceeded(),
            (Some(c), None, Some(b)) if c == Exit::OverMemory.code() => b.memory_exceeded(),
            (Some(c), None, Some(b)) if c == Exit::OverTime.code() => b.time_exceeded(),
            (_, Some(_), _) => format!(
                "timed out after {}",
                summary::seconds(self.session.opts.timeout.unwrap_or_default())
            ),
            (Some(c), None, _) => format!("exit code {c}"),
            (None, None, _) => "killed by a signal or could not start".to_string(),
        };
        if attempt <= self.session.opts.retries && self.interrupts == 0 {
            let delay = self
                .session
                .opts
                .backoff
                .checked_mul(2u32.saturating_pow(attempt - 1))
                .unwrap_or(crate::settings::duration::MAX)
                .min(crate::settings::duration::MAX);
            self.progress.ended(
                job,
                &format!(
                    "failed {what} ({how}); retry {attempt}/{} in {}{}",
                    self.session.opts.retries,
                    summary::seconds(delay),
                    self.mark(job)
                ),
                false,
            );
            self.work.delayed.push((Instant::now() + delay, job));
            return Ok(());
        }
        let mark = self.mark(job);
        self.progress
            .ended(job, &format!("FAILED {what} ({how}){mark}"), true);
        self.failure_hook(job, code, &how, &running.log);
        let node_id = self.work.jobs[job].node;
        self.summary.failed.push(summary::FailureReport {
            target: what,
            pulled_in: self.pulled_in(job),
            step: self.session.graph.nodes[node_id].step,
            how,
            exit_code: code,
            attempts: attempt,
            log: running.log.clone(),
            tail: summary::tail(&running.log, 10),
        });
        let targets = self.work.jobs[job].targets.clone();
        let ready = self.fail(node_id, &targets, code.unwrap_or(-1))?;
        self.release_claims(job)?;
        self.dispatch_ready(ready);
        self.set_cover(job, Cover::Failed);
        Ok(())
    }

    /// A local engine job's bounds (`None` for the zipline executor's).
    fn local_bounds(&self, job: usize) -> Option<crate::settings::JobBounds> {
        if self.session.executor.interface().is_some() {
            return None;
        }
        let step = self.session.graph.nodes[self.work.jobs[job].node].step;
        Some(
            self.session
                .settings
                .bounds
                .for_step(step, self.session.opts.jobs),
        )
    }

    /// Sensors: probes the tables blocking targets again; the live plan
    /// evaluates the targets reading those that landed.
    pub(super) fn poll_inputs(&mut self) -> Result<(), Error> {
        let mut listed = Vec::new();
        for table in self.live.blocked_tables() {
            let partitions = self.session.probe.list(&table)?;
            listed.push((table, partitions));
        }
        let (landed, ready) = self.live.landed(listed);
        for table in &landed {
            self.progress.note(&format!("input landed: {table}"));
        }
        self.dispatch_ready(ready);
        Ok(())
    }
}
