//! `run --metrics-file`: Prometheus text-format metrics of the run that just
//! ended, for node-exporter's textfile collector. Every metric is a gauge
//! (or a histogram of this run's jobs): the file describes the latest run
//! and is replaced whole, atomically, at the end of each run.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{Health, NodeStatus, config_lags};
use crate::graph::Step;
use crate::run::{Outcome, Summary};

/// Upper bounds of the job duration histogram, in seconds.
const BUCKETS: [f64; 10] = [
    1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0,
];

type Labels = Vec<(&'static str, String)>;

/// One metric family: its help, type and samples (name, labels, value).
struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: Vec<(String, Labels, f64)>,
}

impl Family {
    fn new(name: &'static str, kind: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    fn add(&mut self, labels: Labels, value: f64) {
        self.samples.push((self.name.to_string(), labels, value));
    }

    fn add_suffixed(&mut self, suffix: &str, labels: Labels, value: f64) {
        self.samples
            .push((format!("{}{suffix}", self.name), labels, value));
    }

    fn write(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        for (name, labels, value) in &self.samples {
            out.push_str(name);
            if !labels.is_empty() {
                out.push('{');
                for (i, (key, value)) in labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{key}=\"{}\"", escape(value));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", number(*value));
        }
    }
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(value: f64) -> String {
    if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

fn le(bound: f64) -> String {
    if bound.is_infinite() {
        "+Inf".into()
    } else {
        number(bound)
    }
}

/// The metrics of a run, from its summary and every node's status after it.
pub fn render(summary: &Summary, statuses: &[NodeStatus]) -> String {
    let attempts = StepAttempts::of(summary);
    let mut families = vec![
        run_info(summary),
        run_end(),
        run_duration(summary),
        run_targets(summary),
        targets(statuses),
        job_durations(&attempts),
    ];
    families.extend(retries_and_failures(summary, &attempts));
    families.extend(freshness(statuses));

    let mut out = String::new();
    for family in &families {
        family.write(&mut out);
    }
    out
}

/// The run's job attempts by step name: their durations, and how many
/// were retries.
struct StepAttempts<'s> {
    seconds: BTreeMap<&'s str, Vec<f64>>,
    retries: BTreeMap<&'s str, usize>,
}

impl StepAttempts<'_> {
    fn of(summary: &Summary) -> StepAttempts<'_> {
        let mut seconds: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        let mut retries: BTreeMap<&str, usize> = BTreeMap::new();
        for attempt in &summary.attempts {
            seconds
                .entry(attempt.step.name())
                .or_default()
                .push(attempt.duration.as_secs_f64());
            if attempt.retry {
                *retries.entry(attempt.step.name()).or_default() += 1;
            }
        }
        StepAttempts { seconds, retries }
    }
}

fn run_info(summary: &Summary) -> Family {
    let mut info = Family::new(
        "chronon_build_run_info",
        "gauge",
        "The latest run: its id and result (ok, failed, blocked, interrupted).",
    );
    info.add(
        vec![
            ("run_id", summary.run_id.to_string()),
            ("result", summary.outcome().name().to_string()),
        ],
        1.0,
    );
    info
}

fn run_end() -> Family {
    let mut ended = Family::new(
        "chronon_build_run_end_timestamp_seconds",
        "gauge",
        "When the latest run ended, in unix seconds.",
    );
    ended.add(Vec::new(), crate::clock::unix_now() as f64);
    ended
}

fn run_duration(summary: &Summary) -> Family {
    let mut wall = Family::new(
        "chronon_build_run_duration_seconds",
        "gauge",
        "Wall time of the latest run, planning included.",
    );
    wall.add(Vec::new(), summary.wall.as_secs_f64());
    wall
}

fn run_targets(summary: &Summary) -> Family {
    let mut run_targets = Family::new(
        "chronon_build_run_targets",
        "gauge",
        "Targets of the latest run by what happened to them.",
    );
    let left = |o: Outcome| {
        summary
            .left
            .iter()
            .filter(|l| l.outcome == o)
            .map(|l| l.count)
            .sum::<usize>()
    };
    for (status, count) in [
        ("built", summary.built),
        ("fresh", summary.fresh),
        ("cutoff", summary.cutoff),
        ("upstream_failed", left(Outcome::UpstreamFailed)),
        ("blocked", left(Outcome::Blocked)),
        ("not_run", left(Outcome::NotRun)),
    ] {
        run_targets.add(vec![("status", status.to_string())], count as f64);
    }
    run_targets
}

