//! The runner: it runs only stale targets, in dependency order, in parallel.
//! The planner decides; the runner only runs.
//!
//! It starts from a plan made live (`plan::live::LivePlan`), which owns
//! every target's status. The runner turns the targets the live plan says are
//! ready into jobs, starts them within the limits, and when a job ends,
//! probes and records its outputs in one transaction and tells the live plan,
//! which answers with what became ready (early cutoff included: an upstream
//! rerun that wrote the same data changes nothing downstream).
//!
//! Contiguous ready partitions of one node are batched into range jobs of at
//! most `step_days`. Jobs are limited overall, per step and per team; each
//! has its own log file, an optional timeout, and retries with exponential
//! backoff. A failure marks the targets reading it `upstream-failed`;
//! independent work goes on.
//!
//! The same machinery serves `run --dry-run` (each job "succeeds" with an
//! unknown output, nothing is written) and `adopt` (a job "succeeds" when its
//! output partitions already exist in the warehouse; a writer thread records
//! them, `writer`).

mod blocks;
pub mod gc;
mod hooks;
mod job;
pub mod lock;
pub(crate) mod process;
pub mod progress;
mod slots;
mod summary;
mod whole_join;
mod writer;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender, channel, sync_channel};
use std::time::{Duration, Instant};

use crate::config::Repo;
use crate::error::Error;
use crate::exec::{self, CommandLine};
use crate::graph::{Graph, Node, NodeId, Step};
use crate::hash::Hash;
use crate::partition::{Day, DayRange};
use crate::plan::live::{LivePlan, Ready};
use crate::plan::{self, BuildRecord, Column, Plan};
use crate::probe::{Partitions, Probe};
use crate::settings::Settings;
use crate::store::{Attempt, Recorded, StateStore, day_column};

pub use hooks::HookCommands;
use job::{Job, Running};
pub use progress::ProgressMode;
pub use summary::{Outcome, Summary, tail};
use whole_join::{Cover, Covers};
use writer::{Recording, Write};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Action {
    #[default]
    Run,
    /// Print the commands in order; run and write nothing.
    DryRun,
    /// Record targets whose outputs already exist as built.
    Adopt,
}

pub struct RunOptions {
    pub action: Action,
    pub jobs: usize,
    pub retries: u32,
    pub backoff: Duration,
    pub timeout: Option<Duration>,
    /// Keep probing inputs of blocked targets this long.
    pub wait: Option<Duration>,
    pub poll: Duration,
    pub progress: ProgressMode,
    /// The command line, for the run history.
    pub args: Vec<String>,
    /// When the command started: wall time includes loading and planning.
    pub started: Instant,
    /// Alerting commands (real runs only).
    pub hooks: HookCommands,
}

/// What a run leaves: its summary, and the plan as the run ended (every
/// target's status after it).
pub struct Finished {
    pub summary: Summary,
    pub plan: Plan,
}

/// Everything a run reads and writes.
pub struct Context<'a> {
    pub repo: &'a Repo,
    pub settings: &'a Settings,
    pub graph: &'a Graph,
    pub probe: &'a dyn Probe,
    /// Makes each job's command.
    pub executor: &'a exec::Executor<'a>,
    /// `None` for a dry run: nothing is written.
    pub store: Option<&'a mut StateStore>,
    /// Where job logs go: `<state folder>/logs`.
    pub log_dir: PathBuf,
}

enum Event {
    Exited { job: usize, code: Option<i32> },
    Interrupt,
}

/// How long a job killed for its timeout gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(5);

pub struct Runner<'c, 'a> {
    ctx: &'c mut Context<'a>,
    opts: RunOptions,
    /// The plan, kept current: it decides what is ready.
    live: LivePlan<'a>,
    /// Each node's job ranges, cut once from the plan.
    blocks: blocks::Blocks,
    /// Nodes whose targets this executor cannot run at all (mutation
    /// streams on the local engine): reported as skipped, not as failed or
    /// not run.
    skipped: Vec<bool>,
    slices: HashMap<NodeId, Arc<str>>,
    jobs: Vec<Job>,
    queue: VecDeque<usize>,
    delayed: Vec<(Instant, usize)>,
    running: HashMap<usize, Running>,
    slots: slots::Slots<'a>,
    run_id: i64,
    events: (Sender<Event>, Receiver<Event>),
    progress: progress::Progress,
    summary: Summary,
    interrupts: u32,
    wait_deadline: Option<Instant>,
    next_poll: Option<Instant>,
    /// Node labels, once each.
    labels: Vec<String>,
    /// Whole-join runs: what each join's backfills of this run cover.
    covers: Covers,
    /// The attempt whose outputs are being recorded: (id, exit code,
    /// duration), ended in the recording's transaction.
    finishing: Option<Attempt>,
    waiters: Option<process::Waiters>,
    hooks: hooks::Hooks,
    /// `adopt`: recordings go to a writer thread, which owns the state
    /// while keying and probing go on here.
    writer: Option<SyncSender<Write>>,
}

