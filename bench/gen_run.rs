//! Prepares the run benchmark on a repository made by `gen_repo`: creates
//! every target's output partition in the hive-dir warehouse (so a command
//! of `true` "writes" them and they probe as present), and writes an
//! equivalent `build.ninja` from the same graph: one edge per target, its
//! inputs the upstream targets and source partitions it reads, its command
//! `true`.
//!
//! cargo run --release --example gen_run -- --repo bench/out/run/repo --until 2025-12-31 --ninja bench/out/run/build.ninja

use std::fmt::Write as _;
use std::path::PathBuf;

use chronon_build::cli::{Global, Workspace};
use chronon_build::graph::Schedule;
use chronon_build::partition::Day;
use chronon_build::plan::{self, Context, PlanOptions};
use chronon_build::probe;

fn main() {
    let mut repo = PathBuf::from("bench/out/run/repo");
    let mut until = Day::parse("2025-12-31").unwrap();
    let mut ninja: Option<PathBuf> = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--repo" => repo = PathBuf::from(value),
            "--until" => until = Day::parse(&value).expect("a day"),
            "--ninja" => ninja = Some(PathBuf::from(value)),
            other => panic!("unknown flag {other}"),
        }
    }
    let global = Global {
        repo: repo.clone(),
        state: None,
        warehouse: None,
        strict: true,
    };
    let ws = Workspace::load(&global).expect("the repo loads");
    let probe = probe::from_settings(&ws.settings, &ws.repo.root, ws.partitioning.layouts.clone());
    let plan = plan::compute(
        &Context {
            repo: &ws.repo,
            settings: &ws.settings,
            graph: &ws.graph,
            probe: probe.as_ref(),
            store: None,
        },
        &PlanOptions {
            until,
            from: None,
            selected: vec![true; ws.graph.nodes.len()],
        },
    )
    .expect("the plan computes");

    let warehouse = ws
        .settings
        .resolve(&ws.repo.root, &ws.settings.warehouse.root());
    let mut outputs = 0;
    for node in &ws.graph.nodes {
        let Some(table) = node.output.as_ref().filter(|_| node.probed_output) else {
            continue;
        };
        let (ns, name) = table.split_once('.').unwrap_or(("default", table));
        for target in &plan.nodes[node.id].targets {
            if let Some(day) = target.day {
                let dir = warehouse.join(format!("{ns}.db/{name}/ds={day}"));
                std::fs::create_dir_all(&dir).unwrap();
                outputs += 1;
            }
        }
    }
    let targets: usize = plan.nodes.iter().map(|n| n.targets.len()).sum();
    eprintln!("{targets} targets, {outputs} output partitions created");

    let Some(path) = ninja else { return };
    let file = |id: usize, day: Option<Day>| match day {
        Some(day) => format!("o/{id}/{day}"),
        None => format!("o/{id}/all"),
    };
    let mut out = String::from("rule job\n  command = true\n\n");
    let repo_rel = repo.canonicalize().unwrap();
    for node in &ws.graph.nodes {
        let columns = plan.input_columns(&ws.graph, node);
        for target in &plan.nodes[node.id].targets {
            let at = target.day.unwrap_or(until);
            let _ = write!(out, "build {}: job", file(node.id, target.day));
            for (input, column) in node.inputs.iter().zip(&columns) {
                match (input.producer, column) {
                    (Some(p), _) if input.ordering_only => {
                        for t in &plan.nodes[p].targets {
                            let _ = write!(out, " {}", file(p, t.day));
                        }
                    }
                    (Some(p), Some(column)) => {
                        let range = input.range(at, column.first_present());
                        let days: Vec<Option<Day>> = plan.nodes[p]
                            .targets
                            .iter()
                            .map(|t| t.day)
                            .filter(|d| {
                                d.is_some_and(|d| range.contains(d))
                                    || matches!(ws.graph.nodes[p].schedule, Schedule::Unpartitioned)
                            })
                            .collect();
                        for d in days {
                            let _ = write!(out, " {}", file(p, d));
                        }
                    }
                    (None, Some(column)) => {
                        let range = input.range(at, column.first_present());
                        let (ns, name) = input
                            .base_table()
                            .split_once('.')
                            .unwrap_or(("default", input.base_table()));
                        for (d, _) in column.present_in(range) {
                            let _ = write!(
                                out,
                                " {}",
                                repo_rel
                                    .join(format!("warehouse/{ns}.db/{name}/ds={d}"))
                                    .display()
                            );
                        }
                    }
                    _ => {}
                }
            }
            out.push('\n');
        }
    }
    std::fs::write(&path, out).unwrap();
    eprintln!("wrote {}", path.display());
}
