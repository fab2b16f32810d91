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
//! Three drivers share that machinery, one per mode: a real run starts
//! jobs as processes and receives their exits as events (`events`); a dry
//! run (`dry_run`) lets each job "succeed" with an unknown output and
//! writes nothing; adopt (`adopt`) lets a job "succeed" when its output
//! partitions already exist in the warehouse. What a job ended with is
//! written by one `recorder::Recorder`: the state, adopt's writer thread
//! (`writer`), or nowhere.

mod adopt;
mod alerts;
mod blocks;
mod claims;
mod dry_run;
mod events;
pub(crate) mod gc;
mod hooks;
mod job;
pub(crate) mod lock;
mod log;
pub(crate) mod process;
pub(crate) mod progress;
mod recorder;
mod slots;
mod summary;
mod whole_join;
mod writer;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel};
use std::time::{Duration, Instant};

use crate::config::Repo;
use crate::error::Error;
use crate::exec::{self, CommandLine};
use crate::graph::{Graph, Node, NodeId, Step};
use crate::hash::Hash;
use crate::partition::{Day, DayRange};
use crate::plan::live::{LivePlan, Ready};
use crate::plan::{self, BuildRecord, Plan};
use crate::probe::Probe;
use crate::settings::Settings;
use crate::store::{Attempt, StateStore};

pub use hooks::HookCommands;
use job::{Job, Running};
pub use progress::ProgressMode;
use recorder::{Planned, Recorder};
pub use summary::{Outcome, Summary, tail};
use whole_join::{Cover, Covers};
use writer::Write;

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
    /// On SIGTERM or SIGHUP: the jobs' time between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
    /// The most bytes of output an attempt's log keeps.
    pub log_limit: u64,
    /// How long this run's claims hold without being renewed, seen from
    /// another host (`[state] lease`).
    pub lease: Duration,
    /// Invalid configs set apart: the run ends failed.
    pub invalid_configs: usize,
}

/// What a run leaves: its summary, and the plan as the run ended (every
/// target's status after it).
pub struct Finished {
    pub summary: Summary,
    pub plan: Plan,
}

/// A run's inputs, built once from validated options and settings (`cli::run`):
/// what it reads (the repository, settings, graph, probe and the executor
/// that makes each job's command), where it writes (the state, unless a
/// dry run; job logs), and how it runs (`opts`).
pub struct Session<'a> {
    pub repo: &'a Repo,
    pub settings: &'a Settings,
    pub graph: &'a Graph,
    pub probe: &'a dyn Probe,
    pub executor: &'a exec::Executor<'a>,
    /// `None` for a dry run: nothing is written.
    pub store: Option<&'a mut StateStore>,
    /// Where job logs go: `<state folder>/logs`.
    pub log_dir: PathBuf,
    pub opts: RunOptions,
}

enum Event {
    Exited {
        job: usize,
        code: Option<i32>,
        /// Whether it printed anything: its log was made.
        logged: bool,
    },
    /// SIGINT, SIGTERM or SIGHUP to the run.
    Signal(i32),
}

/// How long a job killed for its timeout gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// How long after a local engine job's time bound the runner stops it (the
/// job stops itself at the bound: `engine::bounds`).
const BOUND_BACKSTOP: Duration = Duration::from_secs(30);

pub struct Runner<'c, 'a> {
    session: &'c mut Session<'a>,
    /// The plan, kept current: it decides what is ready.
    live: LivePlan<'a>,
    /// Nodes whose targets this executor cannot run at all (mutation
    /// streams on the local engine): reported as skipped, not as failed or
    /// not run.
    skipped: Vec<bool>,
    names: Names,
    work: Work,
    slots: slots::Slots<'a>,
    run_id: i64,
    processes: Processes,
    progress: progress::Progress,
    summary: Summary,
    interrupts: u32,
    sensing: Sensing,
    hooks: hooks::Hooks,
    /// `adopt`: recordings go to a writer thread, which owns the state
    /// while keying and probing go on here.
    writer: Option<SyncSender<Write>>,
}

/// Names made once per node: labels for messages, slices for records.
#[derive(Default)]
struct Names {
    labels: Vec<String>,
    slices: HashMap<NodeId, Arc<str>>,
}

