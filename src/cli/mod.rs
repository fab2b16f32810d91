//! Command-line parsing in two stages: clap structs, then validated options
//! in each subcommand's module. Command functions stay thin.

mod compute;
mod diff;
mod docs;
mod explain;
mod gc;
mod graph;
mod hints;
mod monitor;
mod plan;
mod run;
mod state;
mod validate;
mod warehouse;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::Repo;
use crate::error::{Error, Exit};
use crate::graph::Graph;
use crate::partition::Day;
use crate::settings::Settings;
use crate::store::{StateLocation, StateStore};

#[derive(Parser, Debug)]
#[command(
    name = "chronon-build",
    version,
    about = "make for Chronon feature data: plan and run only the stale partitions",
    long_about = "make for Chronon feature data.\n\nEvery (step, config, partition) is a build target whose key hashes the \
                  config's semantic content and the fingerprints of its inputs. A SQLite state remembers what was built; \
                  `plan` shows what is stale and why.",
    after_help = "Exit codes: 0 success, 1 a target failed, 2 usage/config/state error, 3 blocked on missing inputs \
                  (run left them; plan and run -n list them), 4 stale, invalidated or not fresh (plan, diff and \
                  status with --exit-code).",
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// The config repository: a folder with production/ (Chronon) or compiled/ (Zipline).
    #[arg(long, global = true, default_value = ".", value_name = "DIR")]
    pub repo: PathBuf,
    /// The state file [default: from chronon-build.toml, else <repo>/.chronon-build/state.db].
    #[arg(long, global = true, value_name = "FILE", conflicts_with = "state_url")]
    pub state: Option<PathBuf>,
    /// The state elsewhere: postgresql://user@host:5432/db (shared between
    /// hosts; password from the URL, PGPASSWORD or ~/.pgpass) or
    /// sqlite:///path/state.db [default: CHRONON_BUILD_STATE_URL, else
    /// state.url or state.path from chronon-build.toml].
    #[arg(long, global = true, value_name = "URL")]
    pub state_url: Option<String>,
    /// The warehouse folder [default: from chronon-build.toml, else <repo>/.chronon-build/warehouse (sqlite) or <repo>/warehouse (hive-dir)].
    #[arg(long, global = true, value_name = "DIR")]
    pub warehouse: Option<PathBuf>,
    /// Refuse the whole repository when one config is invalid [default: set
    /// invalid configs apart, block what reads their tables, do the rest and
    /// exit 1; validate and diff are always strict].
    #[arg(long, global = true)]
    pub strict: bool,
    /// Say everything: every blocked and waiting range per node, every
    /// note, each job's start and end [default: grouped per cause].
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Errors only: no notes, progress or listing (JSON output is still printed).
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Load every config and report every problem with file, JSON path and what was expected.
    Validate(validate::ValidateArgs),
    /// Print the target graph: one node per (step, config[, join part]) with its inputs.
    Graph(graph::GraphArgs),
    /// Show which partitions are stale and why, without running anything.
    Plan(plan::PlanArgs),
    /// Print one target's key document and every difference from the recorded build.
    Explain(explain::ExplainArgs),
    /// Run the stale targets in dependency order, in parallel, and record them.
    Run(run::RunArgs),
    /// Record as built the targets whose outputs already exist in the warehouse.
    Adopt(run::AdoptArgs),
    /// Force targets stale until they are next built (a restatement).
    Invalidate(run::InvalidateArgs),
    /// Remove the partitions no build wants: those before a node's start.
    Gc(gc::GcArgs),
    /// Say what a config change invalidates and what it will cost (for CI on pull requests).
    Diff(diff::DiffArgs),
    /// The embedded SQLite warehouse: import, ls, show, export.
    Warehouse(warehouse::WarehouseArgs),
    /// Compute one step of one config on the local engine (what the local executor runs), within its [bounds] memory and time (exit 5 or 6 past them).
    Compute(compute::ComputeArgs),
    /// Serve a join's features from the local KV store, and log the request for consistency checks.
    Fetch(compute::FetchArgs),
    /// Per config and step: last built partition, days behind --until, last attempt, partition counts.
    Status(monitor::StatusArgs),
    /// Runs and their attempts: command, exit code, duration and log.
    History(monitor::HistoryArgs),
    /// Print the log of a target's latest attempt.
    Logs(monitor::LogsArgs),
    /// Write a self-contained HTML page of partition health, durations and failures.
    Report(monitor::ReportArgs),
    /// The state itself: `state info` (backend, schema, size, runs, claims) and `state copy FROM TO`.
    State(state::StateArgs),
    /// Print shell completions to standard output, e.g. `chronon-build completions bash > /etc/bash_completion.d/chronon-build`.
    Completions(docs::CompletionsArgs),
    /// Print the man page (roff) to standard output, or write one page per command into a folder.
    Man(docs::ManArgs),
    /// Print this message or the help of the given subcommand(s).
    Help(docs::HelpArgs),
}

