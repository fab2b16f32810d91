//! `chronon-build status`, `history`, `logs` and `report`: what the state
//! says about health, runs and failures.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::explain::parse_target;
use super::{Format, Global, Targets, Workspace, parse_day, print_json};
use crate::error::{Error, Exit};
use crate::monitor::{self, NodeStatus, day_start, timestamp};
use crate::partition::{Day, at_range};
use crate::store::{Attempt, RunRow, StateStore};

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub targets: Targets,
    /// Output format: JSON serves dashboards.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Exit with 4 when a partition is not fresh.
    #[arg(long)]
    pub exit_code: bool,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Only attempts of configs whose name matches this glob.
    #[arg(long, value_name = "GLOB")]
    pub select: Option<String>,
    /// Only runs started on or after this day (UTC).
    #[arg(long = "from", alias = "since", value_parser = parse_day, value_name = "YYYY-MM-DD")]
    pub since: Option<Day>,
    /// Only failed attempts (and the runs that had one).
    #[arg(long)]
    pub failed: bool,
    /// At most this many runs, newest first.
    #[arg(long, value_name = "N", default_value = "20")]
    pub limit: usize,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// STEP:CONFIG[#PART][@YYYY-MM-DD]: the latest attempt of that target (of
    /// a job covering that day, when one is given).
    pub target: String,
    /// Print the log's path, not its contents.
    #[arg(long)]
    pub path: bool,
}

/// `status --format json`.
#[derive(Serialize)]
struct StatusJson<'a> {
    until: Day,
    nodes: &'a [NodeStatus],
    /// Per config, days behind `until` (null: nothing fresh yet).
    lag_days: serde_json::Map<String, serde_json::Value>,
    /// Nodes no config makes any more whose tables, KV entries or state
    /// rows are still there (`gc -n` lists them).
    orphans: usize,
}

pub fn status(global: &Global, args: &StatusArgs) -> Result<Exit, Error> {
    let ws = Workspace::load(global)?;
    let selection = args.targets.resolve(&ws)?;
    let until = selection.until;
    let (plan, store) = ws.plan_read(selection)?;
    let latest = match &store {
        Some(store) => store.latest_attempts()?,
        None => HashMap::new(),
    };
    let statuses = monitor::statuses(&plan, &ws.graph, &latest);
    let orphans = orphan_count(&ws, store.as_ref())?;
    match args.format {
        Format::Text => {
            print!("{}", status_text(until, &statuses));
            if orphans > 0 {
                println!(
                    "{orphans} orphan(s) of removed or renamed configs (their tables, KV \
                     datasets and state rows are kept): `gc -n` lists them, `gc --orphans` \
                     removes them"
                );
            }
        }
        Format::Json => {
            let lag_days = monitor::config_lags(&statuses)
                .into_iter()
                .map(|(config, lag)| (config, lag.into()))
                .collect();
            print_json(&StatusJson {
                until,
                nodes: &statuses,
                lag_days,
                orphans,
            });
        }
    }
    let all_fresh = statuses.iter().all(|s| s.counts.all_fresh());
    Ok(if args.exit_code && !all_fresh {
        Exit::Attention
    } else {
        Exit::Ok
    })
}

/// How many nodes no config makes any more left something behind; none
/// counted while configs are set apart (their nodes would look removed).
fn orphan_count(ws: &Workspace, store: Option<&StateStore>) -> Result<usize, Error> {
    match store {
        Some(store) if ws.repo.invalid.is_empty() => {
            Ok(crate::run::gc::leftovers(&ws.graph, store.recorded_nodes()?).len())
        }
        _ => Ok(0),
    }
}

