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
    /// Exit with 4 when anything is stale, blocked or waiting.
    #[arg(long)]
    pub exit_code: bool,
}

pub fn run(global: &Global, args: &PlanArgs) -> Result<Exit, Error> {
    let ws = Workspace::load(global)?;
    let selection = args.targets.resolve(&ws)?;
    let step = selection.step;
    let (plan, _) = ws.plan_read(crate::plan::PlanOptions::from(selection).lazily())?;
    let filter = render::Filter {
        step,
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
    let totals = render::totals(&plan, &ws.graph, step);
    let not_fresh: usize = totals
        .iter()
        .filter(|(k, _)| **k != StatusKind::Fresh.name())
        .map(|(_, v)| v)
        .sum();
    Ok(if args.exit_code && not_fresh > 0 {
        Exit::Attention
    } else {
        Exit::Ok
    })
}
