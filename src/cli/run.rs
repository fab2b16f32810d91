//! `chronon-build run`, `adopt` and `invalidate`: the commands that write
//! the state. Each holds the state's lock while it works.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{Format, Global, Targets, Workspace, default_until, parse_day, print_json};
use crate::error::{Error, Exit};
use crate::exec::{self, Executor};
use crate::graph::Step;
use crate::monitor;
use crate::partition::Day;
use crate::plan::{self, PlanOptions};
use crate::run::{self, Action, Finished, HookCommands, ProgressMode, RunOptions, Runner, lock};
use crate::settings::duration;
use crate::store::StateStore;

/// What to build, and how to report: shared by `run` and `adopt`. Targets
/// the selection needs upstream are built too.
#[derive(Args, Debug)]
pub struct Scope {
    #[command(flatten)]
    pub targets: Targets,
    /// Wait for the state's lock instead of failing when another run holds it.
    #[arg(long)]
    pub wait_lock: bool,
    /// Output format of the summary.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub scope: Scope,
    /// Jobs at once, 1 to 1024 [default: limits.jobs in chronon-build.toml, else the number of CPUs].
    #[arg(short = 'j', long, value_name = "N", value_parser = crate::settings::parse_jobs)]
    pub jobs: Option<usize>,
    /// Print the commands in order; run and record nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Retries of a failed job, at most 100 [default: retry.retries, else 0].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=100))]
    pub retries: Option<u32>,
    /// Delay before the first retry, doubling after each, at most 366d [default: retry.backoff, else 30s].
    #[arg(long, value_parser = duration::parse, value_name = "DURATION")]
    pub backoff: Option<Duration>,
    /// Kill a job running longer than this, e.g. 6h, at most 366d [default: executor.timeout, else none].
    #[arg(long, value_parser = duration::parse, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// Keep probing missing inputs this long and run what they unblock, e.g. 2h, at most 366d.
    #[arg(long, value_parser = duration::parse, value_name = "DURATION")]
    pub wait: Option<Duration>,
    /// How often to probe missing inputs with --wait.
    #[arg(long, value_parser = duration::parse, value_name = "DURATION", default_value = "5m")]
    pub poll: Duration,
    /// Progress display on stderr.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
    /// Run this program once per failed job, after its retries, with CHRONON_BUILD_* variables [default: hooks.on_failure].
    #[arg(long, value_name = "PROGRAM")]
    pub on_failure: Option<String>,
    /// Run this program once when the run ends with result ok [default: hooks.on_success_run].
    #[arg(long, value_name = "PROGRAM")]
    pub on_success_run: Option<String>,
    /// When the run ends, write Prometheus text-format metrics here (for node-exporter's textfile collector); - for standard output.
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct AdoptArgs {
    #[command(flatten)]
    pub scope: Scope,
}

#[derive(Args, Debug)]
pub struct InvalidateArgs {
    /// Which targets: a config glob, optionally with its step and join part:
    /// `[STEP:]GLOB[#PART]`, e.g. 'risk.*' or 'join-part:risk.checkout.v1#m_*'.
    #[arg(value_name = "SELECTOR", value_parser = Selector::parse)]
    pub selector: Selector,
    /// First partition to force [default: the first wanted].
    #[arg(long, value_parser = parse_day, value_name = "YYYY-MM-DD")]
    pub from: Option<Day>,
    /// Last partition to force [default: yesterday, UTC].
    #[arg(long = "until", alias = "to", value_parser = parse_day, value_name = "YYYY-MM-DD")]
    pub to: Option<Day>,
    /// Wait for the state's lock instead of failing when another run holds it.
    #[arg(long)]
    pub wait_lock: bool,
}

/// `[STEP:]GLOB[#PART]`, checked when the command line is parsed.
#[derive(Clone, Debug)]
pub struct Selector {
    text: String,
    step: Option<Step>,
    name: globset::GlobMatcher,
    part: Option<globset::GlobMatcher>,
}

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, String> {
        let (step, rest) = match text.split_once(':') {
            Some((step, rest)) => {
                let step = Step::parse(step).ok_or_else(|| {
                    format!("{text:?}: {step:?} is not a step; expected [STEP:]GLOB[#PART]")
                })?;
                (Some(step), rest)
            }
            None => (None, text),
        };
        let (glob, part) = match rest.split_once('#') {
            Some((glob, part)) => (glob, Some(part)),
            None => (rest, None),
        };
        let matcher = |pattern: &str| {
            globset::Glob::new(pattern)
                .map(|g| g.compile_matcher())
                .map_err(|e| format!("{text:?}: {e}"))
        };
        Ok(Selector {
            text: text.to_string(),
            step,
            name: matcher(glob)?,
            part: part.map(matcher).transpose()?,
        })
    }

    pub fn matches(&self, node: &crate::graph::Node) -> bool {
        self.name.is_match(&node.name)
            && self.step.is_none_or(|s| s == node.step)
            && match (&self.part, &node.part) {
                (Some(m), Some(p)) => m.is_match(p),
                (Some(_), None) => false,
                (None, _) => true,
            }
    }
}