/// The run's jobs: how ready targets are cut into jobs, the jobs made, and
/// where each is.
struct Work {
    /// Each node's job ranges, cut once from the plan.
    blocks: blocks::Blocks,
    /// Whole-join runs: what each join's backfills of this run cover.
    covers: Covers,
    jobs: Vec<Job>,
    queue: VecDeque<usize>,
    /// Jobs waiting for a retry, with when.
    delayed: Vec<(Instant, usize)>,
    running: HashMap<usize, Running>,
    /// Process groups whose leader exited after SIGTERM while others of the
    /// group live on: SIGKILLed when their grace ends.
    lingering: Vec<(u32, Instant)>,
    /// The targets this run claims, and its jobs waiting for other runs'.
    claims: claims::Claims,
    /// Jobs that ended well, for the next group commit.
    unwritten: recorder::Unwritten,
}

/// The processes' side: their exits come as events; threads wait for them.
struct Processes {
    events: (Sender<Event>, Receiver<Event>),
    waiters: Option<process::Waiters>,
    /// Started with the first job: stops the jobs if the runner dies.
    watchdog: Option<exec::watch::Watchdog>,
}

/// `--wait`: until when blocked inputs are polled for, and the next poll.
struct Sensing {
    wait_deadline: Option<Instant>,
    next_poll: Option<Instant>,
}