/// One screen: configs with their steps below, one line each.
fn status_text(until: Day, statuses: &[NodeStatus]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<44} {:<11} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6}  LAST ATTEMPT",
        format!("status at {until}"),
        "LAST BUILT",
        "BEHIND",
        "FRESH",
        "STALE",
        "WAIT",
        "BLOCK",
        "FAILED"
    );
    let mut config = "";
    for s in statuses {
        if s.config != config {
            config = &s.config;
            let _ = writeln!(out, "{config}  [{}]", s.team);
        }
        let name = match &s.part {
            Some(part) => format!("  {}#{part}", s.step),
            None => format!("  {}", s.step),
        };
        let last_built = match (s.last_built, s.built) {
            (Some(day), _) => day.to_string(),
            (None, true) => "built".into(),
            (None, false) => "never".into(),
        };
        let behind = s
            .behind_days
            .map_or_else(|| "-".to_string(), |d| format!("{d}d"));
        let attempt = match &s.last_attempt {
            Some(a) => format!(
                "{} in run {}{} ({}s{})",
                a.result,
                a.run,
                Some(at_range(a.start_ds, a.end_ds))
                    .filter(|r| !r.is_empty())
                    .map(|r| format!(" {r}"))
                    .unwrap_or_default(),
                a.duration_seconds,
                a.exit_code
                    .filter(|c| *c != 0)
                    .map(|c| format!(", exit {c}"))
                    .unwrap_or_default()
            ),
            None => "-".into(),
        };
        let c = &s.counts;
        let _ = writeln!(
            out,
            "{name:<44} {last_built:<11} {behind:>6} {:>6} {:>6} {:>6} {:>6} {:>6}  {attempt}",
            c.fresh, c.stale, c.waiting, c.blocked, c.failed
        );
    }
    let _ = writeln!(out, "{}", config_totals(until, statuses));
    out
}

/// The closing line: configs fresh out of those with something to build.
/// A config none of whose steps wants a partition up to `until` (nothing
/// built, nothing wanted) is not fresh: it has nothing to build, and is
/// counted apart.
fn config_totals(until: Day, statuses: &[NodeStatus]) -> String {
    let configs = statuses.chunk_by(|a, b| a.config == b.config);
    let (idle, wanting): (Vec<_>, Vec<_>) =
        configs.partition(|nodes| nodes.iter().all(|s| s.counts.wanted() == 0));
    let current = wanting
        .iter()
        .filter(|nodes| nodes.iter().all(|s| s.counts.all_fresh()))
        .count();
    let failed: usize = statuses.iter().map(|s| s.counts.failed).sum();
    let idle = match idle.len() {
        0 => String::new(),
        n => format!(", {n} with nothing to build"),
    };
    format!(
        "{current} of {} config(s) fresh up to {until}{idle}; {failed} failed partition(s)",
        wanting.len()
    )
}

/// The state file from the settings alone: `history` and `logs` read the
/// history of configs that may no longer exist.
fn history_store(global: &Global) -> Result<Option<StateStore>, Error> {
    Ok(StateStore::open_read_at(&super::own_state(global)?)?)
}

#[derive(Serialize)]
struct RunJson<'a> {
    #[serde(flatten)]
    run: &'a RunRow,
    started: String,
    attempts: Vec<AttemptJson<'a>>,
}

#[derive(Serialize)]
struct AttemptJson<'a> {
    target: String,
    step: crate::graph::Step,
    config: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    part: &'a str,
    start_ds: Option<Day>,
    end_ds: Option<Day>,
    attempt: u32,
    argv: &'a [String],
    exit_code: Option<i32>,
    duration_seconds: f64,
    log: Option<&'a str>,
    started: String,
}