/// Which targets a command looks at: shared by `plan`, `run` and `adopt`.
#[derive(Args, Debug)]
pub struct Targets {
    /// Partitions up to this day [default: yesterday, UTC].
    #[arg(long, value_parser = parse_day, value_name = "YYYY-MM-DD")]
    pub until: Option<Day>,
    /// No partition before this day.
    #[arg(long, value_parser = parse_day, value_name = "YYYY-MM-DD")]
    pub from: Option<Day>,
    /// Only configs whose name matches this glob, e.g. 'sample_team.*' (their upstream is still planned).
    #[arg(long, value_name = "GLOB")]
    pub select: Option<String>,
    /// Only targets of this step.
    #[arg(long, value_enum, value_name = "KIND")]
    pub step: Option<crate::graph::Step>,
}

impl Targets {
    /// Checks the options against the workspace, once: the days, the glob
    /// and the step must each mean something.
    pub fn resolve(&self, ws: &Workspace) -> Result<Selection, Error> {
        let until = until_after_from(self.until, self.from)?;
        let mut nodes = ws.select(self.select.as_deref())?;
        if let Some(step) = self.step {
            for (s, node) in nodes.iter_mut().zip(&ws.graph.nodes) {
                *s &= node.step == step;
            }
            if !nodes.iter().any(|s| *s) {
                return Err(Error::Usage(format!(
                    "--step {step}: no such target in the selection"
                )));
            }
        }
        Ok(Selection {
            until,
            from: self.from,
            nodes,
        })
    }
}

impl From<Selection> for crate::plan::PlanOptions {
    fn from(selection: Selection) -> Self {
        crate::plan::PlanOptions::new(selection.until, selection.from, selection.nodes)
    }
}

/// `Targets`, validated: what `plan`, `status`, `run` and `adopt` plan.
pub struct Selection {
    pub until: Day,
    pub from: Option<Day>,
    /// The nodes asked for (their upstream is planned too).
    pub nodes: Vec<bool>,
}