pub fn run(global: &Global, args: &RunArgs) -> Result<Exit, Error> {
    let started = std::time::Instant::now();
    let action = if args.dry_run {
        Action::DryRun
    } else {
        Action::Run
    };
    execute(
        global,
        &args.scope,
        action,
        |ws| {
            let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
            // Both bounded where they are read (`settings::check_jobs`).
            let jobs = args
                .jobs
                .or(ws.settings.limits.jobs)
                .unwrap_or(cpus.min(crate::settings::MAX_JOBS));
            Ok(RunOptions {
                action,
                jobs,
                retries: args.retries.unwrap_or(ws.settings.retry.retries),
                backoff: args.backoff.unwrap_or(ws.settings.retry.backoff),
                timeout: args.timeout.or(ws.settings.executor.timeout),
                stop_grace: ws.settings.bounds.stop_grace,
                log_limit: ws.settings.bounds.log_limit,
                lease: ws.settings.state.lease,
                invalid_configs: ws.repo.invalid.len(),
                wait: args.wait,
                poll: args.poll.max(Duration::from_millis(100)),
                progress: args.progress,
                args: crate::store::redacted_args(),
                started,
                hooks: HookCommands {
                    on_failure: args
                        .on_failure
                        .clone()
                        .map_or_else(|| ws.settings.hooks.on_failure.clone(), |p| vec![p]),
                    on_success_run: args
                        .on_success_run
                        .clone()
                        .map_or_else(|| ws.settings.hooks.on_success_run.clone(), |p| vec![p]),
                    timeout: ws.settings.hooks.timeout,
                },
            })
        },
        args.metrics_file.as_deref().filter(|_| !args.dry_run),
    )
}

pub fn adopt(global: &Global, args: &AdoptArgs) -> Result<Exit, Error> {
    let started = std::time::Instant::now();
    execute(
        global,
        &args.scope,
        Action::Adopt,
        |ws| {
            Ok(RunOptions {
                action: Action::Adopt,
                jobs: 1,
                retries: 0,
                backoff: Duration::ZERO,
                timeout: None,
                wait: None,
                poll: Duration::from_secs(1),
                progress: ProgressMode::Quiet,
                args: crate::store::redacted_args(),
                started,
                hooks: HookCommands::default(),
                stop_grace: Duration::ZERO,
                log_limit: ws.settings.bounds.log_limit,
                lease: ws.settings.state.lease,
                invalid_configs: ws.repo.invalid.len(),
            })
        },
        None,
    )
}

fn execute(
    global: &Global,
    scope: &Scope,
    action: Action,
    options: impl FnOnce(&Workspace) -> Result<RunOptions, Error>,
    metrics_file: Option<&std::path::Path>,
) -> Result<Exit, Error> {
    let ws = Workspace::load(global)?;
    ws.repo.require_configs().map_err(Error::Config)?;
    let selection = scope.targets.resolve(&ws)?;
    let opts = options(&ws)?;
    let location = ws.state_location();
    let (_lock, mut store) = if action == Action::DryRun {
        (None, ws.open_state_read()?)
    } else {
        let mode = match action {
            Action::Adopt => lock::Mode::Exclusive,
            _ => lock::Mode::Shared,
        };
        let lock = lock::acquire_at(&location, mode, scope.wait_lock)?;
        let store = StateStore::open_at(&location)?;
        lock.guard(&store);
        (Some(lock), Some(store))
    };
    let probe = if action == Action::DryRun {
        ws.probe_read_only()?
    } else {
        ws.probe()?
    };
    let mut plan = ws.plan_with(
        store.as_ref(),
        probe.as_ref(),
        match metrics_file {
            // The metrics say what each node last built: all of the state.
            Some(_) => PlanOptions::from(selection),
            None => PlanOptions::from(selection).lazily(),
        },
    )?;
    if action != Action::Adopt {
        let hints = super::hints::for_plan(&ws, &plan, probe.as_ref());
        plan.notes.extend(hints);
    }
    crate::say::notes(&plan.notes);
    // Nodes planned all fresh: the next plan skips their targets while
    // nothing that decides them changes (`plan::memo`).
    if action != Action::DryRun
        && let Some(store) = store.as_mut()
    {
        store.record_memos(&plan.memos)?;
    }
    let executor = executor_for(&ws, &plan, action)?;
    remove_orphans(&ws, &plan, action)?;
    let mut session = run::Session {
        repo: &ws.repo,
        settings: &ws.settings,
        graph: &ws.graph,
        probe: probe.as_ref(),
        executor: &executor,
        store: if action == Action::DryRun {
            None
        } else {
            store.as_mut()
        },
        log_dir: ws.settings.state_dir(&ws.repo.root).join("logs"),
        opts,
    };
    let Finished { mut summary, plan } = Runner::new(&mut session, plan).run()?;
    match scope.format {
        Format::Text if crate::say::quiet() && summary.exit() == Exit::Ok => {}
        Format::Text => crate::say::out(&summary.text()),
        Format::Json => print_json(&summary.json()),
    }
    match metrics_file {
        Some(path) => write_metrics(path, &ws, &plan, store.as_ref(), summary),
        None => Ok(summary.exit()),
    }
}

