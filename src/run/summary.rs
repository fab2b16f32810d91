//! What a run did, for people (text) and machines (JSON).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use std::sync::Arc;

use super::{Action, Job, contiguous};
use crate::error::Exit;
use crate::exec;
use crate::graph::{Node, Step};
use crate::partition::Day;
use crate::plan::Status;
use crate::plan::live::{LivePlan, Phase};
use crate::plan::render::{mark, pulled_in_count};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    UpstreamFailed,
    Blocked,
    /// Not run: interrupted, or still waiting at the end.
    NotRun,
    /// A step this executor does not run (streaming on the local engine):
    /// said, and no reason to fail the run.
    Skipped,
}

impl Outcome {
    fn name(self) -> &'static str {
        match self {
            Outcome::UpstreamFailed => "upstream-failed",
            Outcome::Blocked => "blocked",
            Outcome::NotRun => "not run",
            Outcome::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Serialize)]
pub struct JobReport {
    pub target: String,
    /// Upstream of the selection, run because the selection reads it (as
    /// `plan`'s `pulled_in`).
    pub pulled_in: bool,
    pub attempts: u32,
    #[serde(serialize_with = "as_seconds")]
    pub duration: Duration,
    /// `None` when the job printed nothing (no log was made).
    pub log: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct FailureReport {
    pub target: String,
    /// Upstream of the selection (as `JobReport::pulled_in`).
    pub pulled_in: bool,
    pub step: Step,
    pub how: String,
    pub exit_code: Option<i32>,
    pub attempts: u32,
    pub log: PathBuf,
    /// The last lines of the log.
    pub tail: Vec<String>,
}

/// Targets that did not run, grouped into ranges.
#[derive(Debug, Serialize)]
pub struct LeftReport {
    pub outcome: Outcome,
    pub target: String,
    pub from: Option<Day>,
    pub to: Option<Day>,
    pub count: usize,
    pub note: String,
    /// Upstream of the selection (as `JobReport::pulled_in`).
    pub pulled_in: bool,
    /// The note without its days, shared by every range with one cause
    /// (`missing TABLE`, `waiting: NODE`): what the text groups by.
    #[serde(skip)]
    pub cause: String,
    /// The days of the cause: the missing partitions, or those waited on.
    #[serde(skip)]
    pub cause_days: Option<(Day, Day)>,
}

#[derive(Debug, Serialize)]
pub struct AttemptReport {
    pub step: Step,
    #[serde(serialize_with = "as_seconds")]
    pub duration: Duration,
    pub retry: bool,
}

/// A command a dry run would run.
#[derive(Debug, Serialize)]
pub struct PlannedCommand {
    pub step: Step,
    pub config: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part: Option<String>,
    pub start_ds: Option<Day>,
    pub end_ds: Option<Day>,
    pub argv: Vec<String>,
    /// Upstream of the selection, run because the selection reads it.
    pub pulled_in: bool,
}

impl PlannedCommand {
    pub(super) fn new(job: &Job, node: &Node, pulled_in: bool) -> PlannedCommand {
        PlannedCommand {
            step: node.step,
            config: node.name.clone(),
            part: node.part.clone(),
            start_ds: job.range.map(|r| r.from),
            end_ds: job.range.map(|r| r.to),
            argv: job.command.argv.clone(),
            pulled_in,
        }
    }
}

/// What the run was asked to do, and what it was given to do it with.
#[derive(Debug, Default, Serialize)]
pub struct Setup {
    #[serde(skip)]
    pub action: Action,
    /// Invalid configs set apart before planning: the run ends `failed`
    /// (exit 1) however its targets end, and says so on its last line.
    #[serde(skip_serializing_if = "is_zero")]
    pub invalid_configs: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    #[serde(flatten)]
    pub setup: Setup,
    pub run_id: i64,
    pub outcome: &'static str,
    /// Targets recorded as built (or adopted).
    pub built: usize,
    /// Targets fresh without running, including those an upstream rerun
    /// left unchanged (`cutoff`).
    pub fresh: usize,
    pub cutoff: usize,
    pub not_adopted: usize,
    /// Whether, and how, the run was stopped before it finished.
    pub interrupted: Interruption,
    #[serde(serialize_with = "as_seconds")]
    pub wall: Duration,
    pub ran: Vec<JobReport>,
    pub failed: Vec<FailureReport>,
    pub left: Vec<LeftReport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<PlannedCommand>,
    #[serde(skip)]
    pub attempts: Vec<AttemptReport>,
    /// Alerting hooks that did not exit 0 (they change nothing else).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hook_failures: Vec<String>,
}

/// How a run was stopped before it finished: by Ctrl-C, or by a stop
/// signal (SIGTERM, SIGHUP). Shown as a flag (`interrupted: true`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Interruption {
    #[default]
    None,
    Interrupt,
    Signal(i32),
}