impl<'c, 'a> Runner<'c, 'a> {
    pub fn new(ctx: &'c mut Context<'a>, opts: RunOptions, plan: Plan) -> Runner<'c, 'a> {
        let skipped = vec![false; plan.nodes.len()];
        let graph: &'a Graph = ctx.graph;
        let settings: &'a Settings = ctx.settings;
        let slots = slots::Slots::new(opts.jobs, &settings.limits);
        let labels = ctx.graph.nodes.iter().map(Node::label).collect();
        let progress = progress::Progress::new(if opts.action == Action::DryRun {
            ProgressMode::Quiet
        } else {
            opts.progress
        });
        let wait_deadline = opts.wait.map(|w| Instant::now() + w);
        // Set up in `run`, when the run's id (and so its log folder) is known.
        let hooks = hooks::Hooks::new(HookCommands::default(), PathBuf::new());
        let live = LivePlan::new(graph, plan);
        let blocks = blocks::Blocks::new(&live, |id| {
            job::step_days(ctx.repo, settings, opts.action, &graph.nodes[id])
        });
        Runner {
            ctx,
            opts,
            live,
            blocks,
            skipped,
            slices: HashMap::new(),
            jobs: Vec::new(),
            queue: VecDeque::new(),
            delayed: Vec::new(),
            running: HashMap::new(),
            slots,
            run_id: 0,
            events: channel(),
            progress,
            summary: Summary::default(),
            interrupts: 0,
            wait_deadline,
            next_poll: None,
            labels,
            covers: Covers::default(),
            finishing: None,
            waiters: None,
            hooks,
            writer: None,
        }
    }

    /// Joins run as one `backfill` per join (`executor.joins = "whole"`):
    /// its left, parts and final are still separate targets, recorded when
    /// the one command that computes them all ends well.
    fn whole_join(&self, node: &Node) -> bool {
        self.opts.action != Action::Adopt
            && exec::interface::whole_join(self.ctx.settings.executor.joins, node.step)
    }

    fn set_cover(&mut self, job: usize, cover: Cover) {
        let node = &self.ctx.graph.nodes[self.jobs[job].node];
        if !self.whole_join(node) {
            return;
        }
        let (config, range) = (node.config, self.jobs[job].range);
        if let Some(range) = range {
            self.covers.ended(config, range, cover);
        }
        self.release_join(config);
    }

    /// Queues (or absorbs) the join's targets that waited on a backfill.
    fn release_join(&mut self, config: usize) {
        let ids: Vec<NodeId> = self
            .ctx
            .graph
            .nodes
            .iter()
            .filter(|n| n.config == config && self.whole_join(n) && self.live.plan().planned[n.id])
            .map(|n| n.id)
            .collect();
        for id in ids {
            let held = self.live.held(id);
            self.enqueue(id, held);
        }
    }

    /// Splits a whole join's ready targets: those a finished backfill
    /// covers are recorded now, those a running one covers wait for it, and
    /// the rest are returned to get a backfill of their own.
    fn absorb(&mut self, id: NodeId, ready: Vec<usize>) -> Vec<usize> {
        let config = self.ctx.graph.nodes[id].config;
        let mut rest = Vec::new();
        let mut done = Vec::new();
        for i in ready {
            match self.covers.get(config, self.live.target(id, i).day) {
                None => rest.push(i),
                Some(Cover::Pending) => self.live.hold(id, &[i], None),
                Some(Cover::Done) => done.push(i),
                Some(Cover::Failed) => {
                    self.live
                        .cannot_run(id, &[i], &"the join's backfill failed".into());
                }
            }
        }
        if !done.is_empty() {
            let records = self.records(id, &done);
            self.jobs.push(Job {
                node: id,
                targets: done,
                range: None,
                records,
                command: CommandLine::default(),
                attempt: 0,
            });
            let job = self.jobs.len() - 1;
            let outputs = match self.opts.action {
                Action::DryRun => self.jobs[job].dry_run_outputs(),
                _ => self.probe_outputs(job).unwrap_or_default(),
            };
            if let Err(e) = self.succeeded(job, outputs) {
                self.progress.note(&format!("error: {e}"));
            }
        }
        rest
    }

