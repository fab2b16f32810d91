//! `chronon-build gc`: remove the partitions no build wants, those before a
//! node's start (see `run::gc`).

use clap::Args;

use super::{Global, Workspace, parse_day, print_json};
use crate::error::{Error, Exit};
use crate::partition::Day;
use crate::run::lock;

#[derive(Args, Debug)]
pub struct GcArgs {
    /// Plan up to this day [default: yesterday, UTC].
    #[arg(long, value_parser = parse_day, value_name = "YYYY-MM-DD")]
    pub until: Option<Day>,
    /// Say what would be removed; remove nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Wait for the state's lock instead of failing when a run holds it.
    #[arg(long)]
    pub wait_lock: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: super::Format,
}

pub fn run(global: &Global, args: &GcArgs) -> Result<Exit, Error> {
    let until = super::until_after_from(args.until, None)?;
    let ws = Workspace::load(global)?;
    // A run removes orphans too, and jobs write the tables: one at a time.
    let _lock = lock::acquire(&ws.state_path(), args.wait_lock)?;
    let (plan, _) = ws.plan_read(crate::plan::PlanOptions::new(
        until,
        None,
        vec![true; ws.graph.nodes.len()],
    ))?;
    let said = crate::run::gc::remove(
        &ws.settings,
        &ws.repo.root,
        &ws.partitioning.layouts,
        &plan.orphans,
        args.dry_run,
    )?;
    match args.format {
        super::Format::Json => print_json(&plan.orphans),
        super::Format::Text => {
            let mut text: String = said.iter().map(|l| format!("{l}\n")).collect();
            if said.is_empty() {
                text.push_str("nothing to remove\n");
            }
            super::print_out(&text);
        }
    }
    Ok(Exit::Ok)
}
