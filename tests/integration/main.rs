//! One integration binary: drives the real `chronon-build` binary on scenario
//! folders copied to temporary directories.

mod bad_input;
mod bounds;
mod claims;
mod cli;
mod completions;
mod corpus;
mod diff;
mod endings;
mod engine;
mod formats;
mod fuzz;
mod hints;
mod history;
mod keys;
mod monitor;
mod mutation;
mod orphans;
mod output;
mod own_repo;
mod plans_match_runs;
mod postgres;
mod quickstart;
mod real_cli;
mod resolved;
mod robustness;
mod run;
mod scenario;
mod soundness;
mod state_db;
mod state_pg;
mod unchanged;
mod undeclared_reads;
mod warehouse;

use std::path::{Path, PathBuf};
use std::process::Command;

use chronon_build::testing::plan::{self, BuildRecord, Context, PlanOptions, Status};
use chronon_build::testing::probe::{self, fingerprint_dir};
use chronon_build::testing::{Global, StateStore, Workspace};

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<std::process::Output> for Output {
    fn from(out: std::process::Output) -> Output {
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// The binary on `repo`, its lines not wrapped (`COLUMNS`): tests look
/// for whole lines; `output.rs` checks the wrapping itself.
pub fn chronon_build(repo: &Path, args: &[&str]) -> Output {
    let out = command(repo).args(args).output().expect("the binary runs");
    Output::from(out)
}

/// The binary with `--repo`; with `CHRONON_BUILD_TEST_STATE=postgres`, its
/// state in the repository's database on the tests' PostgreSQL server.
pub fn command(repo: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chronon-build"));
    // Whole lines: the tests compare them (output wraps at 100 columns
    // outside a terminal otherwise).
    command.env("COLUMNS", "100000");
    command.arg("--repo").arg(repo);
    if postgres::on_postgres() {
        command.env("CHRONON_BUILD_STATE_URL", postgres::state_url_for(repo));
    }
    command
}

/// Whether a test that needs an outside tool (a real CLI, Chromium, a
/// Python package) can run. `cargo test` on a fresh clone skips it and says
/// why on standard error (not captured); `scripts/test` installs every tool
/// and sets `CHRONON_BUILD_REQUIRE_TOOLS=1`, so there a missing tool fails
/// the test instead.
pub fn tool_or_skip(test: &str, present: bool, missing: &str) -> bool {
    if present {
        return true;
    }
    if std::env::var_os("CHRONON_BUILD_REQUIRE_TOOLS").is_some() {
        panic!(
            "{test}: {missing}, and CHRONON_BUILD_REQUIRE_TOOLS is set (scripts/test installs it)"
        );
    }
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "skipped {test}: {missing}; scripts/test installs it"
    );
    false
}

/// Loses a repository's state and logs: its `.chronon-build` folder, and
/// on PostgreSQL its database.
pub fn forget_state(repo: &Path) {
    let _ = std::fs::remove_dir_all(repo.join(".chronon-build"));
    postgres::forget_state_of(repo);
}

/// `text` contains `needle`; else the assertion shows all of `text`.
pub fn assert_contains(text: &str, needle: &str) {
    assert!(text.contains(needle), "expected {needle:?} in:\n{text}");
}

/// The command refused its input: exit 2, with `message` in what it said.
pub fn assert_error(out: &Output, message: &str) {
    assert_eq!(
        out.code, 2,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    assert!(
        out.stderr.contains(message),
        "expected {message:?} in:\n{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

/// Every row of one partition: `warehouse show TABLE --ds DAY --format
/// json`, a JSON array of objects.
pub fn show_rows(repo: &Path, table: &str, day: &str) -> serde_json::Value {
    let out = chronon_build(
        repo,
        &[
            "warehouse",
            "show",
            table,
            "--ds",
            day,
            "--limit",
            "1000000",
            "--format",
            "json",
        ],
    );
    assert_eq!(out.code, 0, "show {table} {day}: {}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

pub fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A temporary copy of a testdata folder, with a hive-dir warehouse at
/// `<repo>/warehouse` (its default root) unless the folder has settings.
/// Settings for a hive-dir warehouse at its default root.
pub const HIVE_DIR: &str = "[executor]\nkind = \"zipline\"\n[warehouse]\nkind = \"hive-dir\"\n";

pub struct Scenario {
    _dir: tempfile::TempDir,
    pub repo: PathBuf,
}

impl Scenario {
    pub fn copy(name: &str) -> Scenario {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        copy_dir(&testdata(name), &repo);
        let settings = repo.join("chronon-build.toml");
        if !settings.exists() {
            std::fs::write(settings, HIVE_DIR).unwrap();
        }
        Scenario { _dir: dir, repo }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        chronon_build(&self.repo, args)
    }

    pub fn partition_dir(&self, table: &str, day: &str) -> PathBuf {
        let (base, sub) = match table.split_once('/') {
            Some((b, s)) => (b, Some(s)),
            None => (table, None),
        };
        let (ns, name) = base.split_once('.').unwrap_or(("default", base));
        let mut dir = self
            .repo
            .join("warehouse")
            .join(format!("{ns}.db"))
            .join(name)
            .join(format!("ds={day}"));
        if let Some(sub) = sub {
            dir = dir.join(sub);
        }
        dir
    }

    /// Writes one data file into a partition.
    pub fn write_partition(&self, table: &str, day: &str, content: &str) {
        let dir = self.partition_dir(table, day);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("part-00000.csv"), content).unwrap();
    }

    pub fn edit(&self, rel: &str, edit: impl FnOnce(&mut serde_json::Value)) {
        let path = self.repo.join(rel);
        let mut value: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        edit(&mut value);
        std::fs::write(&path, serde_json::to_string_pretty(&value).unwrap()).unwrap();
    }

    /// Plays the runner: until nothing stale can run, records every stale
    /// target whose inputs are known as built, writing its output partition
    /// first. Returns how many targets were recorded.
    pub fn build_all(&self, until: &str) -> usize {
        let global = Global {
            repo: self.repo.clone(),
            state: None,
            // The state the binary uses in this test run (`command`).
            state_url: postgres::on_postgres().then(|| postgres::state_url_for(&self.repo)),
            warehouse: None,
            strict: true,
            verbose: false,
            quiet: false,
        };
        let ws = Workspace::load(&global).unwrap();
        let until = chronon_build::testing::Day::parse(until).unwrap();
        let mut store = StateStore::open_at(&ws.state_location()).unwrap();
        let probe =
            probe::from_settings(&ws.settings, &ws.repo.root, ws.partitioning.layouts.clone())
                .unwrap();
        let mut recorded = 0;
        loop {
            let ctx = Context {
                repo: &ws.repo,
                settings: &ws.settings,
                graph: &ws.graph,
                probe: probe.as_ref(),
                store: Some(&store),
            };
            let plan = plan::compute(
                &ctx,
                &PlanOptions::new(until, None, vec![true; ws.graph.nodes.len()]),
            )
            .unwrap();
            let mut records = Vec::new();
            let mut read = Vec::new();
            for node in &ws.graph.nodes {
                let slice_json = plan::slice_json(node);
                let key = std::sync::Arc::new(plan::node_key(node));
                for target in &plan.nodes[node.id].targets {
                    if !matches!(target.status, Status::Stale(_)) {
                        continue;
                    }
                    let Some(record) =
                        BuildRecord::for_target(&plan, &ws.graph, node, target, &key, &slice_json)
                    else {
                        continue;
                    };
                    let columns = plan.input_columns(&ws.graph, node);
                    read.extend(plan::reads(node, &columns, &[target.day], until));
                    let output = match (&node.output, target.day) {
                        (Some(table), Some(day)) if node.probed_output => {
                            let day = day.to_string();
                            self.write_partition(
                                table,
                                &day,
                                &format!("built by {}", record.key.hex()),
                            );
                            fingerprint_dir(
                                &self.partition_dir(table, &day),
                                ws.settings.warehouse.fingerprint,
                            )
                            .unwrap()
                        }
                        _ => record.key,
                    };
                    records.push((record, output));
                }
            }
            if records.is_empty() {
                return recorded;
            }
            recorded += records.len();
            let built: Vec<_> = records.iter().map(|(r, o)| r.built(*o)).collect();
            read.sort();
            read.dedup();
            store.record_built(&built, &read).unwrap();
        }
    }
}

/// `plan` ended as its run would: 3 when some target is blocked, else 0
/// (text or JSON output).
pub fn assert_planned(out: &Output) {
    let blocked = match serde_json::from_str::<serde_json::Value>(&out.stdout) {
        Ok(json) => json["totals"]["blocked"].as_u64().expect("totals"),
        Err(_) => {
            let last = out.stdout.lines().last().unwrap_or_default();
            let count = last
                .split(", ")
                .find_map(|part| part.strip_suffix(" blocked"))
                .unwrap_or_else(|| panic!("no totals line in:\n{}\n{}", out.stdout, out.stderr));
            count.parse().unwrap()
        }
    };
    let expected = if blocked > 0 { 3 } else { 0 };
    assert_eq!(out.code, expected, "plan: {}\n{}", out.stdout, out.stderr);
}

/// Plan JSON groups as (target, from, to, count, status line).
pub fn plan_groups(out: &Output) -> Vec<serde_json::Value> {
    assert_planned(out);
    let value: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    value["groups"].as_array().unwrap().clone()
}

/// Non-fresh groups as `target from..to status` lines, for exact comparison.
pub fn not_fresh(out: &Output) -> Vec<String> {
    plan_groups(out)
        .iter()
        .filter(|g| g["status"] != "fresh")
        .map(|g| {
            let range = match (g["from"].as_str(), g["to"].as_str()) {
                (Some(a), Some(b)) => format!("{a}..{b}"),
                _ => "-".into(),
            };
            let why = match g["status"].as_str().unwrap() {
                "stale" => format!("stale {}", g["reason"].as_str().unwrap()),
                other => other.to_string(),
            };
            format!("{} {range} {why}", g["target"].as_str().unwrap())
        })
        .collect()
}

pub fn schema(name: &str) -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(name);
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{name}: {e}"))
}

pub fn assert_valid(validator: &jsonschema::Validator, value: &serde_json::Value, what: &str) {
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not match its schema:\n{}",
        errors.join("\n")
    );
}
