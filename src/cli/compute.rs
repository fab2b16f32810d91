//! `chronon-build compute`: one step of one config over a partition range,
//! on the local engine (what the `local` executor runs as a job), and
//! `chronon-build fetch`: serve a join from the local KV store.

use std::collections::BTreeMap;

use clap::Args;

use super::{Global, Workspace, parse_day, print_json};
use crate::engine::{Engine, bounds};
use crate::error::{Error, Exit};
use crate::graph::Step;
use crate::partition::{Day, DayRange};

#[derive(Args, Debug)]
pub struct ComputeArgs {
    /// The step, e.g. group-by-backfill.
    #[arg(value_enum)]
    pub step: Step,
    /// The config's name, e.g. quickstart.purchases.v1.
    pub config: String,
    /// The join part's label, for join-part.
    #[arg(long, value_name = "LABEL")]
    pub part: Option<String>,
    /// First partition to compute (with --until).
    #[arg(
        long = "from",
        alias = "start-ds",
        value_parser = parse_day,
        value_name = "YYYY-MM-DD",
        requires = "end_ds"
    )]
    pub start_ds: Option<Day>,
    /// Last partition to compute (with --from).
    #[arg(
        long = "until",
        alias = "end-ds",
        value_parser = parse_day,
        value_name = "YYYY-MM-DD",
        requires = "start_ds"
    )]
    pub end_ds: Option<Day>,
    /// The config's file, relative to the repository: load only it, not
    /// the whole repository (what the local executor passes).
    #[arg(long, value_name = "FILE")]
    pub conf: Option<String>,
}

pub fn compute(global: &Global, args: &ComputeArgs) -> Result<Exit, Error> {
    let ws = match &args.conf {
        Some(conf) => Workspace::load_one(global, conf)?,
        None => Workspace::load(global)?,
    };
    let node = ws
        .graph
        .find(args.step, &args.config, args.part.as_deref())
        .ok_or_else(|| {
            Error::Usage(format!(
                "no {} target for {}{}",
                args.step,
                args.config,
                args.part
                    .as_deref()
                    .map(|p| format!("#{p}"))
                    .unwrap_or_default()
            ))
        })?;
    let range = match (args.start_ds, args.end_ds) {
        (Some(from), Some(to)) if from > to => {
            return Err(Error::Usage(format!("--from {from} is after --until {to}")));
        }
        (Some(from), Some(to)) => Some(DayRange::new(from, to)),
        _ => None,
    };
    let target = format!(
        "{}{}",
        node.label(),
        crate::partition::at_range(args.start_ds, args.end_ds)
    );
    bounds::enforce(&ws.settings.bounds.for_step(args.step, jobs()), &target);
    let engine = Engine::new(&ws.repo, &ws.settings);
    match engine.compute(node, range) {
        Ok(summary) => {
            super::print_out(&format!("{summary}\n"));
            Ok(Exit::Ok)
        }
        Err(e) => match bounds::stopped(&e) {
            Some(bound) => {
                errln!("error: {}", bounds::message(bound).unwrap_or_default());
                Ok(bound.exit())
            }
            None => {
                errln!("error: {e}");
                Ok(Exit::Failed)
            }
        },
    }
}

/// The jobs of the run this job is one of (`JOBS_ENV`, set by the
/// runner), which share the machine's memory; 1 for `compute` by hand.
fn jobs() -> usize {
    std::env::var(crate::engine::bounds::JOBS_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| (1..=crate::settings::MAX_JOBS).contains(n))
        .unwrap_or(1)
}

#[derive(Args, Debug)]
pub struct FetchArgs {
    /// The join, e.g. quickstart.training_set.v1.
    pub join: String,
    /// A key of the request, as COLUMN=VALUE; repeat for each key column.
    #[arg(long = "key", value_name = "COLUMN=VALUE", value_parser = parse_key, required = true)]
    pub keys: Vec<(String, String)>,
    /// When the request happens: epoch milliseconds or 'yyyy-MM-dd HH:mm:ss' (UTC) [default: now].
    #[arg(long, value_parser = parse_ts, value_name = "TIME")]
    pub ts: Option<i64>,
}

fn parse_key(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected COLUMN=VALUE, got {text:?}")),
    }
}

fn parse_ts(text: &str) -> Result<i64, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    crate::engine::sql::parse_millis(text, "yyyy-MM-dd HH:mm:ss")
        .map_err(|_| format!("expected epoch milliseconds or 'yyyy-MM-dd HH:mm:ss', got {text:?}"))
}

pub fn fetch(global: &Global, args: &FetchArgs) -> Result<Exit, Error> {
    let ws = Workspace::load(global)?;
    let mut keys = BTreeMap::new();
    for (k, v) in &args.keys {
        if keys.insert(k.clone(), v.clone()).is_some() {
            return Err(Error::Usage(format!("--key {k}: given twice")));
        }
    }
    let ts = args
        .ts
        .unwrap_or_else(|| crate::clock::unix_now().saturating_mul(1000));
    let engine = Engine::new(&ws.repo, &ws.settings);
    if !engine.kv_path.exists() {
        return Err(Error::Usage(format!(
            "{}: no KV store yet; run the join's group-by uploads first (chronon-build run)",
            engine.kv_path.display()
        )));
    }
    match crate::engine::fetch::fetch(&engine, &args.join, &keys, ts) {
        Ok(response) => {
            print_json(&response);
            Ok(Exit::Ok)
        }
        Err(e) => Err(Error::Usage(e.to_string())),
    }
}