    /// Runs to the end and says what happened.
    pub fn run(mut self) -> Result<Finished, Error> {
        let started = self.opts.started;
        if self.opts.action == Action::Run
            && let Some(store) = self.ctx.store.as_deref_mut()
        {
            self.run_id = store.begin_run(&self.opts.args)?;
        }
        let run_dir = self.ctx.log_dir.join(format!("run-{}", self.run_id));
        let commands = if self.opts.action == Action::Run {
            self.opts.hooks.clone()
        } else {
            HookCommands::default()
        };
        self.hooks = hooks::Hooks::new(commands, run_dir.clone());
        self.summary.run_id = self.run_id;
        self.summary.action = self.opts.action;
        let ready = self.live.start();
        self.dispatch_ready(ready);
        let result = match self.opts.action {
            Action::Run => self.event_loop(),
            Action::DryRun | Action::Adopt => self.inline_loop(),
        };
        self.progress.finish();
        self.summary.hook_failures = self.hooks.finish();
        result?;
        self.summary.wall = started.elapsed();
        self.summary.cutoff = self.live.cutoff();
        self.summary
            .add_left(&self.live, &self.labels, &self.skipped);
        if self.opts.action == Action::Run
            && let Some(store) = self.ctx.store.as_deref_mut()
        {
            store.end_run(self.run_id, self.summary.outcome().name())?;
        }
        if self.summary.outcome() == summary::RunResult::Ok && self.hooks.wants_success() {
            self.success_hook(&run_dir);
        }
        Ok(Finished {
            summary: self.summary,
            plan: self.live.into_plan(),
        })
    }

    /// `on_success_run`, with the summary as JSON in `run-N/summary.json`.
    fn success_hook(&mut self, run_dir: &std::path::Path) {
        let path = run_dir.join("summary.json");
        let json =
            serde_json::to_string_pretty(&self.summary.to_json()).expect("summary serializes");
        if let Err(e) = std::fs::create_dir_all(run_dir).and_then(|()| std::fs::write(&path, json))
        {
            self.summary.hook_failures.push(format!(
                "on_success_run: cannot write {}: {e}",
                path.display()
            ));
        }
        let s = &self.summary;
        let vars = vec![
            ("CHRONON_BUILD_EVENT", "success-run".to_string()),
            ("CHRONON_BUILD_RUN_ID", s.run_id.to_string()),
            ("CHRONON_BUILD_OUTCOME", s.outcome().name().to_string()),
            ("CHRONON_BUILD_BUILT", s.built.to_string()),
            ("CHRONON_BUILD_FRESH", s.fresh.to_string()),
            ("CHRONON_BUILD_CUTOFF", s.cutoff.to_string()),
            ("CHRONON_BUILD_JOBS", s.ran.len().to_string()),
            (
                "CHRONON_BUILD_WALL_SECONDS",
                format!("{:.3}", s.wall.as_secs_f64()),
            ),
            ("CHRONON_BUILD_SUMMARY", path.to_string_lossy().into_owned()),
        ];
        if let Some(problem) = self.hooks.success_run(vars) {
            self.summary.hook_failures.push(problem);
        }
    }

    /// `on_failure` for a job that failed for good.
    fn failure_hook(&mut self, job: usize, code: Option<i32>, how: &str, log: &std::path::Path) {
        let j = &self.jobs[job];
        let node = &self.ctx.graph.nodes[j.node];
        let day = |d: Option<Day>| d.map(|d| d.to_string()).unwrap_or_default();
        let vars = vec![
            ("CHRONON_BUILD_EVENT", "failure".to_string()),
            ("CHRONON_BUILD_RUN_ID", self.run_id.to_string()),
            ("CHRONON_BUILD_TARGET", self.describe(job)),
            ("CHRONON_BUILD_CONFIG", node.name.clone()),
            (
                "CHRONON_BUILD_FILE",
                self.ctx.repo.configs[node.config].path.clone(),
            ),
            ("CHRONON_BUILD_STEP", node.step.name().to_string()),
            ("CHRONON_BUILD_PART", node.part.clone().unwrap_or_default()),
            ("CHRONON_BUILD_TEAM", node.team.clone()),
            ("CHRONON_BUILD_START_DS", day(j.range.map(|r| r.from))),
            ("CHRONON_BUILD_END_DS", day(j.range.map(|r| r.to))),
            (
                "CHRONON_BUILD_EXIT_CODE",
                code.map(|c| c.to_string()).unwrap_or_default(),
            ),
            ("CHRONON_BUILD_REASON", how.to_string()),
            ("CHRONON_BUILD_ATTEMPTS", j.attempt.to_string()),
            ("CHRONON_BUILD_LOG", log.to_string_lossy().into_owned()),
        ];
        self.hooks.failure(vars);
    }