/// The executor of the run. Nothing to run (every target fresh): no
/// program is asked which CLI it is, so a no-op run from cron needs no CLI
/// on the machine.
fn executor_for<'w>(
    ws: &'w Workspace,
    plan: &plan::Plan,
    action: Action,
) -> Result<Executor<'w>, Error> {
    let jobs = jobs_to_run(ws, plan);
    if action == Action::Adopt || jobs.is_empty() {
        return Ok(Executor::idle(&ws.repo, &ws.settings));
    }
    let executor = Executor::new(&ws.repo, &ws.settings)?;
    if executor.interface().is_none() {
        ws.partitioning
            .refuse_for_local(&ws.repo, jobs.iter().map(|(node, _)| *node))?;
    }
    executor.check(jobs.iter().map(|(node, key)| (node.label(), *key)))?;
    crate::say::err(&executor.describe());
    Ok(executor)
}

/// Partitions before a node's start: gone before anything reads them on
/// the embedded warehouse; elsewhere `gc` removes them.
fn remove_orphans(ws: &Workspace, plan: &plan::Plan, action: Action) -> Result<(), Error> {
    if action == Action::Adopt || plan.orphans.is_empty() {
        return Ok(());
    }
    if ws.settings.warehouse.kind == crate::settings::WarehouseKind::Sqlite {
        let said = crate::run::gc::remove(
            &ws.settings,
            &ws.repo.root,
            &ws.partitioning.layouts,
            &plan.orphans,
            action == Action::DryRun,
        )?;
        for line in said {
            crate::say::err(&line);
        }
        return Ok(());
    }
    for orphan in &plan.orphans {
        crate::say::err(&format!(
            "note: {} has {} partition(s) before {}'s start {}; `chronon-build gc` removes them",
            orphan.table,
            orphan.partitions.len(),
            orphan.target,
            orphan.start
        ));
    }
    Ok(())
}

/// `--metrics-file`: the run is recorded whatever happens here; a metrics
/// file that cannot be written is an error of its own.
fn write_metrics(
    path: &std::path::Path,
    ws: &Workspace,
    plan: &plan::Plan,
    store: Option<&StateStore>,
    summary: crate::run::Summary,
) -> Result<Exit, Error> {
    let latest = match store {
        Some(store) => store.latest_attempts()?,
        None => Default::default(),
    };
    let statuses = monitor::statuses(plan, &ws.graph, &latest);
    let text = monitor::metrics::render(&summary, &statuses);
    let outcome = summary.exit();
    if let Err(e) = super::write_output(path, &text) {
        errln!("error: --metrics-file {}: {e}", path.display());
        return Ok(if outcome == Exit::Ok {
            Exit::Invalid
        } else {
            outcome
        });
    }
    Ok(outcome)
}

/// The nodes with work to do, each with its template key.
fn jobs_to_run<'w>(ws: &'w Workspace, plan: &plan::Plan) -> Vec<(&'w crate::graph::Node, &'w str)> {
    ws.graph
        .nodes
        .iter()
        .filter(|n| plan.planned[n.id])
        .filter(|n| {
            plan.nodes[n.id]
                .targets
                .iter()
                .any(|t| !matches!(t.status, plan::Status::Fresh))
        })
        .map(|n| {
            let whole = exec::interface::whole_join(ws.settings.executor.joins, n.step);
            (n, exec::interface::template_key(n.step, whole))
        })
        .collect()
}

pub fn invalidate(global: &Global, args: &InvalidateArgs) -> Result<Exit, Error> {
    let ws = Workspace::load(global)?;
    let selected: Vec<bool> = ws
        .graph
        .nodes
        .iter()
        .map(|n| args.selector.matches(n))
        .collect();
    if !selected.iter().any(|s| *s) {
        return Err(Error::Usage(format!(
            "{:?}: matches no target",
            args.selector.text
        )));
    }
    let to = args.to.unwrap_or_else(default_until);
    if let Some(from) = args.from.filter(|f| *f > to) {
        return Err(Error::Usage(format!("--from {from} is after --until {to}")));
    }
    let location = ws.state_location();
    let lock = lock::acquire_at(&location, lock::Mode::Exclusive, args.wait_lock)?;
    let mut store = StateStore::open_at(&location)?;
    lock.guard(&store);
    let probe = ws.probe()?;
    let mut probed = std::collections::HashMap::new();
    let mut forced = 0;
    for node in ws.graph.nodes.iter().filter(|n| selected[n.id]) {
        if let Some(table) = node.start_table()
            && !probed.contains_key(table)
        {
            probed.insert(table.to_string(), probe.list(table)?);
        }
        let days = plan::wanted_days(node, to, args.from, &ws.settings, &probed)?;
        store.force(&plan::node_key(node), &days)?;
        forced += days.len();
        super::print_out(&format!(
            "forced {} ({} partition(s))\n",
            node.label(),
            days.len()
        ));
    }
    super::print_out(&format!(
        "{forced} target(s) will rebuild on the next run\n"
    ));
    Ok(Exit::Ok)
}
