//! `chronon-build plan`: which partitions are stale and why.

use clap::Args;

use super::{Format, Global, Targets, Workspace, print_json};
use crate::error::{Error, Exit};
use crate::plan::{StatusKind, render};

#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub targets: Targets,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// List fresh ranges too (text output).
    #[arg(long)]
    pub show_fresh: bool,
    /// Exit with 4 when anything is stale or waiting (blocked work exits 3 with or without it).
    #[arg(long)]
    pub exit_code: bool,
}

pub fn run(global: &Global, args: &PlanArgs) -> Result<Exit, Error> {
    let ws = Workspace::load(global)?;
    ws.repo.require_configs().map_err(Error::Config)?;
    let selection = args.targets.resolve(&ws)?;
    let (plan, _) = ws.plan_read(crate::plan::PlanOptions::from(selection).lazily())?;
    let filter = render::Filter {
        invalid_configs: ws.repo.invalid.len(),
        show_fresh: args.show_fresh || args.format == Format::Json,
        every: global.verbose,
    };
    match args.format {
        Format::Text => {
            crate::say::notes(&plan.notes);
            if !global.quiet {
                crate::say::out(&render::to_text(&plan, &ws.graph, &filter));
            }
        }
        Format::Json => print_json(&render::to_json(&plan, &ws.graph, &filter)),
    }
    let totals = render::totals(&plan, &ws.graph);
    // Freeing a million targets' plan, the graph and the configs takes
    // longer than the process's exit, which follows: left to it (as rustc
    // leaves its arenas). They hold memory only.
    std::mem::forget(plan);
    std::mem::forget(ws);
    Ok(outcome(&totals, args.exit_code))
}

/// The one rule `plan`, `run -n` and `run` share (README, "Exit codes"):
/// blocked work exits 3, as the run of this plan would; with
/// `--exit-code`, other work that is not fresh exits 4. Invalid configs
/// set apart make any of these 1 (`cli::with_invalid_configs`).
fn outcome(totals: &std::collections::BTreeMap<&'static str, usize>, exit_code: bool) -> Exit {
    let count = |kind: StatusKind| totals.get(kind.name()).copied().unwrap_or(0);
    let not_fresh: usize = totals
        .iter()
        .filter(|(k, _)| **k != StatusKind::Fresh.name())
        .map(|(_, v)| v)
        .sum();
    if count(StatusKind::Blocked) > 0 {
        Exit::Blocked
    } else if exit_code && not_fresh > 0 {
        Exit::Attention
    } else {
        Exit::Ok
    }
}