    /// Probes a job's output partitions (`job::probe_outputs`).
    fn probe_outputs(&self, job: usize) -> Result<Vec<Option<Hash>>, Error> {
        let job = &self.jobs[job];
        job::probe_outputs(
            &self.ctx.graph.nodes[job.node],
            &job.records,
            self.ctx.probe,
        )
    }

    /// Where a job's current attempt logs.
    fn log_path(&self, job: usize) -> PathBuf {
        self.jobs[job].log_path(self.ctx.graph, &self.ctx.log_dir, self.run_id)
    }

    /// Makes a job's records as it starts: keys and their documents from
    /// the inputs as they are now.
    fn prepare(&mut self, job: usize) {
        let (id, targets) = (self.jobs[job].node, self.jobs[job].targets.clone());
        self.jobs[job].records = self.records(id, &targets);
    }

    /// What building these targets of a node records (those whose key is
    /// known).
    fn records(&mut self, id: NodeId, targets: &[usize]) -> Vec<BuildRecord> {
        let slice_json = self.slice_json(id);
        job::records(&self.live, self.ctx.graph, id, targets, &slice_json)
    }

    fn slice_json(&mut self, node: NodeId) -> Arc<str> {
        let graph = self.ctx.graph;
        self.slices
            .entry(node)
            .or_insert_with(|| plan::slice_json(&graph.nodes[node]))
            .clone()
    }