/// `--until`, or yesterday; refused when `--from` is after it.
pub fn until_after_from(until: Option<Day>, from: Option<Day>) -> Result<Day, Error> {
    let until = until.unwrap_or_else(default_until);
    match from.filter(|from| *from > until) {
        Some(from) => Err(Error::Usage(format!(
            "--from {from} is after --until {until}"
        ))),
        None => Ok(until),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Runs the command line; returns the process exit code.
pub fn run<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    // A run's watchdog (`exec::watch`): not a command for people.
    if args.get(1).is_some_and(|a| a == crate::exec::watch::ARG) {
        return crate::exec::watch::main(&args[2..]);
    }
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let outcome = if e.use_stderr() {
                Exit::Invalid
            } else {
                Exit::Ok
            };
            let _ = e.print();
            return outcome.code();
        }
    };
    if cli.command.only_reads() {
        quiet_on_closed_output();
    }
    crate::say::set_verbosity(if cli.global.quiet {
        crate::say::Verbosity::Quiet
    } else if cli.global.verbose {
        crate::say::Verbosity::Verbose
    } else {
        crate::say::Verbosity::Normal
    });
    let result = match &cli.command {
        Command::Validate(args) => validate::run(&cli.global, args),
        Command::Graph(args) => graph::run(&cli.global, args),
        Command::Plan(args) => plan::run(&cli.global, args),
        Command::Explain(args) => explain::run(&cli.global, args),
        Command::Run(args) => run::run(&cli.global, args),
        Command::Adopt(args) => run::adopt(&cli.global, args),
        Command::Invalidate(args) => run::invalidate(&cli.global, args),
        Command::Gc(args) => gc::run(&cli.global, args),
        Command::Diff(args) => diff::run(&cli.global, args),
        Command::Warehouse(args) => warehouse::run(&cli.global, args),
        Command::Compute(args) => compute::compute(&cli.global, args),
        Command::Fetch(args) => compute::fetch(&cli.global, args),
        Command::Status(args) => monitor::status(&cli.global, args),
        Command::History(args) => monitor::history(&cli.global, args),
        Command::State(args) => state::run(&cli.global, args),
        Command::Logs(args) => monitor::logs(&cli.global, args),
        Command::Report(args) => monitor::report(&cli.global, args),
        Command::Completions(args) => docs::completions(args),
        Command::Man(args) => docs::man(args),
        Command::Help(args) => docs::help(args),
    };
    match result {
        Ok(outcome) => with_invalid_configs(outcome).code(),
        Err(e) => {
            crate::say::error(&format!("error: {e}"));
            e.code()
        }
    }
}

/// How many invalid configs the commands of this process set apart
/// (`Workspace::load`): the one rule for them is applied once, to the
/// outcome of whichever command loaded them.
static INVALID_LEFT_OUT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A command's outcome, made `Failed` when invalid configs were left out
/// (an `Invalid` outcome, or a stronger one, stays).
fn with_invalid_configs(exit: Exit) -> Exit {
    let left_out = INVALID_LEFT_OUT.load(std::sync::atomic::Ordering::Relaxed);
    match exit {
        Exit::Ok | Exit::Blocked | Exit::Attention if left_out > 0 => Exit::Failed,
        other => other,
    }
}

impl Command {
    /// Commands that change no state and start no job: when their output
    /// is closed early (`plan | head`), they end quietly as Unix tools do.
    fn only_reads(&self) -> bool {
        match self {
            Command::Run(_)
            | Command::Adopt(_)
            | Command::Invalidate(_)
            | Command::Gc(_)
            | Command::Compute(_)
            | Command::Fetch(_) => false,
            Command::Warehouse(args) => !matches!(
                args.command,
                warehouse::WarehouseCommand::Import { .. }
                    | warehouse::WarehouseCommand::Verify { .. }
            ),
            _ => true,
        }
    }
}

