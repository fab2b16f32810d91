//! `chronon-build gc`: remove the partitions no build wants, those before a
//! node's start; list what nodes no config makes any more left behind, and
//! remove it with `--orphans` (see `run::gc`).

use clap::Args;

use super::{Global, Workspace, parse_day, print_json};
use crate::error::{Error, Exit};
use crate::partition::Day;
use crate::run::gc::{Leftover, Places};
use crate::run::lock;
use crate::store::StateStore;

#[derive(Args, Debug)]
pub struct GcArgs {
    /// Plan up to this day [default: yesterday, UTC].
    #[arg(long, value_parser = parse_day, value_name = "YYYY-MM-DD")]
    pub until: Option<Day>,
    /// Say what would be removed; remove nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Also remove what nodes no config makes any more (a config renamed, a
    /// join part removed) left: their tables, local KV entries and state rows.
    #[arg(long)]
    pub orphans: bool,
    /// Wait for the state's lock instead of failing when a run holds it.
    #[arg(long)]
    pub wait_lock: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: super::Format,
}

#[derive(serde::Serialize)]
struct GcJson<'a> {
    /// Partitions before a node's start.
    before_start: &'a [crate::plan::Orphan],
    /// What nodes no config makes any more left.
    orphans: &'a [Leftover],
    /// Whether the orphans were removed.
    orphans_removed: bool,
}

pub fn run(global: &Global, args: &GcArgs) -> Result<Exit, Error> {
    let until = super::until_after_from(args.until, None)?;
    let ws = Workspace::load(global)?;
    // A run removes orphans too, and jobs write the tables: one at a time.
    let lock = lock::acquire_at(&ws.state_location(), lock::Mode::Exclusive, args.wait_lock)?;
    let (plan, store) = ws.plan_read(crate::plan::PlanOptions::new(
        until,
        None,
        vec![true; ws.graph.nodes.len()],
    ))?;
    if !args.dry_run {
        lock.check()?;
    }
    let mut said = crate::run::gc::remove(
        &ws.settings,
        &ws.repo.root,
        &ws.partitioning.layouts,
        &plan.orphans,
        args.dry_run,
    )?;
    let leftovers = match leftovers(&ws, store)? {
        Ok(found) => found,
        Err(why) => {
            said.push(why);
            Vec::new()
        }
    };
    let removed = args.orphans && !args.dry_run && !leftovers.is_empty();
    said.extend(orphan_lines(&ws, &lock, &leftovers, args)?);
    match args.format {
        super::Format::Json => print_json(&GcJson {
            before_start: &plan.orphans,
            orphans: &leftovers,
            orphans_removed: removed,
        }),
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

/// What nodes no config makes any more left; not looked for (and why)
/// while configs are set apart, whose nodes would look removed.
fn leftovers(
    ws: &Workspace,
    store: Option<StateStore>,
) -> Result<Result<Vec<Leftover>, String>, Error> {
    if !ws.repo.invalid.is_empty() {
        return Ok(Err(format!(
            "orphans of removed configs not looked for: {} invalid config(s) are set apart, \
             and their nodes would look removed",
            ws.repo.invalid.len()
        )));
    }
    let Some(store) = store else {
        return Ok(Ok(Vec::new()));
    };
    let probe =
        crate::probe::from_settings(&ws.settings, &ws.repo.root, ws.partitioning.layouts.clone())?;
    Ok(Ok(crate::run::gc::find_leftovers(
        &ws.graph,
        &store,
        probe.as_ref(),
    )?))
}

/// One line per leftover: removed (`--orphans`), would be removed (with
/// `-n`), or kept, then what was kept and why.
fn orphan_lines(
    ws: &Workspace,
    lock: &lock::StateLock,
    leftovers: &[Leftover],
    args: &GcArgs,
) -> Result<Vec<String>, Error> {
    if leftovers.is_empty() {
        return Ok(Vec::new());
    }
    let when = |l: &Leftover| match l.last_built {
        Some(secs) => format!("last built {}", crate::monitor::timestamp(secs)),
        None => "never built".to_string(),
    };
    let line = |prefix: &str, l: &Leftover| {
        format!(
            "{prefix}{} (no config makes it; {}): {}",
            l.target,
            when(l),
            l.what()
        )
    };
    if !args.orphans {
        let mut lines: Vec<String> = leftovers.iter().map(|l| line("orphan ", l)).collect();
        lines.push(format!(
            "{} orphan(s) of removed or renamed configs kept: `gc --orphans` removes them",
            leftovers.len()
        ));
        return Ok(lines);
    }
    if args.dry_run {
        return Ok(leftovers
            .iter()
            .map(|l| line("would remove orphan ", l))
            .collect());
    }
    let mut store = StateStore::open_at(&ws.state_location())?;
    lock.guard(&store);
    lock.check()?;
    let probe =
        crate::probe::from_settings(&ws.settings, &ws.repo.root, ws.partitioning.layouts.clone())?;
    let places = Places {
        settings: &ws.settings,
        repo_root: &ws.repo.root,
        layouts: &ws.partitioning.layouts,
        probe: probe.as_ref(),
    };
    let notes = crate::run::gc::remove_leftovers(&places, &mut store, leftovers)?;
    let mut lines: Vec<String> = leftovers
        .iter()
        .map(|l| line("removed orphan ", l))
        .collect();
    lines.extend(notes.into_iter().map(|n| format!("note: {n}")));
    Ok(lines)
}