impl<'a> AttemptJson<'a> {
    fn of(a: &'a Attempt) -> AttemptJson<'a> {
        AttemptJson {
            target: a.label(),
            step: a.node.step,
            config: &a.node.config,
            part: &a.node.part,
            start_ds: a.from,
            end_ds: a.to,
            attempt: a.attempt,
            argv: &a.argv,
            exit_code: a.exit_code,
            duration_seconds: a.duration.as_secs_f64(),
            log: Some(a.log_path.as_str()).filter(|l| !l.is_empty()),
            started: timestamp(a.started_at),
        }
    }
}

pub fn history(global: &Global, args: &HistoryArgs) -> Result<Exit, Error> {
    let matcher = args
        .select
        .as_deref()
        .map(|pattern| {
            globset::Glob::new(pattern)
                .map(|g| g.compile_matcher())
                .map_err(|e| Error::Usage(format!("--select {pattern:?}: {e}")))
        })
        .transpose()?;
    let Some(store) = history_store(global)? else {
        errln!("no state yet: nothing has run");
        return Ok(Exit::Ok);
    };
    let since = args.since.map_or(i64::MIN, day_start);
    let runs = store.runs(since, args.limit)?;
    let (Some(first), Some(last)) = (runs.last(), runs.first()) else {
        if args.format == Format::Json {
            print_json(&Vec::<RunJson>::new());
        } else {
            println!("no runs in the history");
        }
        return Ok(Exit::Ok);
    };
    let mut by_run: HashMap<i64, Vec<Attempt>> = HashMap::new();
    for attempt in store.attempts(first.id, last.id)? {
        let wanted = matcher
            .as_ref()
            .is_none_or(|m| m.is_match(&attempt.node.config))
            && (!args.failed || !attempt.succeeded());
        if wanted {
            by_run.entry(attempt.run).or_default().push(attempt);
        }
    }
    let filtered = matcher.is_some() || args.failed;
    let empty = Vec::new();
    let shown: Vec<(&RunRow, &Vec<Attempt>)> = runs
        .iter()
        .map(|run| (run, by_run.get(&run.id).unwrap_or(&empty)))
        .filter(|(_, attempts)| !filtered || !attempts.is_empty())
        .collect();
    match args.format {
        Format::Json => {
            let runs: Vec<RunJson> = shown
                .iter()
                .map(|(run, attempts)| RunJson {
                    run,
                    started: timestamp(run.started_at),
                    attempts: attempts.iter().map(AttemptJson::of).collect(),
                })
                .collect();
            print_json(&runs);
        }
        Format::Text => print!("{}", history_text(&shown, global.verbose)),
    }
    Ok(Exit::Ok)
}

fn history_text(runs: &[(&RunRow, &Vec<Attempt>)], verbose: bool) -> String {
    let mut out = String::new();
    if runs.is_empty() {
        out.push_str("no runs match\n");
    }
    for (run, attempts) in runs {
        let took = run
            .ended_at
            .map_or_else(String::new, |end| format!(" in {}s", end - run.started_at));
        let failed = attempts.iter().filter(|a| !a.succeeded()).count();
        let _ = writeln!(
            out,
            "run {}  {}  {}{took}  {} attempt(s), {failed} failed  {}",
            run.id,
            timestamp(run.started_at),
            run.result
                .as_deref()
                .unwrap_or("unfinished (running, or it crashed)"),
            attempts.len(),
            crate::exec::command::display(&run.args),
        );
        for a in attempts.iter().filter(|a| verbose || !a.succeeded()) {
            let result = if a.succeeded() { "ok" } else { "FAILED" };
            let code = a
                .exit_code
                .map_or_else(|| "no exit code".to_string(), |c| format!("exit {c}"));
            let _ = writeln!(
                out,
                "  {result:<6} {}  attempt {}  {code}  {:.1}s",
                a.label(),
                a.attempt,
                a.duration.as_secs_f64()
            );
            if verbose {
                let _ = writeln!(out, "         $ {}", crate::exec::command::display(&a.argv));
            }
            if !a.log_path.is_empty() {
                let _ = writeln!(out, "         log: {}", a.log_path);
            }
        }
    }
    out
}

pub fn logs(global: &Global, args: &LogsArgs) -> Result<Exit, Error> {
    let target = parse_target(&args.target)?;
    let Some(store) = history_store(global)? else {
        return Err(Error::Usage(format!(
            "{}: no state yet: nothing has run",
            args.target
        )));
    };
    let node = crate::store::NodeKey::new(target.step, &target.config, target.part.as_deref());
    let latest = store
        .attempts_of(&node)?
        .into_iter()
        .rfind(|a| match (target.day, a.from, a.to) {
            (Some(day), Some(from), Some(to)) => from <= day && day <= to,
            (Some(_), _, _) => false,
            (None, _, _) => true,
        })
        .ok_or_else(|| Error::Usage(format!("{}: no attempt in the history", args.target)))?;
    let exit = match latest.exit_code {
        Some(c) => format!("exit {c}"),
        None => "no exit code".into(),
    };
    if latest.log_path.is_empty() {
        // A job that succeeded without printing anything leaves no log.
        errln!(
            "{} run {} attempt {} ({exit}): printed nothing, so it has no log; its command: $ {}",
            latest.label(),
            latest.run,
            latest.attempt,
            crate::exec::command::display(&latest.argv)
        );
        return Ok(Exit::Ok);
    }
    let path = PathBuf::from(&latest.log_path);
    if args.path {
        println!("{}", path.display());
        return Ok(Exit::Ok);
    }
    let text = std::fs::read(&path).map_err(|e| {
        Error::Io(format!(
            "{}: the log of run {} attempt {} ({}): {e}",
            args.target,
            latest.run,
            latest.attempt,
            path.display()
        ))
    })?;
    errln!(
        "{} run {} attempt {} ({exit}): {}",
        latest.label(),
        latest.run,
        latest.attempt,
        path.display()
    );
    use std::io::Write as _;
    let _ = std::io::stdout().write_all(&text);
    Ok(Exit::Ok)
}

/// The first day any shown node wants up to `until`: the grid covers the
/// range the data does, so a month of data fills the page rather than a
/// stripe of a fixed year. With no daily target, the last 30 days.
fn covered_from(plan: &crate::plan::Plan, until: Day) -> Day {
    plan.nodes
        .iter()
        .enumerate()
        .filter(|(id, _)| plan.shown[*id])
        .filter_map(|(_, node)| node.targets.iter().filter_map(|t| t.day).min())
        .min()
        .filter(|first| *first <= until)
        .unwrap_or_else(|| until.minus(29))
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The last day shown [default: yesterday, UTC].
    #[arg(long, value_parser = parse_day, value_name = "YYYY-MM-DD")]
    pub until: Option<Day>,
    /// The first day shown [default: --days before --until, else the first day any shown config wants].
    #[arg(long, value_parser = parse_day, value_name = "YYYY-MM-DD")]
    pub from: Option<Day>,
    /// How many days the grid shows when --from is not given [default: the range the data covers].
    #[arg(long, value_name = "N")]
    pub days: Option<u32>,
    /// Only configs whose name matches this glob.
    #[arg(long, value_name = "GLOB")]
    pub select: Option<String>,
    /// Durations and failures come from this many latest runs.
    #[arg(long, value_name = "N", default_value = "200")]
    pub runs: usize,
    /// How many of the latest failed attempts to list.
    #[arg(long, value_name = "N", default_value = "50")]
    pub failures: usize,
    /// Where to write the page; - for standard output.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

pub fn report(global: &Global, args: &ReportArgs) -> Result<Exit, Error> {
    if args.days == Some(0) {
        return Err(Error::Usage("--days: expected at least 1".into()));
    }
    let until = super::until_after_from(args.until, args.from)?;
    let ws = Workspace::load(global)?;
    let selected = ws.select(args.select.as_deref())?;
    // Planned as `plan` would (the shown days only clip the grid), so steps
    // that start at a table's first partition keep that start.
    let (plan, store) = ws.plan_read(crate::plan::PlanOptions::new(until, args.from, selected))?;
    let (latest, attempts) = match &store {
        Some(store) => {
            let runs = store.runs(i64::MIN, args.runs)?;
            let attempts = match (runs.last(), runs.first()) {
                (Some(first), Some(last)) => store.attempts(first.id, last.id)?,
                _ => Vec::new(),
            };
            (store.latest_attempts()?, attempts)
        }
        None => (HashMap::new(), Vec::new()),
    };
    let statuses = monitor::statuses(&plan, &ws.graph, &latest);
    let from = match (args.from, args.days) {
        (Some(from), _) => from,
        (None, Some(days)) => until.minus(days.min(100_000) as i32 - 1),
        (None, None) => covered_from(&plan, until),
    };
    let to_stdout = args.out.as_os_str() == "-";
    let out_path = std::path::absolute(&args.out).unwrap_or_else(|_| args.out.clone());
    // Log links are relative to the page's folder (the working folder when
    // the page goes to standard output).
    let out_dir = if to_stdout {
        std::env::current_dir().unwrap_or_default()
    } else {
        out_path
            .parent()
            .unwrap_or(std::path::Path::new("/"))
            .to_path_buf()
    };
    let state = ws.state_location().name();
    let html = monitor::report::render(&monitor::report::ReportInput {
        plan: &plan,
        graph: &ws.graph,
        statuses: &statuses,
        days: crate::partition::DayRange::new(from, until),
        attempts: &attempts,
        failures: args.failures,
        out_dir: &out_dir,
        generated_at: crate::clock::unix_now(),
        state: &state,
    });
    super::write_output(if to_stdout { &args.out } else { &out_path }, &html)
        .map_err(|e| Error::Io(format!("--out {}: {e}", args.out.display())))?;
    errln!(
        "wrote {} ({} row(s) x {} day(s), {} KB)",
        if to_stdout {
            "the page to standard output".to_string()
        } else {
            args.out.display().to_string()
        },
        statuses.len(),
        until.0 - from.0 + 1,
        html.len() / 1024
    );
    Ok(Exit::Ok)
}