impl Serialize for Interruption {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bool(*self != Interruption::None)
    }
}

/// The overall result, which decides the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunResult {
    Ok,
    Failed,
    Interrupted,
    Blocked,
}

impl RunResult {
    pub fn name(self) -> &'static str {
        match self {
            RunResult::Ok => "ok",
            RunResult::Failed => "failed",
            RunResult::Interrupted => "interrupted",
            RunResult::Blocked => "blocked",
        }
    }
}

impl Summary {
    pub fn outcome(&self) -> RunResult {
        let upstream_failed = self
            .left
            .iter()
            .any(|l| l.outcome == Outcome::UpstreamFailed && self.setup.action != Action::Adopt);
        if !self.failed.is_empty() || upstream_failed || self.setup.invalid_configs > 0 {
            RunResult::Failed
        } else if self.interrupted != Interruption::None {
            RunResult::Interrupted
        } else if self
            .left
            .iter()
            .any(|l| matches!(l.outcome, Outcome::Blocked | Outcome::NotRun))
            && self.setup.action != Action::Adopt
        {
            RunResult::Blocked
        } else {
            RunResult::Ok
        }
    }

    /// How the command ends, for its exit code.
    pub fn exit(&self) -> Exit {
        match self.outcome() {
            RunResult::Ok => Exit::Ok,
            RunResult::Failed => Exit::Failed,
            RunResult::Interrupted => match self.interrupted {
                Interruption::Signal(libc::SIGTERM) => Exit::Terminated,
                Interruption::Signal(libc::SIGHUP) => Exit::HungUp,
                _ => Exit::Interrupted,
            },
            RunResult::Blocked => Exit::Blocked,
        }
    }

    /// The summary as JSON, its outcome filled in.
    pub fn json(&mut self) -> serde_json::Value {
        self.outcome = self.outcome().name();
        serde_json::to_value(&*self).expect("summary serializes")
    }

    /// A dry run's text: the commands in order, each marked when pulled
    /// in, what would be left (as a run lists it), then what they add up
    /// to.
    fn dry_run_text(&self) -> String {
        let mut out = String::new();
        for c in &self.commands {
            let _ = writeln!(
                out,
                "{}{}",
                exec::command::display(&c.argv),
                mark(c.pulled_in)
            );
        }
        out.push_str(&self.left_lines());
        let pulled_in = self.commands.iter().filter(|c| c.pulled_in).count();
        let _ = writeln!(
            out,
            "{}dry run: {} command(s){}, nothing was run{}",
            match self.outcome() {
                RunResult::Ok => String::new(),
                other => format!("{}: ", other.name()),
            },
            self.commands.len(),
            pulled_in_count(pulled_in),
            self.left_text()
        );
        out
    }

    pub fn text(&self) -> String {
        if self.setup.action == Action::DryRun {
            return self.dry_run_text();
        }
        let mut out = String::new();
        for job in &self.ran {
            let retries = if job.attempts > 1 {
                format!(" after {} attempts", job.attempts)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "ran     {} in {}{retries}{}",
                job.target,
                seconds(job.duration),
                mark(job.pulled_in)
            );
        }
        for f in &self.failed {
            let _ = writeln!(
                out,
                "FAILED  {} ({}, {} attempt(s)){}\n        log: {}",
                f.target,
                f.how,
                f.attempts,
                mark(f.pulled_in),
                f.log.display()
            );
            for line in &f.tail {
                let _ = writeln!(out, "        | {line}");
            }
        }
        for problem in &self.hook_failures {
            let _ = writeln!(out, "warning: {problem}");
        }
        out.push_str(&self.left_lines());
        let count = |o: Outcome| self.count(o);
        let built = if self.setup.action == Action::Adopt {
            format!("{} adopted", self.built)
        } else {
            format!(
                "{} built in {} job(s){}",
                self.built,
                self.ran.len(),
                pulled_in_count(self.ran.iter().filter(|j| j.pulled_in).count())
            )
        };
        let _ = write!(
            out,
            "{}: {built}, {} fresh ({} by early cutoff), {} failed job(s), {} upstream-failed, {} blocked",
            self.outcome().name(),
            self.fresh,
            self.cutoff,
            self.failed.len(),
            count(Outcome::UpstreamFailed),
            count(Outcome::Blocked),
        );
        if self.setup.action == Action::Adopt {
            let _ = write!(out, ", {} not in the warehouse", self.not_adopted);
        }
        let not_run = count(Outcome::NotRun);
        if not_run > 0 {
            let _ = write!(out, ", {not_run} not run");
        }
        if self.setup.invalid_configs > 0 {
            let _ = write!(
                out,
                ", {} invalid config(s) left out",
                self.setup.invalid_configs
            );
        }
        let _ = writeln!(out, "; wall time {}", seconds(self.wall));
        out
    }

