//! Prepares the run benchmark on a repository made by `gen_repo`: creates
//! every target's output partition in the hive-dir warehouse (so a command
//! of `true` "writes" them and they probe as present), and writes an
//! equivalent `build.ninja` from the same graph: one edge per target, its
//! inputs the upstream targets and source partitions it reads, its command
//! `true`.
//!
//! With `--sqlite DIR`, every partition of the hive-dir warehouse (inputs
//! and outputs) is also listed in the catalog of an embedded warehouse at
//! DIR (relative to the repository), so the same repository can be planned
//! on `kind = "sqlite"`. `--tables 1` also creates each table in its
//! namespace file (empty: the catalog says what is there), as a user's
//! warehouse has them, so a plan pays for schemas of thousands of tables.
//!
//! cargo run --release --example gen_run -- --repo bench/out/run/repo --until 2025-12-31 --ninja bench/out/run/build.ninja

use std::fmt::Write as _;
use std::path::PathBuf;

use chronon_build::testing::plan::{self, Context, PlanOptions};
use chronon_build::testing::{Day, Global, Schedule, Workspace, probe};

fn main() {
    let mut repo = PathBuf::from("bench/out/run/repo");
    let mut until = Day::parse("2025-12-31").unwrap();
    let mut ninja: Option<PathBuf> = None;
    let mut sqlite: Option<PathBuf> = None;
    let mut tables = false;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--repo" => repo = PathBuf::from(value),
            "--until" => until = Day::parse(&value).expect("a day"),
            "--ninja" => ninja = Some(PathBuf::from(value)),
            "--sqlite" => sqlite = Some(PathBuf::from(value)),
            "--tables" => tables = value == "1",
            other => panic!("unknown flag {other}"),
        }
    }
    let global = Global {
        repo: repo.clone(),
        state: None,
        state_url: None,
        warehouse: None,
        strict: true,
        verbose: false,
        quiet: false,
    };
    let ws = Workspace::load(&global).expect("the repo loads");
    let probe = probe::from_settings(&ws.settings, &ws.repo.root, ws.partitioning.layouts.clone())
        .expect("a probe");
    let plan = plan::compute(
        &Context {
            repo: &ws.repo,
            settings: &ws.settings,
            graph: &ws.graph,
            probe: probe.as_ref(),
            store: None,
        },
        &PlanOptions::new(until, None, vec![true; ws.graph.nodes.len()]),
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
    if let Some(dir) = sqlite {
        let listed = catalog(&warehouse, &repo.join(dir), tables);
        eprintln!("{listed} partitions listed in the embedded warehouse's catalog");
    }

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

/// Lists every `<ns>.db/<table>/ds=<day>` folder under `hive` in the catalog
/// of `<sqlite>/<ns>.sqlite`, with a fingerprint made from its path.
fn catalog(hive: &std::path::Path, sqlite: &std::path::Path, tables: bool) -> usize {
    let warehouse = chronon_build::testing::Warehouse::new(sqlite.to_path_buf(), "ds");
    let mut listed = 0;
    for ns_dir in std::fs::read_dir(hive).unwrap() {
        let ns_dir = ns_dir.unwrap().path();
        let Some(ns) = ns_dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".db"))
        else {
            continue;
        };
        // The namespace file as the warehouse makes it, catalog included.
        let mut conn = warehouse.open_write(ns).unwrap();
        let tx = conn.transaction().unwrap();
        {
            let mut insert = tx
                .prepare("INSERT OR REPLACE INTO _partitions VALUES (?1, ?2, 1, ?3, 0)")
                .unwrap();
            for table_dir in std::fs::read_dir(&ns_dir).unwrap() {
                let table_dir = table_dir.unwrap().path();
                let table = table_dir.file_name().unwrap().to_str().unwrap().to_string();
                tx.execute("INSERT OR REPLACE INTO _tables VALUES (?1, 'ds')", [&table])
                    .unwrap();
                if tables {
                    let quoted = table.replace('"', "\"\"");
                    tx.execute_batch(&format!(
                        "CREATE TABLE IF NOT EXISTS \"{quoted}\" (k TEXT, v REAL, ds TEXT)"
                    ))
                    .unwrap();
                }
                for partition in std::fs::read_dir(&table_dir).unwrap() {
                    let partition = partition.unwrap().path();
                    let name = partition.file_name().unwrap().to_str().unwrap();
                    let Some(day) = name.strip_prefix("ds=") else {
                        continue;
                    };
                    let fingerprint =
                        chronon_build::testing::Hash::of(partition.to_string_lossy().as_bytes());
                    insert.execute((&table, day, fingerprint.hex())).unwrap();
                    listed += 1;
                }
            }
        }
        tx.commit().unwrap();
    }
    listed
}
