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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
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
    pub attempts: u32,
    #[serde(serialize_with = "as_seconds")]
    pub duration: Duration,
    pub log: PathBuf,
}

#[derive(Debug, Serialize)]
pub struct FailureReport {
    pub target: String,
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

    pub fn to_json(&mut self) -> serde_json::Value {
        self.outcome = self.outcome().name();
        serde_json::to_value(&*self).expect("summary serializes")
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        if self.setup.action == Action::DryRun {
            for c in &self.commands {
                let _ = writeln!(out, "{}", exec::command::display(&c.argv));
            }
            let _ = writeln!(
                out,
                "{}dry run: {} command(s), nothing was run{}",
                match self.outcome() {
                    RunResult::Ok => String::new(),
                    other => format!("{}: ", other.name()),
                },
                self.commands.len(),
                self.left_text()
            );
            return out;
        }
        for job in &self.ran {
            let retries = if job.attempts > 1 {
                format!(" after {} attempts", job.attempts)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "ran     {} in {}{retries}",
                job.target,
                seconds(job.duration)
            );
        }
        for f in &self.failed {
            let _ = writeln!(
                out,
                "FAILED  {} ({}, {} attempt(s))\n        log: {}",
                f.target,
                f.how,
                f.attempts,
                f.log.display()
            );
            for line in &f.tail {
                let _ = writeln!(out, "        | {line}");
            }
        }
        for problem in &self.hook_failures {
            let _ = writeln!(out, "warning: {problem}");
        }
        for left in &self.left {
            let range = crate::partition::at_range(left.from, left.to);
            let _ = writeln!(
                out,
                "{:<7} {}{range} ({} partition(s)): {}",
                left.outcome.name(),
                left.target,
                left.count,
                left.note
            );
        }
        let count = |o: Outcome| self.count(o);
        let built = if self.setup.action == Action::Adopt {
            format!("{} adopted", self.built)
        } else {
            format!("{} built in {} job(s)", self.built, self.ran.len())
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

    /// Fills in what is left from where every target ended up: fresh
    /// targets are counted, the others grouped into contiguous days per
    /// outcome. `skipped` marks nodes the executor cannot run at all.
    pub(super) fn add_left(&mut self, live: &LivePlan, labels: &[String], skipped: &[bool]) {
        let plan = live.plan();
        for (id, node_plan) in plan.nodes.iter().enumerate() {
            if !plan.planned[id] {
                continue;
            }
            let mut groups: Vec<(Outcome, Arc<str>, Vec<Option<Day>>)> = Vec::new();
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
                match groups.last_mut() {
                    Some((o, n, days))
                        if *o == outcome
                            && (*n == note || outcome != Outcome::Blocked)
                            && contiguous(days.last().copied().flatten(), target.day) =>
                    {
                        days.push(target.day);
                    }
                    _ => groups.push((outcome, note, vec![target.day])),
                }
            }
            for (outcome, note, days) in groups {
                self.left.push(LeftReport {
                    outcome,
                    target: labels[id].clone(),
                    from: days.first().copied().flatten(),
                    to: days.last().copied().flatten(),
                    count: days.len(),
                    note: note.to_string(),
                });
            }
        }
    }
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