fn targets(statuses: &[NodeStatus]) -> Family {
    let mut targets = Family::new(
        "chronon_build_targets",
        "gauge",
        "Wanted partitions after the latest run, by step and health.",
    );
    let mut by_step: BTreeMap<(&str, Health), usize> = BTreeMap::new();
    for s in statuses {
        let c = &s.counts;
        for (health, n) in [
            (Health::Fresh, c.fresh),
            (Health::Stale, c.stale),
            (Health::Waiting, c.waiting),
            (Health::Blocked, c.blocked),
            (Health::Failed, c.failed),
        ] {
            *by_step.entry((s.step.name(), health)).or_default() += n;
        }
    }
    for ((step, health), n) in &by_step {
        targets.add(
            vec![
                ("step", step.to_string()),
                ("status", health.name().to_string()),
            ],
            *n as f64,
        );
    }
    targets
}

fn job_durations(attempts: &StepAttempts) -> Family {
    let mut durations = Family::new(
        "chronon_build_job_duration_seconds",
        "histogram",
        "Durations of the latest run's job attempts, by step.",
    );
    for (step, seconds) in &attempts.seconds {
        for bound in BUCKETS.iter().copied().chain([f64::INFINITY]) {
            let n = seconds.iter().filter(|s| **s <= bound).count();
            durations.add_suffixed(
                "_bucket",
                vec![("step", step.to_string()), ("le", le(bound))],
                n as f64,
            );
        }
        durations.add_suffixed(
            "_sum",
            vec![("step", step.to_string())],
            seconds.iter().sum(),
        );
        durations.add_suffixed(
            "_count",
            vec![("step", step.to_string())],
            seconds.len() as f64,
        );
    }
    durations
}

/// Retries and failures per step, zeros included, for every step that ran
/// or failed a job.
fn retries_and_failures(summary: &Summary, attempts: &StepAttempts) -> [Family; 2] {
    let mut retry = Family::new(
        "chronon_build_job_retries",
        "gauge",
        "Retry attempts in the latest run, by step.",
    );
    let mut failures = Family::new(
        "chronon_build_job_failures",
        "gauge",
        "Jobs of the latest run that failed after their retries, by step.",
    );
    let mut failed: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &summary.failed {
        *failed.entry(f.step.name()).or_default() += 1;
    }
    for step in Step::ALL {
        let name = step.name();
        if attempts.seconds.contains_key(name) || failed.contains_key(name) {
            retry.add(
                vec![("step", name.to_string())],
                attempts.retries.get(name).copied().unwrap_or(0) as f64,
            );
            failures.add(
                vec![("step", name.to_string())],
                failed.get(name).copied().unwrap_or(0) as f64,
            );
        }
    }
    [retry, failures]
}

/// Per config, the freshness lag; or, while nothing of it is fresh, the
/// never-fresh flag instead.
fn freshness(statuses: &[NodeStatus]) -> [Family; 2] {
    let mut lag = Family::new(
        "chronon_build_freshness_lag_days",
        "gauge",
        "Per config, days its freshest partitions are behind --until (the worst of its steps); absent while nothing is fresh.",
    );
    let mut unknown = Family::new(
        "chronon_build_config_never_fresh",
        "gauge",
        "1 for a config with a step that has no fresh partition at all.",
    );
    let teams: BTreeMap<&str, &str> = statuses
        .iter()
        .map(|s| (s.config.as_str(), s.team.as_str()))
        .collect();
    for (config, days) in config_lags(statuses) {
        let team = teams.get(config.as_str()).copied().unwrap_or_default();
        let labels = vec![("config", config.clone()), ("team", team.to_string())];
        match days {
            Some(days) => lag.add(labels, days as f64),
            None => unknown.add(labels, 1.0),
        }
    }
    [lag, unknown]
}
