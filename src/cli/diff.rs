//! `chronon-build diff`: what a config change invalidates and what it will
//! cost, for CI on config pull requests. Reads no warehouse.

use clap::{Args, ValueEnum};

use super::{Global, parse_day, print_json};
use crate::config::Repo;
use crate::diff::{self, History, Options, Side, render, source};
use crate::error::{Error, Exit};
use crate::graph::Graph;
use crate::partition::Day;
use crate::settings::Settings;
use crate::store::StateStore;

#[derive(Args, Debug)]
#[command(
    after_help = "The repository's state (or --state) limits counts to partitions that were \
                        built and estimates cost from run history; without one, every wanted partition \
                        counts. Exit codes: 0 computed, 1 a policy \
                        failed (--max-partitions, --deny), 2 usage or config error, 4 something is \
                        invalidated (with --exit-code)."
)]
pub struct DiffArgs {
    /// The base config set: a git revision of the repository at --repo (read with `git archive`, no checkout) or a folder.
    #[arg(long, value_name = "REV|DIR")]
    pub base: String,
    /// The head config set [default: the working tree at --repo].
    #[arg(long, value_name = "REV|DIR")]
    pub head: Option<String>,
    /// Count partitions up to this day [default: yesterday, UTC].
    #[arg(long, value_parser = parse_day, value_name = "YYYY-MM-DD")]
    pub until: Option<Day>,
    /// No partition before this day.
    #[arg(long, value_parser = parse_day, value_name = "YYYY-MM-DD")]
    pub from: Option<Day>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: DiffFormat,
    /// Exit with 4 when anything is invalidated.
    #[arg(long)]
    pub exit_code: bool,
    /// Fail (exit 1) when more than N partitions would be recomputed.
    #[arg(long, value_name = "N")]
    pub max_partitions: Option<usize>,
    /// Fail (exit 1) on a kind of change.
    #[arg(long, value_enum, value_name = "POLICY")]
    pub deny: Vec<Deny>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DiffFormat {
    Text,
    Markdown,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Deny {
    /// An online config changes what it serves but keeps its name (and version).
    InPlaceOnlineChange,
}

pub fn run(global: &Global, args: &DiffArgs) -> Result<Exit, Error> {
    let until = super::until_after_from(args.until, args.from)?;
    let history = history(global)?;
    let base_source = source::materialize("--base", &args.base, &global.repo)?;
    let head_source = match &args.head {
        Some(spec) => source::materialize("--head", spec, &global.repo)?,
        None => source::Materialized::folder(
            format!("working tree ({})", global.repo.display()),
            &global.repo,
        ),
    };
    let base = load("base", &base_source)?;
    let head = load("head", &head_source)?;
    let report = diff::compute(
        &base,
        &head,
        &Options {
            until,
            from: args.from,
        },
        history.as_ref(),
    );
    match args.format {
        DiffFormat::Text => print!("{}", render::to_text(&report)),
        DiffFormat::Markdown => print!("{}", render::to_markdown(&report)),
        DiffFormat::Json => print_json(&report),
    }

    let mut failed = false;
    if let Some(max) = args.max_partitions
        && report.totals.partitions > max
    {
        errln!(
            "error: {} partitions to recompute, more than --max-partitions {max}",
            diff::thousands(report.totals.partitions)
        );
        failed = true;
    }
    if args.deny.contains(&Deny::InPlaceOnlineChange) {
        for line in render::in_place_online_changes(&report) {
            errln!("error: {line}");
            failed = true;
        }
    }
    Ok(if failed {
        Exit::Failed
    } else if args.exit_code && report.invalidates() {
        Exit::Attention
    } else {
        Exit::Ok
    })
}

/// The run history counts are limited by: `--state`, which must exist,
/// else the repository's own state, wherever every other command reads it
/// (`--state-url`, `CHRONON_BUILD_STATE_URL`, `[state]` in
/// chronon-build.toml, else `.chronon-build/state.db`). A repository with
/// no state yet counts every wanted partition, and says so.
fn history(global: &Global) -> Result<Option<History>, Error> {
    if let Some(path) = &global.state {
        let store = StateStore::open_read(path)?.ok_or_else(|| {
            Error::Usage(format!("--state {}: no such state file", path.display()))
        })?;
        return Ok(Some(History::from_store(&store)?));
    }
    let location = super::own_state(global)?;
    match StateStore::open_read_at(&location)? {
        Some(store) => Ok(Some(History::from_store(&store)?)),
        None => {
            errln!(
                "note: no state at {}: every wanted partition counts as to build \
                 (pass --state FILE to count against another state)",
                location.name()
            );
            Ok(None)
        }
    }
}

/// Loads one side's configs, settings and graph; errors say which side.
fn load(side: &str, source: &source::Materialized) -> Result<Side, Error> {
    let within = |e: Error| Error::Within {
        what: format!("{side} {}", source.label),
        source: Box::new(e),
    };
    let repo = Repo::load(&source.root).map_err(|e| within(Error::Config(e)))?;
    let settings = Settings::load(&source.root).map_err(|e| within(e.into()))?;
    let mut graph = Graph::build(&repo, &settings).map_err(|e| within(Error::Config(e)))?;
    crate::exec::partitioning::Partitioning::of(&repo, &settings, &graph)
        .map_err(|e| within(e.into()))?
        .resolve_in(&mut graph);
    Ok(Side {
        label: source.label.clone(),
        repo,
        settings,
        graph,
    })
}