    /// Why the local engine cannot run this streaming deploy, if it is one
    /// it cannot run.
    fn local_streaming_gap(&self, node: &Node) -> Option<&'static str> {
        if node.step != Step::GroupByStreaming || self.ctx.executor.interface().is_some() {
            return None;
        }
        match &self.ctx.repo.configs[node.config].body {
            crate::config::Body::GroupBy(gb) => crate::engine::streaming::emulation_gap(gb),
            _ => None,
        }
    }

    /// Hands targets that became ready to `enqueue`, node by node.
    fn dispatch_ready(&mut self, ready: Ready) {
        for (id, targets) in ready.0 {
            self.enqueue(id, targets);
        }
    }

    /// Turns ready targets of a node into jobs: the blocks they complete
    /// (`blocks`), each cut where its days are not contiguous.
    fn enqueue(&mut self, id: NodeId, ready: Vec<usize>) {
        if ready.is_empty() || self.live.ordering_busy(id) {
            return;
        }
        let due = self.blocks.due(&self.live, id, &ready);
        for group in due {
            self.enqueue_group(id, group);
        }
    }

    /// Hands out the targets held by blocks that still wait, when nothing
    /// else is left to do; whether any were.
    fn release_blocks(&mut self) -> bool {
        let released = self.blocks.release(&self.live);
        let queued = self.queue.len();
        for (id, group) in released {
            if !self.live.ordering_busy(id) {
                self.enqueue_group(id, group);
            }
        }
        self.queue.len() > queued
    }

    /// Jobs for one group of a node's ready targets, sorted by day.
    fn enqueue_group(&mut self, id: NodeId, group: Vec<usize>) {
        let mut ready = self.live.take_ready(id, group);
        if ready.is_empty() {
            return;
        }
        let node = &self.ctx.graph.nodes[id];
        if self.opts.action == Action::Adopt && !node.probed_output {
            let why: Arc<str> =
                "its result cannot be seen in the warehouse; the next run runs it".into();
            self.live.hold(id, &ready, Some(&why));
            return;
        }
        if let Some(gap) = self.local_streaming_gap(node) {
            let why: Arc<str> = format!("skipped: {gap}").into();
            self.live.hold(id, &ready, Some(&why));
            self.skipped[id] = true;
            return;
        }
        if self.whole_join(node) {
            ready = self.absorb(id, ready);
            if ready.is_empty() {
                return;
            }
        }
        let node = &self.ctx.graph.nodes[id];
        ready.sort_by_key(|&i| self.live.target(id, i).day);
        let live = &self.live;
        let day = |i: usize| live.target(id, i).day;
        let mut chunks: Vec<Vec<usize>> = Vec::new();
        for i in ready {
            let joins = chunks
                .last()
                .is_some_and(|chunk| contiguous(day(*chunk.last().expect("non-empty")), day(i)));
            if joins {
                chunks.last_mut().expect("non-empty").push(i);
            } else {
                chunks.push(vec![i]);
            }
        }
        let days: Vec<Vec<Option<Day>>> = chunks
            .iter()
            .map(|targets| targets.iter().map(|&i| day(i)).collect())
            .collect();
        for (targets, days) in chunks.into_iter().zip(days) {
            let range = match (
                days.first().copied().flatten(),
                days.last().copied().flatten(),
            ) {
                (Some(from), Some(to)) => Some(DayRange::new(from, to)),
                _ => None,
            };
            // The records (keys and their documents) are made when the job
            // starts, from the inputs as it finds them.
            let key = match targets.as_slice() {
                [i] => self.live.target(id, *i).key,
                _ => None,
            };
            let whole = self.whole_join(node);
            if let (true, Some(range)) = (whole, range) {
                self.covers.queued(node.config, range);
            }
            let command = self.ctx.executor.command(node, range, whole, key);
            self.jobs.push(Job {
                node: id,
                targets,
                range,
                records: Vec::new(),
                command,
                attempt: 0,
            });
            self.queue.push_back(self.jobs.len() - 1);
            self.progress.queued(1);
        }
    }

    fn describe(&self, job: usize) -> String {
        let job = &self.jobs[job];
        let range = crate::partition::at_range(job.range.map(|r| r.from), job.range.map(|r| r.to));
        format!("{}{range}", self.labels[job.node])
    }

    /// Dry runs and adoption: no processes, one job after another.
    fn inline_loop(&mut self) -> Result<(), Error> {
        let Some(store) = self
            .ctx
            .store
            .take()
            .filter(|_| self.opts.action == Action::Adopt)
        else {
            return self.inline_jobs();
        };
        // Adopting: a writer thread records jobs' targets while the next
        // jobs are keyed and probed (`writer`), and another connection
        // checkpoints the WAL beside it. A failed write stops the adoption
        // with its error. Bounded: the jobs keyed ahead of the writer are
        // held in memory.
        let (sender, receiver) = sync_channel::<Write>(16);
        let result = std::thread::scope(|scope| {
            let store = &mut *store;
            let writer = scope.spawn(move || {
                store.with_checkpoints_aside(|store| writer::write_all(receiver, store))?
            });
            self.writer = Some(sender);
            let result = self.inline_jobs();
            self.writer = None;
            let written = writer.join().expect("the state writer does not panic");
            result.and(written)
        });
        self.ctx.store = Some(store);
        result
    }

    fn inline_jobs(&mut self) -> Result<(), Error> {
        while !self.queue.is_empty() || self.release_blocks() {
            if self.opts.action == Action::DryRun {
                let job = self.queue.pop_front().expect("the queue is not empty");
                self.prepare(job);
                let node = &self.ctx.graph.nodes[self.jobs[job].node];
                let command = summary::PlannedCommand::new(&self.jobs[job], node);
                self.summary.commands.push(command);
                let outputs = self.jobs[job].dry_run_outputs();
                self.succeeded(job, outputs)?;
                self.set_cover(job, Cover::Done);
                continue;
            }
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
        let take = self.queue.len().min(CHUNK);
        let jobs: Vec<usize> = self.queue.drain(..take).collect();
        let slices: Vec<Arc<str>> = jobs
            .iter()
            .map(|&j| self.slice_json(self.jobs[j].node))
            .collect();
        let (graph, probe, live) = (self.ctx.graph, self.ctx.probe, &self.live);
        let mut tables: Vec<String> = jobs
            .iter()
            .filter_map(|&j| graph.nodes[self.jobs[j].node].probed_table())
            .map(str::to_string)
            .collect();
        tables.sort_unstable();
        tables.dedup();
        let (records, listed): (Vec<Vec<BuildRecord>>, _) = rayon::join(
            || {
                jobs.par_iter()
                    .zip(&slices)
                    .map(|(&j, slice_json)| {
                        let (id, targets) = (self.jobs[j].node, &self.jobs[j].targets);
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
                let id = self.jobs[j].node;
                if self.jobs[j].targets.len() != live.plan().nodes[id].targets.len() {
                    return None;
                }
                let column = output(id).map(|(t, p)| Column::from_partitions(t, p));
                live.memo(id, column.as_ref())
            })
            .collect();
        for ((job, records), memo) in jobs.into_iter().zip(records).zip(memos) {
            let id = self.jobs[job].node;
            let outputs = job::outputs(&records, output(id).map(|(_, p)| p));
            self.jobs[job].records = records;
            self.succeeded(job, outputs)?;
            if let (Some(memo), Some(writer)) = (memo, &self.writer)
                && self.live.all_built(id)
            {
                let _ = writer.send(Write::Memo(plan::node_key(&graph.nodes[id]), memo));
            }
        }
        Ok(())
    }

    fn event_loop(&mut self) -> Result<(), Error> {
        let signals = process::forward_interrupts(self.events.0.clone(), || Event::Interrupt);
        let result = self.event_loop_inner();
        if let Some(handle) = signals {
            handle.close();
        }
        result
    }

    fn event_loop_inner(&mut self) -> Result<(), Error> {
        loop {
            if self.interrupts == 0 {
                self.dispatch()?;
            }
            let idle = self.running.is_empty() && self.queue.is_empty() && self.delayed.is_empty();
            if idle && self.interrupts == 0 && self.release_blocks() {
                continue;
            }
            let stopped = self.interrupts > 0 && self.running.is_empty();
            if (idle || stopped) && (self.interrupts > 0 || !self.should_poll()) {
                break;
            }
            let timeout = self.next_wakeup().saturating_duration_since(Instant::now());
            match self.events.1.recv_timeout(timeout) {
                Ok(Event::Exited { job, code }) => self.exited(job, code)?,
                Ok(Event::Interrupt) => self.interrupted(),
                Err(RecvTimeoutError::Timeout) => self.tick()?,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        Ok(())
    }

    /// With `--wait`, whether blocked targets are worth probing for again.
    fn should_poll(&mut self) -> bool {
        let Some(deadline) = self.wait_deadline else {
            return false;
        };
        if Instant::now() >= deadline || self.live.blocked_tables().is_empty() {
            return false;
        }
        if self.next_poll.is_none() {
            self.next_poll = Some(Instant::now() + self.opts.poll);
        }
        true
    }

    fn next_wakeup(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let deadlines = self.running.values().filter_map(|r| match r.terminated {
            Some(t) => Some(t + KILL_GRACE),
            None => r.deadline,
        });
        let retries = self.delayed.iter().map(|(at, _)| *at);
        deadlines
            .chain(retries)
            .chain(self.next_poll)
            .chain(self.wait_deadline)
            .min()
            .unwrap_or(far)
            .min(far)
    }

    fn interrupted(&mut self) {
        self.interrupts += 1;
        self.summary.interrupted = true;
        if self.interrupts == 1 {
            self.delayed.clear();
            self.progress.note(&format!(
                "interrupted: no new jobs; waiting for {} running job(s) (Ctrl-C again to kill them)",
                self.running.len()
            ));
        } else {
            self.progress
                .note("interrupted again: killing running jobs");
            for running in self.running.values() {
                crate::exec::command::kill_group(running.pid, libc::SIGKILL);
            }
        }
    }

    /// Timeouts, retries that are due, and sensor polls.
    fn tick(&mut self) -> Result<(), Error> {
        let now = Instant::now();
        for (job, running) in self.running.iter_mut() {
            match running.terminated {
                None if running.deadline.is_some_and(|d| now >= d) => {
                    crate::exec::command::kill_group(running.pid, libc::SIGTERM);
                    running.terminated = Some(now);
                    let _ = job;
                }
                Some(t) if now >= t + KILL_GRACE => {
                    crate::exec::command::kill_group(running.pid, libc::SIGKILL);
                }
                _ => {}
            }
        }
        let (due, later): (Vec<_>, Vec<_>) = self.delayed.drain(..).partition(|(at, _)| *at <= now);
        self.delayed = later;
        for (_, job) in due {
            self.queue.push_back(job);
        }
        if self.next_poll.is_some_and(|p| now >= p) {
            self.next_poll = None;
            self.poll_inputs()?;
        }
        Ok(())
    }

    fn dispatch(&mut self) -> Result<(), Error> {
        let nodes = &self.ctx.graph.nodes;
        while !self.slots.full() {
            let fits = |&j: &usize| self.slots.fits(&nodes[self.jobs[j].node]);
            let Some(pos) = self.queue.iter().position(fits) else {
                break;
            };
            let job = self.queue.remove(pos).expect("position is in the queue");
            self.start(job)?;
        }
        Ok(())
    }

    fn start(&mut self, job: usize) -> Result<(), Error> {
        self.jobs[job].attempt += 1;
        let node_id = self.jobs[job].node;
        let node = &self.ctx.graph.nodes[node_id];
        let log = self.log_path(job);
        self.slots.take(node);
        self.prepare(job);
        let what = format!(
            "{} (attempt {})",
            self.describe(job),
            self.jobs[job].attempt
        );
        self.progress.started(job, &what);
        let started = Instant::now();
        let tx = self.events.0.clone();
        let waiters = self
            .waiters
            .get_or_insert_with(|| process::Waiters::new(self.opts.jobs));
        let spawned = process::spawn(waiters, &self.jobs[job].command, &log, move |code| {
            let _ = tx.send(Event::Exited { job, code });
        });
        let pid = match spawned {
            Ok(pid) => pid,
            Err(message) => {
                // The command could not start: an attempt that failed.
                process::append_log(&log, &message);
                let _ = self.events.0.send(Event::Exited { job, code: None });
                0
            }
        };
        self.running.insert(
            job,
            Running {
                pid,
                started,
                deadline: self.opts.timeout.map(|t| started + t),
                terminated: None,
                started_at: crate::clock::unix_now(),
                log,
            },
        );
        Ok(())
    }

    fn exited(&mut self, job: usize, code: Option<i32>) -> Result<(), Error> {
        let Some(running) = self.running.remove(&job) else {
            return Ok(());
        };
        let node_id = self.jobs[job].node;
        let node = &self.ctx.graph.nodes[node_id];
        self.slots.give_back(node);
        let elapsed = running.started.elapsed();
        // Keep the slots busy: start what is queued before recording.
        if self.interrupts == 0 {
            self.dispatch()?;
        }
        let node = &self.ctx.graph.nodes[node_id];
        let attempt = Attempt {
            run: self.run_id,
            node: plan::node_key(node),
            from: self.jobs[job].range.map(|r| r.from),
            to: self.jobs[job].range.map(|r| r.to),
            attempt: self.jobs[job].attempt,
            argv: self.jobs[job].command.argv.clone(),
            log_path: running.log.to_string_lossy().into_owned(),
            started_at: running.started_at,
            exit_code: code,
            duration: elapsed,
        };
        if code == Some(0) {
            // Recorded with the targets it built, in their transaction.
            self.finishing = Some(attempt);
        } else if let Some(store) = self.ctx.store.as_deref_mut() {
            store.record_attempt(&attempt)?;
        }
        let what = self.describe(job);
        let attempt = self.jobs[job].attempt;
        self.summary.attempts.push(summary::AttemptReport {
            step: node.step,
            duration: elapsed,
            retry: attempt > 1,
        });
        if code == Some(0) {
            let outputs = self.probe_outputs(job)?;
            let missing = outputs.iter().filter(|o| o.is_none()).count();
            self.progress.ended(
                job,
                &format!("done {what} in {}", summary::seconds(elapsed)),
                true,
            );
            self.summary.ran.push(summary::JobReport {
                target: what,
                attempts: attempt,
                duration: elapsed,
                log: running.log.clone(),
            });
            if missing > 0 {
                self.progress.note(&format!(
                    "{}: the job exited 0 but {missing} output partition(s) are missing",
                    self.describe(job)
                ));
            }
            self.succeeded(job, outputs)?;
            if let (Some(attempt), Some(store)) =
                (self.finishing.take(), self.ctx.store.as_deref_mut())
            {
                store.record_attempt(&attempt)?;
            }
            self.set_cover(job, Cover::Done);
            return Ok(());
        }
        if self.interrupts >= 2 {
            // Killed on request: not a failure of the job; it stays stale.
            self.progress.ended(job, &format!("killed {what}"), true);
            let why: Arc<str> = "killed by the second interrupt".into();
            self.live.hold(node_id, &self.jobs[job].targets, Some(&why));
            return Ok(());
        }
        let how = match (code, running.terminated) {
            (_, Some(_)) => format!(
                "timed out after {}",
                summary::seconds(self.opts.timeout.unwrap_or_default())
            ),
            (Some(c), None) => format!("exit code {c}"),
            (None, None) => "killed by a signal or could not start".to_string(),
        };
        let retry = attempt <= self.opts.retries && self.interrupts == 0;
        if retry {
            let delay = self
                .opts
                .backoff
                .checked_mul(2u32.saturating_pow(attempt - 1))
                .unwrap_or(crate::settings::duration::MAX)
                .min(crate::settings::duration::MAX);
            self.progress.ended(
                job,
                &format!(
                    "failed {what} ({how}); retry {attempt}/{} in {}",
                    self.opts.retries,
                    summary::seconds(delay)
                ),
                false,
            );
            self.delayed.push((Instant::now() + delay, job));
            return Ok(());
        }
        self.progress
            .ended(job, &format!("FAILED {what} ({how})"), true);
        self.failure_hook(job, code, &how, &running.log);
        self.summary.failed.push(summary::FailureReport {
            target: what,
            step: node.step,
            how,
            exit_code: code,
            attempts: attempt,
            log: running.log.clone(),
            tail: summary::tail(&running.log, 10),
        });
        let targets = self.jobs[job].targets.clone();
        let ready = self.fail(node_id, &targets, code.unwrap_or(-1))?;
        self.dispatch_ready(ready);
        self.set_cover(job, Cover::Failed);
        Ok(())
    }

    /// Records a job's targets whose outputs are there, and dispatches what
    /// became ready.
    fn succeeded(&mut self, job: usize, outputs: Vec<Option<Hash>>) -> Result<(), Error> {
        let node_id = self.jobs[job].node;
        let node = &self.ctx.graph.nodes[node_id];
        let records = std::mem::take(&mut self.jobs[job].records);
        let mut built = Vec::new();
        let mut days = Vec::new();
        for (record, output) in records.iter().zip(&outputs) {
            if let Some(output) = output {
                built.push(record.built(*output));
                days.push(record.day);
            }
        }
        let reads = |plan: &Plan| {
            let columns = plan.input_columns(self.ctx.graph, node);
            plan::reads(node, &columns, &days, plan.until)
        };
        // With a writer thread, the sequence number of the write is not
        // known here: the run's plan never reads it (reasons are found from
        // the state by later plans).
        let mut deferred = None;
        let seq = match (self.ctx.store.as_deref_mut(), &self.writer) {
            _ if built.is_empty() || self.opts.action == Action::DryRun => 0,
            (_, Some(_)) => {
                deferred = Some(reads(self.live.plan()));
                0
            }
            (Some(store), None) => {
                let read = reads(self.live.plan());
                let attempt = self.finishing.take();
                store.record_built_after(&built, &read, attempt.as_ref())?
            }
            (None, None) => 0,
        };
        drop(built);
        let by_day: HashMap<i64, usize> = self.jobs[job]
            .targets
            .iter()
            .map(|&i| (day_column(self.live.target(node_id, i).day), i))
            .collect();
        let mut recorded = Vec::new();
        let mut missing = Vec::new();
        for (record, output) in records.iter().zip(&outputs) {
            let Some(&i) = by_day.get(&day_column(record.day)) else {
                continue;
            };
            match output {
                Some(output) => recorded.push((
                    i,
                    Recorded {
                        key: record.key,
                        slice: record.slice,
                        inputs: record.inputs_hash,
                        output: *output,
                        seq,
                    },
                )),
                None => missing.push(i),
            }
        }
        if let (Some(read), Some(writer)) = (deferred, &self.writer) {
            let recording = Recording {
                records,
                outputs,
                read,
            };
            // A closed channel means the writer stopped on an error, which
            // the adoption returns when it ends.
            let _ = writer.send(Write::Job(recording));
        }
        self.summary.built += recorded.len();
        let mut ready = self
            .live
            .built(node_id, &self.jobs[job].targets, recorded, &missing);
        if !missing.is_empty() {
            if self.opts.action == Action::Adopt {
                self.summary.not_adopted += missing.len();
                ready.extend(self.live.not_adopted(node_id, &missing));
            } else {
                let table = node.output.clone().unwrap_or_default();
                let log = self.log_path(job);
                if self.opts.action == Action::Run {
                    self.failure_hook(
                        job,
                        Some(0),
                        "exited 0 but output partitions are missing",
                        &log,
                    );
                }
                // A job that leaves outputs missing is a failed job, and
                // counts as one.
                self.summary.failed.push(summary::FailureReport {
                    target: self.describe(job),
                    step: node.step,
                    how: format!(
                        "exited 0 but {} output partition(s) of {table} are missing",
                        missing.len()
                    ),
                    exit_code: Some(0),
                    attempts: self.jobs[job].attempt,
                    tail: summary::tail(&log, 10),
                    log,
                });
                ready.extend(self.fail(node_id, &missing, 0)?);
            }
        }
        self.dispatch_ready(ready);
        Ok(())
    }

    /// Marks targets failed (recorded, so the next plan says so); what reads
    /// them cannot run.
    fn fail(&mut self, node_id: NodeId, targets: &[usize], exit_code: i32) -> Result<Ready, Error> {
        let days: Vec<Option<Day>> = targets
            .iter()
            .map(|&i| self.live.target(node_id, i).day)
            .collect();
        if let Some(store) = self.ctx.store.as_deref_mut() {
            let node = &self.ctx.graph.nodes[node_id];
            store.record_failed(&plan::node_key(node), &days, self.run_id, exit_code)?;
        }
        Ok(self.live.failed(node_id, targets, self.run_id))
    }

    /// Sensors: probes the tables blocking targets again; the live plan
    /// evaluates the targets reading those that landed.
    fn poll_inputs(&mut self) -> Result<(), Error> {
        let mut listed = Vec::new();
        for table in self.live.blocked_tables() {
            let partitions = self.ctx.probe.list(&table)?;
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

pub(crate) fn contiguous(last: Option<Day>, next: Option<Day>) -> bool {
    matches!((last, next), (Some(a), Some(b)) if b.0 == a.0 + 1)
}