/// Restores the default action of SIGPIPE (Rust ignores it, so a write to a
/// closed pipe is an error, and `println!` panics on it): the process ends
/// at the first write after the reader is gone, printing nothing more.
fn quiet_on_closed_output() {
    // SAFETY: setting a signal's disposition to its default, before any
    // thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// What every command that looks at configs starts from.
pub struct Workspace {
    pub repo: Repo,
    pub settings: Settings,
    pub graph: Graph,
    /// Each table's partition column and format, as the Driver sees them.
    pub partitioning: crate::exec::partitioning::Partitioning,
}

impl Workspace {
    /// The repository with its invalid configs set apart (each one said on
    /// standard error), unless `--strict`.
    pub fn load(global: &Global) -> Result<Workspace, Error> {
        Workspace::load_with(global, global.strict)
    }

    /// One config file (relative to the repository) and its graph nodes:
    /// what a local job computes, without reading the rest of the
    /// repository.
    pub fn load_one(global: &Global, conf: &str) -> Result<Workspace, Error> {
        let repo = Repo::load_one(&global.repo, conf).map_err(Error::Config)?;
        Workspace::assemble(global, repo)
    }

    /// Every config valid, or an error listing every problem.
    pub fn load_strict(global: &Global) -> Result<Workspace, Error> {
        Workspace::load_with(global, true)
    }

    fn load_with(global: &Global, strict: bool) -> Result<Workspace, Error> {
        let repo = if strict {
            Repo::load(&global.repo)
        } else {
            Repo::load_lenient(&global.repo)
        }
        .map_err(Error::Config)?;
        for invalid in &repo.invalid {
            for problem in &invalid.problems {
                errln!("error: {problem}");
            }
        }
        if !repo.invalid.is_empty() {
            INVALID_LEFT_OUT.fetch_add(repo.invalid.len(), std::sync::atomic::Ordering::Relaxed);
            errln!(
                "error: {} invalid config(s) left out; what reads their tables is blocked \
                 (invalid config), the rest goes on, and the command exits 1 (--strict refuses \
                 the whole repository)",
                repo.invalid.len()
            );
        }
        Workspace::assemble(global, repo)
    }

    fn assemble(global: &Global, repo: Repo) -> Result<Workspace, Error> {
        let mut settings = Settings::load(&global.repo)?;
        apply_state_flags(global, &mut settings)?;
        if let Some(warehouse) = &global.warehouse {
            settings.warehouse.root = Some(absolute(warehouse));
        }
        let mut graph = Graph::build(&repo, &settings).map_err(Error::Config)?;
        let partitioning = crate::exec::partitioning::Partitioning::of(&repo, &settings, &graph)?;
        partitioning.resolve_in(&mut graph);
        graph.notes.extend(partitioning.notes.iter().cloned());
        graph.notes.extend(crate::exec::ranges::multi_day_note(
            &repo, &settings, &graph,
        ));
        Ok(Workspace {
            repo,
            settings,
            graph,
            partitioning,
        })
    }

    /// Where the state is (checked when the workspace was assembled).
    pub fn state_location(&self) -> StateLocation {
        self.settings
            .state_location(&self.repo.root)
            .unwrap_or_else(|_| StateLocation::File(self.repo.root.join(".chronon-build/state.db")))
    }

    /// The warehouse probe, after importing the seed files that changed.
    pub fn probe(&self) -> Result<Box<dyn crate::probe::Probe>, Error> {
        let imported = crate::warehouse::seed(&self.settings, &self.repo.root)?;
        for table in imported {
            crate::say::err(&format!(
                "seeded {table} from its file in chronon-build.toml"
            ));
        }
        Ok(crate::probe::from_settings(
            &self.settings,
            &self.repo.root,
            self.partitioning.layouts.clone(),
        )?)
    }

    /// The warehouse probe, importing nothing: for `plan`, `run -n` and
    /// every command that only reads. Seed files that changed since their
    /// last import are read in place (imported into a scratch warehouse
    /// that is removed afterwards), so these commands see the tables `run`
    /// will see after importing them, and list the same work as `run`. The
    /// other choice, reading the warehouse as it is, would make `plan` on
    /// a fresh demo say "blocked: missing data.purchases" for work `run`
    /// then does: a plan that differs from the run.
    pub fn probe_read_only(&self) -> Result<Box<dyn crate::probe::Probe>, Error> {
        let inner = crate::probe::from_settings(
            &self.settings,
            &self.repo.root,
            self.partitioning.layouts.clone(),
        )?;
        let Some(preview) = crate::warehouse::seed_preview(&self.settings, &self.repo.root)? else {
            return Ok(inner);
        };
        errln!(
            "note: [warehouse.seed] files not imported as they are now ({}): read in place; \
             `run` imports them",
            preview.tables.join(", ")
        );
        Ok(Box::new(crate::probe::Seeded {
            inner,
            scratch: crate::probe::SqliteProbe {
                warehouse: preview.warehouse,
            },
            tables: preview.tables.into_iter().collect(),
            _folder: preview.folder,
        }))
    }

    /// Plans without writing anything: what `plan`, `status` and `report`
    /// show. Returns the state it read, for the history.
    pub fn plan_read(
        &self,
        opts: impl Into<crate::plan::PlanOptions>,
    ) -> Result<(crate::plan::Plan, Option<StateStore>), Error> {
        let store = self.open_state_read()?;
        let probe = self.probe_read_only()?;
        let mut plan = self.plan_with(store.as_ref(), probe.as_ref(), opts.into())?;
        let hints = hints::for_plan(self, &plan, probe.as_ref());
        plan.notes.extend(hints);
        Ok((plan, store))
    }

    /// The one function from a selection to its work, for `plan`, `run -n`
    /// and `run` alike: the selected nodes and their upstream
    /// (`plan::compute`); they differ only in the probe (`run` imports the
    /// seed files first, the others read them in place).
    pub fn plan_with(
        &self,
        store: Option<&StateStore>,
        probe: &dyn crate::probe::Probe,
        opts: crate::plan::PlanOptions,
    ) -> Result<crate::plan::Plan, Error> {
        crate::plan::compute(
            &crate::plan::Context {
                repo: &self.repo,
                settings: &self.settings,
                graph: &self.graph,
                probe,
                store,
            },
            &opts,
        )
    }

    pub fn open_state_read(&self) -> Result<Option<StateStore>, Error> {
        Ok(StateStore::open_read_at(&self.state_location())?)
    }

    /// Nodes whose config name matches the glob (all when none is given).
    pub fn select(&self, glob: Option<&str>) -> Result<Vec<bool>, Error> {
        let Some(pattern) = glob else {
            return Ok(vec![true; self.graph.nodes.len()]);
        };
        let matcher = globset::Glob::new(pattern)
            .map_err(|e| Error::Usage(format!("--select {pattern:?}: {e}")))?
            .compile_matcher();
        let selected: Vec<bool> = self
            .graph
            .nodes
            .iter()
            .map(|n| matcher.is_match(&n.name))
            .collect();
        if !selected.iter().any(|s| *s) {
            return Err(Error::Usage(format!(
                "--select {pattern:?}: matches no config"
            )));
        }
        Ok(selected)
    }
}

fn absolute(path: &std::path::Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// `--until` defaults to yesterday: today's partition is not complete.
pub fn parse_day(text: &str) -> Result<Day, String> {
    Day::parse_checked(text)
}

pub fn default_until() -> Day {
    Day::today().minus(1)
}

/// Writes a command's output file: standard output for `-`, else the file,
/// replaced atomically.
pub fn write_output(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    if path.as_os_str() == "-" {
        print_out(text);
        return Ok(());
    }
    crate::monitor::write_atomic(path, text)
}

pub fn print_json<T: serde::Serialize>(value: &T) {
    let mut text = serde_json::to_string_pretty(value).expect("output serializes");
    text.push('\n');
    print_out(&text);
}

/// Writes to standard output; a reader that went away is not an error
/// (`println!` would panic): commands that change state finish their work
/// whether or not anyone still reads what they say.
pub fn print_out(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// `--state-url`, `--state` and `CHRONON_BUILD_STATE_URL`, in that order,
/// over the settings' `state.url` and `state.path`; returns where the
/// state then is. A URL that does not parse is refused here, naming where
/// it came from.
pub fn apply_state_flags(global: &Global, settings: &mut Settings) -> Result<StateLocation, Error> {
    let from_env = std::env::var("CHRONON_BUILD_STATE_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let (url, source) = if let Some(url) = &global.state_url {
        (Some(url.clone()), "--state-url")
    } else if let Some(state) = &global.state {
        settings.state.path = absolute(state);
        settings.state.url = None;
        (None, "")
    } else if let Some(url) = from_env {
        (Some(url), "CHRONON_BUILD_STATE_URL")
    } else {
        (None, "")
    };
    if let Some(url) = url {
        StateLocation::parse(&url, &global.repo)
            .map_err(|e| Error::Usage(format!("{source}: {e}")))?;
        settings.state.url = Some(url);
    }
    // The settings' own URL was checked when they loaded.
    settings
        .state_location(&global.repo)
        .map_err(|e| Error::Usage(format!("{}: {e}", crate::settings::FILE_NAME)))
}

/// Where the repository's state is, for commands that read it without
/// loading the configs (`state info`, `history`, `logs`, `diff`): the
/// settings with the command line's and environment's flags over them.
pub fn own_state(global: &Global) -> Result<StateLocation, Error> {
    apply_state_flags(global, &mut Settings::load(&global.repo)?)
}