    /// The targets left (blocked, waiting, not run), one line each, or
    /// grouped by cause when there are many and not `-v`.
    fn left_lines(&self) -> String {
        if !crate::say::verbose() && self.left.len() > crate::say::LIST_MAX {
            return self.left_by_cause();
        }
        let mut out = String::new();
        for left in &self.left {
            let range = crate::partition::at_range(left.from, left.to);
            let _ = writeln!(
                out,
                "{:<7} {}{range} ({} partition(s)): {}{}",
                left.outcome.name(),
                left.target,
                left.count,
                left.note,
                mark(left.pulled_in)
            );
        }
        out
    }

    /// Targets left with this outcome.
    fn count(&self, outcome: Outcome) -> usize {
        self.left
            .iter()
            .filter(|l| l.outcome == outcome)
            .map(|l| l.count)
            .sum()
    }

    /// What a dry run would leave, after its command count: what makes it
    /// end other than ok.
    fn left_text(&self) -> String {
        let mut out = String::new();
        for (outcome, what) in [
            (Outcome::Blocked, "blocked"),
            (Outcome::NotRun, "would wait on them"),
            (Outcome::UpstreamFailed, "upstream-failed"),
        ] {
            let n = self.count(outcome);
            if n > 0 {
                let _ = write!(out, "; {n} target(s) {what}");
            }
        }
        if self.setup.invalid_configs > 0 {
            let _ = write!(
                out,
                "; {} invalid config(s) left out",
                self.setup.invalid_configs
            );
        }
        out
    }