impl<'c, 'a> Runner<'c, 'a> {
    pub fn new(session: &'c mut Session<'a>, plan: Plan) -> Runner<'c, 'a> {
        let skipped = vec![false; plan.nodes.len()];
        let (graph, settings, repo) = (session.graph, session.settings, session.repo);
        let opts = &session.opts;
        let slots = slots::Slots::new(opts.jobs, &settings.limits);
        let labels = graph.nodes.iter().map(Node::label).collect();
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
            job::step_days(repo, settings, opts.action, &graph.nodes[id])
        });
        Runner {
            session,
            live,
            skipped,
            names: Names {
                labels,
                slices: HashMap::new(),
            },
            work: Work {
                blocks,
                covers: Covers::default(),
                jobs: Vec::new(),
                queue: VecDeque::new(),
                delayed: Vec::new(),
                running: HashMap::new(),
                lingering: Vec::new(),
                claims: claims::Claims::default(),
                unwritten: recorder::Unwritten::default(),
            },
            slots,
            run_id: 0,
            processes: Processes {
                events: channel(),
                waiters: None,
                watchdog: None,
            },
            progress,
            summary: Summary::default(),
            interrupts: 0,
            sensing: Sensing {
                wait_deadline,
                next_poll: None,
            },
            hooks,
            writer: None,
        }
    }

    /// Joins run as one `backfill` per join (`executor.joins = "whole"`):
    /// its left, parts and final are still separate targets, recorded when
    /// the one command that computes them all ends well.
    fn whole_join(&self, node: &Node) -> bool {
        self.session.opts.action != Action::Adopt
            && exec::interface::whole_join(self.session.settings.executor.joins, node.step)
    }

    fn set_cover(&mut self, job: usize, cover: Cover) {
        let node = &self.session.graph.nodes[self.work.jobs[job].node];
        if !self.whole_join(node) {
            return;
        }
        let (config, range) = (node.config, self.work.jobs[job].range);
        if let Some(range) = range {
            self.work.covers.ended(config, range, cover);
        }
        self.release_join(config);
    }

    /// Queues (or absorbs) the join's targets that waited on a backfill.
    fn release_join(&mut self, config: usize) {
        let ids: Vec<NodeId> = self
            .session
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
        let config = self.session.graph.nodes[id].config;
        let mut rest = Vec::new();
        let mut done = Vec::new();
        for i in ready {
            match self.work.covers.get(config, self.live.target(id, i).day) {
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
            self.work.jobs.push(Job {
                node: id,
                targets: done,
                range: None,
                records,
                command: CommandLine::default(),
                attempt: 0,
            });
            let job = self.work.jobs.len() - 1;
            let outputs = match self.session.opts.action {
                Action::DryRun => self.work.jobs[job].dry_run_outputs(),
                _ => self.probe_outputs(job).unwrap_or_default(),
            };
            if let Err(e) = self.succeeded(job, outputs, None) {
                self.progress.note(&format!("error: {e}"));
            }
        }
        rest
    }

    /// Runs to the end and says what happened.
    pub fn run(mut self) -> Result<Finished, Error> {
        let started = self.session.opts.started;
        if self.session.opts.action == Action::Run
            && let Some(store) = self.session.store.as_deref_mut()
        {
            self.run_id = store.begin_run(&self.session.opts.args)?;
        }
        self.start_claiming();
        let run_dir = self.session.log_dir.join(format!("run-{}", self.run_id));
        let commands = if self.session.opts.action == Action::Run {
            self.session.opts.hooks.clone()
        } else {
            HookCommands::default()
        };
        self.hooks = hooks::Hooks::new(commands, run_dir.clone());
        self.summary.run_id = self.run_id;
        self.summary.setup.action = self.session.opts.action;
        self.summary.setup.invalid_configs = self.session.opts.invalid_configs;
        let ready = self.live.start();
        self.dispatch_ready(ready);
        let result = match self.session.opts.action {
            Action::Run => self.event_loop(),
            Action::DryRun => self.dry_run_loop(),
            Action::Adopt => self.adopt_loop(),
        };
        self.progress.finish();
        process::end_watch(
            self.processes.watchdog.take(),
            !self.work.running.is_empty(),
        );
        self.summary.hook_failures = self.hooks.finish();
        let released = self.release_all_claims();
        result?;
        released?;
        self.summary.wall = started.elapsed();
        self.summary.cutoff = self.live.cutoff();
        self.summary
            .add_left(&self.live, &self.names.labels, &self.skipped);
        if self.session.opts.action == Action::Run
            && let Some(store) = self.session.store.as_deref_mut()
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

    /// Probes a job's output partitions (`job::probe_outputs`).
    fn probe_outputs(&self, job: usize) -> Result<Vec<Option<Hash>>, Error> {
        let job = &self.work.jobs[job];
        job::probe_outputs(
            &self.session.graph.nodes[job.node],
            &job.records,
            self.session.probe,
        )
    }

    /// Where a job's current attempt logs.
    fn log_path(&self, job: usize) -> PathBuf {
        self.work.jobs[job].log_path(self.session.graph, &self.session.log_dir, self.run_id)
    }

    /// Makes a job's records as it starts: keys and their documents from
    /// the inputs as they are now.
    fn prepare(&mut self, job: usize) {
        let (id, targets) = (
            self.work.jobs[job].node,
            self.work.jobs[job].targets.clone(),
        );
        self.work.jobs[job].records = self.records(id, &targets);
    }

    /// What building these targets of a node records (those whose key is
    /// known).
    fn records(&mut self, id: NodeId, targets: &[usize]) -> Vec<BuildRecord> {
        let slice_json = self.slice_json(id);
        job::records(&self.live, self.session.graph, id, targets, &slice_json)
    }

    fn slice_json(&mut self, node: NodeId) -> Arc<str> {
        let graph = self.session.graph;
        self.names
            .slices
            .entry(node)
            .or_insert_with(|| plan::slice_json(&graph.nodes[node]))
            .clone()
    }

    /// Why the local engine cannot run this streaming deploy, if it is one
    /// it cannot run.
    fn local_streaming_gap(&self, node: &Node) -> Option<&'static str> {
        if node.step != Step::GroupByStreaming || self.session.executor.interface().is_some() {
            return None;
        }
        match &self.session.repo.configs[node.config].body {
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
        let due = self.work.blocks.due(&self.live, id, &ready);
        for group in due {
            self.enqueue_group(id, group);
        }
    }

    /// Hands out the targets held by blocks that still wait, when nothing
    /// else is left to do; whether any were.
    fn release_blocks(&mut self) -> bool {
        let released = self.work.blocks.release(&self.live);
        let queued = self.work.queue.len();
        for (id, group) in released {
            if !self.live.ordering_busy(id) {
                self.enqueue_group(id, group);
            }
        }
        self.work.queue.len() > queued
    }

    /// Jobs for one group of a node's ready targets, sorted by day.
    fn enqueue_group(&mut self, id: NodeId, group: Vec<usize>) {
        let mut ready = self.live.take_ready(id, group);
        if ready.is_empty() {
            return;
        }
        let node = &self.session.graph.nodes[id];
        if self.session.opts.action == Action::Adopt && !node.probed_output {
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
        self.push_jobs(id, ready);
    }

    /// Queues jobs for a node's targets, taken from the live plan: one per
    /// run of contiguous days.
    fn push_jobs(&mut self, id: NodeId, mut ready: Vec<usize>) {
        let node = &self.session.graph.nodes[id];
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
                self.work.covers.queued(node.config, range);
            }
            let command = self.command(node, range, whole, key);
            self.work.jobs.push(Job {
                node: id,
                targets,
                range,
                records: Vec::new(),
                command,
                attempt: 0,
            });
            self.work.queue.push_back(self.work.jobs.len() - 1);
            self.progress.queued(1);
        }
    }

    /// A job's command; a local engine job is told how many jobs share
    /// the machine's memory (its default memory bound).
    fn command(
        &self,
        node: &Node,
        range: Option<DayRange>,
        whole: bool,
        key: Option<Hash>,
    ) -> CommandLine {
        let mut command = self.session.executor.command(node, range, whole, key);
        if self.session.executor.interface().is_none() {
            let jobs = self.session.opts.jobs.to_string();
            command
                .env
                .insert(crate::engine::bounds::JOBS_ENV.into(), jobs);
        }
        command
    }

    fn describe(&self, job: usize) -> String {
        let job = &self.work.jobs[job];
        let range = crate::partition::at_range(job.range.map(|r| r.from), job.range.map(|r| r.to));
        format!("{}{range}", self.names.labels[job.node])
    }

    /// Whether a job's node is there only as upstream of the selection
    /// (`Plan::pulled_in`): its lines say so as `plan`'s do.
    fn pulled_in(&self, job: usize) -> bool {
        self.live.plan().pulled_in(self.work.jobs[job].node)
    }

    /// The text after a line about a job: its pulled-in mark, if any.
    fn mark(&self, job: usize) -> &'static str {
        plan::render::mark(self.pulled_in(job))
    }

    /// Where what ends is written (`recorder`).
    fn recorder(&mut self) -> Recorder<'_> {
        Recorder::new(
            self.session.opts.action,
            self.session.store.as_deref_mut(),
            (&mut self.work.unwritten, self.writer.as_ref()),
        )
    }

    /// Records a job's targets whose outputs are there, with the attempt
    /// that built them (`attempt`, from a real run: written in the next
    /// group commit, `recorder::Unwritten`), and dispatches what became
    /// ready.
    fn succeeded(
        &mut self,
        job: usize,
        outputs: Vec<Option<Hash>>,
        attempt: Option<Attempt>,
    ) -> Result<(), Error> {
        let graph: &Graph = self.session.graph;
        let node_id = self.work.jobs[job].node;
        let node = &graph.nodes[node_id];
        let records = std::mem::take(&mut self.work.jobs[job].records);
        let (recorded, missing) = self.work.jobs[job].recorded(&self.live, &records, &outputs);
        let planned = Planned::new(graph, &self.live);
        Recorder::new(
            self.session.opts.action,
            self.session.store.as_deref_mut(),
            (&mut self.work.unwritten, self.writer.as_ref()),
        )
        .built(planned, node, (records, outputs), attempt)?;
        self.summary.built += recorded.len();
        let mut ready = self
            .live
            .built(node_id, &self.work.jobs[job].targets, recorded, &missing);
        if !missing.is_empty() {
            ready.extend(self.outputs_missing(job, &missing)?);
        }
        self.dispatch_ready(ready);
        Ok(())
    }

    /// Targets whose job exited well without writing them: not adopted
    /// (`adopt`), or failed, as a failed job counts.
    fn outputs_missing(&mut self, job: usize, missing: &[usize]) -> Result<Ready, Error> {
        let node_id = self.work.jobs[job].node;
        if self.session.opts.action == Action::Adopt {
            self.summary.not_adopted += missing.len();
            return Ok(self.live.not_adopted(node_id, missing));
        }
        let node = &self.session.graph.nodes[node_id];
        let table = node.output.clone().unwrap_or_default();
        let log = self.log_path(job);
        if self.session.opts.action == Action::Run {
            self.failure_hook(
                job,
                Some(0),
                "exited 0 but output partitions are missing",
                &log,
            );
        }
        self.summary.failed.push(summary::FailureReport {
            target: self.describe(job),
            pulled_in: self.pulled_in(job),
            step: node.step,
            how: format!(
                "exited 0 but {} output partition(s) of {table} are missing",
                missing.len()
            ),
            exit_code: Some(0),
            attempts: self.work.jobs[job].attempt,
            tail: summary::tail(&log, 10),
            log,
        });
        self.release_claims(job)?;
        self.fail(node_id, missing, 0)
    }

    /// Marks targets failed (recorded, so the next plan says so); what reads
    /// them cannot run.
    fn fail(&mut self, node_id: NodeId, targets: &[usize], exit_code: i32) -> Result<Ready, Error> {
        let days: Vec<Option<Day>> = targets
            .iter()
            .map(|&i| self.live.target(node_id, i).day)
            .collect();
        let (graph, run_id): (&Graph, i64) = (self.session.graph, self.run_id);
        self.recorder()
            .failed(&graph.nodes[node_id], &days, run_id, exit_code)?;
        Ok(self.live.failed(node_id, targets, self.run_id))
    }
}

pub(crate) fn contiguous(last: Option<Day>, next: Option<Day>) -> bool {
    matches!((last, next), (Some(a), Some(b)) if b.0 == a.0 + 1)
}