    /// What did not run, one line per outcome and cause with how many
    /// partitions of how many configs, and the days of the cause.
    fn left_by_cause(&self) -> String {
        type Key<'a> = (Outcome, &'a str);
        let mut order: Vec<Key> = Vec::new();
        let mut by: std::collections::HashMap<Key, LeftCause> = Default::default();
        for left in &self.left {
            let key = (left.outcome, left.cause.as_str());
            let entry = by.entry(key).or_insert_with(|| {
                order.push(key);
                LeftCause::default()
            });
            entry.count += left.count;
            let config = left
                .target
                .split_once(':')
                .map_or(&*left.target, |(_, c)| c);
            entry
                .configs
                .insert(config.split('#').next().unwrap_or(config).to_string());
            if let Some((a, b)) = left.cause_days {
                entry.days = Some(entry.days.map_or((a, b), |(x, y)| (x.min(a), y.max(b))));
            }
        }
        let mut out = String::new();
        for key in order {
            let cause = &by[&key];
            let days = match cause.days {
                Some((a, b)) if a == b => format!(" {a}"),
                Some((a, b)) => format!(" {a}..{b}"),
                None => String::new(),
            };
            let _ = writeln!(
                out,
                "{}: {} partition(s) of {} config(s); {}{days}",
                key.0.name(),
                crate::say::thousands(cause.count),
                crate::say::thousands(cause.configs.len()),
                key.1
            );
        }
        if !self.left.is_empty() {
            let _ = writeln!(
                out,
                "({} range(s) left: -v lists them per target, --format json has them all)",
                crate::say::thousands(self.left.len())
            );
        }
        out
    }

    /// Fills in what is left from where every target ended up: fresh
    /// targets are counted, the others grouped into contiguous days per
    /// outcome and cause. `skipped` marks nodes the executor cannot run at
    /// all.
    pub(super) fn add_left(&mut self, live: &LivePlan, labels: &[String], skipped: &[bool]) {
        let plan = live.plan();
        for (id, node_plan) in plan.nodes.iter().enumerate() {
            let pulled_in = plan.pulled_in(id);
            if !plan.planned[id] {
                continue;
            }
            let mut groups: Vec<LeftRun> = Vec::new();
            for (i, target) in node_plan.targets.iter().enumerate() {
                let (outcome, note): (Outcome, Arc<str>) = match (live.phase(id, i), &target.status)
                {
                    (Phase::Built, _) | (Phase::Failed, _) | (Phase::NotAdopted, _) => continue,
                    (Phase::UpstreamFailed, _) => (
                        Outcome::UpstreamFailed,
                        live.note(id, i).cloned().unwrap_or_else(|| "".into()),
                    ),
                    (_, Status::Fresh) => {
                        self.fresh += 1;
                        continue;
                    }
                    (_, Status::Blocked { input }) => (Outcome::Blocked, input.to_string().into()),
                    (_, status) => (
                        if skipped[id] {
                            Outcome::Skipped
                        } else {
                            Outcome::NotRun
                        },
                        live.note(id, i)
                            .cloned()
                            .unwrap_or_else(|| status.to_string().into()),
                    ),
                };
                let (cause, day) = cause_of(&note);
                match groups.last_mut() {
                    Some(run)
                        if run.outcome == outcome
                            && run.cause == cause
                            && contiguous(run.days.last().copied().flatten(), target.day) =>
                    {
                        run.days.push(target.day);
                        run.last_note = note;
                        run.cause_days = widen(run.cause_days, day);
                    }
                    _ => groups.push(LeftRun {
                        outcome,
                        cause,
                        cause_days: day.map(|d| (d, d)),
                        days: vec![target.day],
                        first_note: note.clone(),
                        last_note: note,
                    }),
                }
            }
            for run in groups {
                let note = match run.cause_days {
                    Some((a, b)) if a != b && run.outcome == Outcome::Blocked => {
                        format!("{} ds={a}..{b}", run.cause)
                    }
                    _ if run.first_note == run.last_note => run.first_note.to_string(),
                    _ => format!(
                        "{}..{}",
                        run.first_note,
                        run.cause_days.map_or(String::new(), |(_, b)| b.to_string())
                    ),
                };
                self.left.push(LeftReport {
                    outcome: run.outcome,
                    target: labels[id].clone(),
                    from: run.days.first().copied().flatten(),
                    to: run.days.last().copied().flatten(),
                    count: run.days.len(),
                    note,
                    pulled_in,
                    cause: run.cause,
                    cause_days: run.cause_days,
                });
            }
        }
    }
}

/// Contiguous targets of one node left for one cause.
struct LeftRun {
    outcome: Outcome,
    cause: String,
    cause_days: Option<(Day, Day)>,
    days: Vec<Option<Day>>,
    first_note: Arc<str>,
    last_note: Arc<str>,
}

#[derive(Default)]
struct LeftCause {
    count: usize,
    configs: std::collections::BTreeSet<String>,
    days: Option<(Day, Day)>,
}

fn widen(days: Option<(Day, Day)>, day: Option<Day>) -> Option<(Day, Day)> {
    match (days, day) {
        (Some((a, b)), Some(d)) => Some((a.min(d), b.max(d))),
        (None, Some(d)) => Some((d, d)),
        (days, None) => days,
    }
}

/// A note without its day: `missing T ds=DAY` is `missing T`, `waiting:
/// LABEL@DAY` is `waiting: LABEL`; the day apart.
fn cause_of(note: &str) -> (String, Option<Day>) {
    if let Some((cause, day)) = note.rsplit_once(" ds=")
        && let Ok(day) = Day::parse_checked(day)
    {
        return (cause.to_string(), Some(day));
    }
    if let Some((cause, day)) = note.rsplit_once('@')
        && let Ok(day) = Day::parse_checked(day)
    {
        return (cause.to_string(), Some(day));
    }
    (note.to_string(), None)
}

pub fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    } else {
        format!("{}h{:02}m", d.as_secs() / 3600, d.as_secs() / 60 % 60)
    }
}

fn as_seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

/// The last `n` lines of a log.
pub fn tail(path: &Path, n: usize) -> Vec<String> {
    let Ok(text) = std::fs::read(path) else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}
