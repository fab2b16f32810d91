//! Contract tests against the real CLIs: zipline-ai 1.28.0, zipline-ai 1.0.5
//! and chronon-ai 0.0.115, installed by `scripts/test` into virtualenvs
//! named by `CHRONON_BUILD_REAL_CLIS` (a folder holding `zipline-ai-1.28.0`,
//! `zipline-ai-1.0.5` and `chronon-ai-0.0.115`).
//!
//! Each test runs the tool's real `run` with `executor.cli = "auto"` and
//! `program` set to tests/fixtures/real-cli-shim.py, which calls the CLI's
//! own entry point with job submission replaced by a recorder: the CLI
//! parses our argv, computes its environment and builds the Driver command;
//! the recorder logs it and writes the partitions the real Driver would.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::scenario::seed_sources;
use crate::{Output, Scenario, assert_contains};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Cli {
    Zipline128,
    Zipline105,
    Chronon,
}

/// Whether the real CLIs are installed (`scripts/test` installs them);
/// else the test is skipped, saying so.
fn installed(test: &str) -> bool {
    let present = [Cli::Zipline128, Cli::Zipline105, Cli::Chronon]
        .iter()
        .all(|cli| {
            cli.venv_path()
                .is_some_and(|v| v.join("bin/python").exists())
        });
    crate::tool_or_skip(
        test,
        present,
        "the real CLIs are not installed (CHRONON_BUILD_REAL_CLIS names no virtualenvs)",
    )
}

impl Cli {
    fn venv_path(self) -> Option<PathBuf> {
        let root = std::env::var_os("CHRONON_BUILD_REAL_CLIS")?;
        let name = match self {
            Cli::Zipline128 => "zipline-ai-1.28.0",
            Cli::Zipline105 => "zipline-ai-1.0.5",
            Cli::Chronon => "chronon-ai-0.0.115",
        };
        Some(Path::new(&root).join(name))
    }

    fn venv(self) -> PathBuf {
        let root = std::env::var_os("CHRONON_BUILD_REAL_CLIS").unwrap_or_else(|| {
            panic!("CHRONON_BUILD_REAL_CLIS is not set: run the tests with scripts/test, which installs the real CLIs")
        });
        let name = match self {
            Cli::Zipline128 => "zipline-ai-1.28.0",
            Cli::Zipline105 => "zipline-ai-1.0.5",
            Cli::Chronon => "chronon-ai-0.0.115",
        };
        let venv = Path::new(&root).join(name);
        assert!(
            venv.join("bin/python").exists(),
            "{} has no virtualenv: run scripts/test",
            venv.display()
        );
        venv
    }

    fn python(self) -> String {
        self.venv().join("bin/python").display().to_string()
    }

    /// `executor.program`: the shim, then the CLI's own words.
    fn program(self) -> Vec<String> {
        let mut argv = vec![self.python(), shim()];
        match self {
            Cli::Zipline128 | Cli::Zipline105 => argv.extend(["zipline".into(), "run".into()]),
            Cli::Chronon => argv.push("chronon".into()),
        }
        argv
    }

    fn expected_interface(self) -> &'static str {
        match self {
            Cli::Zipline128 => "cli zipline (",
            Cli::Zipline105 => "cli zipline-1.0 (",
            Cli::Chronon => "cli chronon (",
        }
    }
}

fn shim() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/real-cli-shim.py")
        .display()
        .to_string()
}

fn toml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// A repository set up to run one CLI through the shim.
struct Real {
    s: Scenario,
    cli: Cli,
    driver: &'static str,
    /// Variables the operator exported before `run`.
    exported: Vec<(&'static str, &'static str)>,
}

impl Real {
    fn new(testdata: &str, cli: Cli, driver: &'static str, extra: &str) -> Real {
        let s = Scenario::copy(testdata);
        let mut settings = format!(
            "[executor]\nkind = \"zipline\"\nprogram = {}\n",
            toml_list(&cli.program())
        );
        if cli != Cli::Chronon {
            // zipline-ai's open-source runner (no CLOUD_PROVIDER) needs the
            // Driver jar on the command line.
            settings.push_str("extra_args = [\"--chronon-jar\", \"/tmp/shim-driver.jar\"]\n");
        }
        // A team's own operator that calls the Driver, for what the CLI
        // lacks: airbnb's run.py has no KV upload and no comparison mode;
        // Zipline's Driver has no label join.
        let own = |sub: &str| {
            let mut argv = vec![cli.python(), shim(), "driver".into(), sub.into()];
            argv.extend(["--conf-path={conf}".into(), "--end-date={ds}".into()]);
            toml_list(&argv)
        };
        settings.push_str("[executor.commands]\n");
        if cli == Cli::Chronon {
            settings.push_str(&format!(
                "upload-to-kv = {}\nbuild-comparison-table = {}\n",
                own("group-by-upload-bulk-load"),
                own("build-comparison-table")
            ));
        } else {
            settings.push_str(&format!("label-join = {}\n", own("label-join")));
        }
        settings.push_str(extra);
        settings.push_str("[warehouse]\nkind = \"hive-dir\"\nfingerprint = \"content\"\n");
        // Keep the repository's own settings other than the executor's.
        std::fs::write(s.repo.join("chronon-build.toml"), settings).unwrap();
        Real {
            s,
            cli,
            driver,
            exported: Vec::new(),
        }
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = crate::command(&self.s.repo);
        // As a user's shell runs it: run.py is checked for every variable.
        cmd.env_remove("COLUMNS").args(args);
        cmd.env("SHIM_LOG", self.s.repo.join("shim.jsonl"))
            .env("SHIM_WAREHOUSE", self.s.repo.join("warehouse"))
            .env("SHIM_DRIVER", self.driver);
        for (k, v) in self.exported.iter().chain(env) {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        Output::from(out)
    }

    fn calls(&self) -> Vec<Value> {
        std::fs::read_to_string(self.s.repo.join("shim.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Runs everything twice: the first run builds every target through the
    /// real CLI, the second runs nothing.
    fn build_twice(&self, range: &[&str]) -> Vec<Value> {
        let mut args = vec!["run", "--progress", "plain", "-j", "2"];
        args.extend(range);
        let out = self.run(&args, &[]);
        assert_eq!(
            out.code, 0,
            "{:?}: the real CLI refused a command or a Driver table is missing\nstdout:\n{}\nstderr:\n{}",
            self.cli, out.stdout, out.stderr
        );
        // Not run with COLUMNS (the jobs' environment is compared with
        // run.py's): lines wrapped at 100 columns are joined back.
        let said = out.stderr.replace("\n    ", " ");
        assert_contains(&said, self.cli.expected_interface());
        assert_contains(&said, "detected from");
        let calls = self.calls();
        let jobs: usize = out
            .stdout
            .split_once(" built in ")
            .and_then(|(_, rest)| rest.split_once(" job(s)"))
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or_else(|| panic!("no summary in {}", out.stdout));
        assert!(jobs > 0);
        // Every job reached the Driver through the CLI (one Driver command
        // per job: none of ours uses --parallelism for backfills).
        assert_eq!(calls.len(), jobs, "{calls:#?}");
        let again = self.run(&args, &[]);
        assert_eq!(again.code, 0, "{}", again.stderr);
        assert_contains(&again.stdout, " built in 0 job(s)");
        assert_eq!(self.calls().len(), jobs, "the second run ran something");
        calls
    }
}

fn find<'c>(calls: &'c [Value], sub: &str, conf: &str) -> &'c Value {
    calls
        .iter()
        .find(|c| c["subcommand"] == sub && c["args"].to_string().contains(conf))
        .unwrap_or_else(|| panic!("no {sub} call for {conf} in {calls:#?}"))
}

fn args(call: &Value) -> Vec<String> {
    call["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

fn has(call: &Value, arg: &str) -> bool {
    args(call).iter().any(|a| a == arg)
}

const SCENARIO_UNTIL: &str = "2025-01-10";

fn scenario(cli: Cli) -> Real {
    let real = Real::new(
        "scenario",
        cli,
        "zipline",
        "[streaming]\nkafka_bootstrap = \"kafka:9092\"\nparallelism = 4\n",
    );
    seed_sources(&real.s, 10);
    real
}

/// The Driver subcommands and arguments each CLI derives from our argv on
/// the scenario (Zipline layout): every step kind.
fn scenario_contract(cli: Cli) {
    let real = scenario(cli);
    let calls = real.build_twice(&["--until", SCENARIO_UNTIL]);
    let join = "risk.checkout.v1";
    let left = find(&calls, "join-left", join);
    assert!(has(left, "--end-date=2025-01-10"), "{left:#}");
    let part = find(&calls, "join", join);
    assert!(has(part, "--selected-join-parts"), "{part:#}");
    assert!(has(part, "risk_purchases_v1") || has(part, "m_risk_merchant_profile_v1"));
    assert!(has(part, "--use-cached-left"), "{part:#}");
    find(&calls, "join-final", join);
    find(&calls, "group-by-backfill", "risk.purchases.v1");
    find(&calls, "staging-query-backfill", "risk.merchants.v1");
    find(&calls, "group-by-upload", "risk.purchases.v1");
    let kv = find(&calls, "group-by-upload-bulk-load", "risk.purchases.v1");
    let flattener = find(&calls, "log-flattener", join);
    let joined = args(flattener).join(" ");
    assert!(
        joined.contains(
            "--log-table default.chronon_log_table --schema-table default.chronon_schema_table"
        ),
        "{joined}"
    );
    find(&calls, "build-comparison-table", join);
    find(&calls, "consistency-metrics-compute", join);
    find(&calls, "metadata-upload", "risk.purchases.v1");
    let streaming = find(&calls, "group-by-streaming", "risk.purchases.v1");
    let streaming_args = args(streaming).join(" ");
    // Each call's own argv, as we gave it.
    let ours: Vec<String> = streaming["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert!(ours.contains(&"--parallelism".to_string()), "{ours:?}");
    assert!(
        ours.join(" ").contains("--kafka-bootstrap kafka:9092"),
        "{ours:?}"
    );
    // zipline-ai takes --kafka-bootstrap itself (for its Flink submitter);
    // run.py passes it on to the Driver's group-by-streaming.
    assert_eq!(
        streaming_args.contains("--kafka-bootstrap kafka:9092"),
        cli == Cli::Chronon,
        "{streaming_args}"
    );
    match cli {
        Cli::Zipline128 => {
            assert!(ours[0].ends_with("risk.purchases.v1"), "{ours:?}");
            assert!(ours.contains(&"--no-savepoint".to_string()), "{ours:?}");
            assert!(has(kv, "--uploader=spark"), "{kv:#}");
        }
        Cli::Zipline105 => {
            assert_eq!(ours[0], "--mode");
            assert!(ours.contains(&"--no-savepoint".to_string()), "{ours:?}");
        }
        Cli::Chronon => {
            assert!(!ours.contains(&"--no-savepoint".to_string()), "{ours:?}");
        }
    }
}

#[test]
fn zipline_1_28_accepts_every_scenario_command_and_derives_the_driver_calls() {
    if !installed("zipline_1_28_accepts_every_scenario_command_and_derives_the_driver_calls") {
        return;
    }
    scenario_contract(Cli::Zipline128);
}

#[test]
fn zipline_1_0_accepts_every_scenario_command_and_derives_the_driver_calls() {
    if !installed("zipline_1_0_accepts_every_scenario_command_and_derives_the_driver_calls") {
        return;
    }
    scenario_contract(Cli::Zipline105);
}

#[test]
fn chronon_run_py_accepts_every_scenario_command_with_the_kv_upload_configured() {
    if !installed("chronon_run_py_accepts_every_scenario_command_with_the_kv_upload_configured") {
        return;
    }
    scenario_contract(Cli::Chronon);
}

#[test]
fn chronon_run_py_without_a_kv_upload_command_is_refused_before_anything_runs() {
    if !installed("chronon_run_py_without_a_kv_upload_command_is_refused_before_anything_runs") {
        return;
    }
    let real = scenario(Cli::Chronon);
    std::fs::write(
        real.s.repo.join("chronon-build.toml"),
        format!(
            "[executor]\nkind = \"zipline\"\nprogram = {}\n[warehouse]\nkind = \"hive-dir\"\n",
            toml_list(&Cli::Chronon.program())
        ),
    )
    .unwrap();
    let out = real.run(&["run", "--until", SCENARIO_UNTIL], &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_contains(
        &out.stderr,
        "upload-to-kv:risk.purchases.v1: the chronon CLI has no mode for upload-to-kv",
    );
    assert!(real.calls().is_empty());
}

#[test]
fn auto_names_what_it_saw_when_the_program_is_no_known_cli() {
    if !installed("auto_names_what_it_saw_when_the_program_is_no_known_cli") {
        return;
    }
    let real = scenario(Cli::Zipline128);
    std::fs::write(
        real.s.repo.join("chronon-build.toml"),
        "[executor]\nkind = \"zipline\"\nprogram = [\"echo\", \"hello\"]\n[warehouse]\nkind = \"hive-dir\"\n",
    )
    .unwrap();
    let out = real.run(&["run", "--until", SCENARIO_UNTIL], &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_contains(
        &out.stderr,
        "`echo hello --help` printed no help of a known CLI",
    );
    assert_contains(&out.stderr, "hello --help");
}

/// The demo's external tables, as the Driver would find them.
const DEMO_SOURCES: [&str; 5] = [
    "data.purchases",
    "data.returns",
    "data.users",
    "data.checkouts",
    "default.chronon_log_table",
];

/// The demo (airbnb layout with teams.json) switched to the zipline executor.
fn demo_contract(cli: Cli) {
    let real = Real::new("demo", cli, "airbnb", "");
    // The source tables, as the Driver would find them.
    for table in DEMO_SOURCES {
        for day in [
            "2023-11-29",
            "2023-11-30",
            "2023-12-01",
            "2023-12-02",
            "2023-12-03",
        ] {
            real.s.write_partition(table, day, table);
        }
    }
    real.build_twice(&["--from", "2023-12-01", "--until", "2023-12-03"]);
}

#[test]
fn every_real_cli_runs_the_demo_on_the_zipline_executor() {
    if !installed("every_real_cli_runs_the_demo_on_the_zipline_executor") {
        return;
    }
    for cli in [Cli::Zipline128, Cli::Zipline105, Cli::Chronon] {
        demo_contract(cli);
    }
}

/// The airbnb sample corpus: every external input seeded for the range.
#[test]
fn every_real_cli_runs_the_airbnb_corpus() {
    if !installed("every_real_cli_runs_the_airbnb_corpus") {
        return;
    }
    for cli in [Cli::Zipline128, Cli::Zipline105, Cli::Chronon] {
        let mut real = Real::new("corpus/airbnb-chronon-samples", cli, "airbnb", "");
        // teams.json sets EXECUTOR_CORES for sample_team's backfills; what
        // the operator exported must reach the job unchanged.
        real.exported.push(("EXECUTOR_CORES", "7"));
        // Keys out of alphabetical order: run.py joins a dict's keys in the
        // file's order.
        real.s
            .edit("production/joins/sample_team/sample_join.v1", |conf| {
                let custom = conf["metaData"]["customJson"].as_str().unwrap().to_string();
                let mut custom: Value = serde_json::from_str(&custom).unwrap();
                custom["additional_args"] = Value::Null;
                let text = custom.to_string().replace(
                    "\"additional_args\":null",
                    "\"additional_args\":{\"zeta_arg\":\"z\",\"alpha_arg\":\"a\"}",
                );
                conf["metaData"]["customJson"] = Value::String(text);
            });
        let graph: Value =
            serde_json::from_str(&real.run(&["graph", "--format", "json"], &[]).stdout).unwrap();
        let nodes = graph["nodes"].as_array().unwrap();
        let outputs: BTreeSet<&str> = nodes.iter().filter_map(|n| n["output"].as_str()).collect();
        let mut external = BTreeSet::new();
        for node in nodes {
            for input in node["inputs"].as_array().unwrap() {
                let table = input["table"].as_str().unwrap();
                let base = table.split('/').next().unwrap();
                if !outputs.contains(base) && input["ordering_only"] == false {
                    external.insert(table.to_string());
                }
            }
        }
        for table in &external {
            for day in 20..=31 {
                real.s
                    .write_partition(table, &format!("2023-11-{day:02}"), table);
            }
            for day in 1..=3 {
                real.s
                    .write_partition(table, &format!("2023-12-{day:02}"), table);
            }
        }
        let calls = real.build_twice(&["--from", "2023-12-01", "--until", "2023-12-03"]);
        for call in &calls {
            assert_eq!(call["env"]["EXECUTOR_CORES"], "7", "{call:#}");
        }
        // Label joins: one job per label_ds (run.py's `--ds`), through
        // run.py's own mode or, on Zipline, the team's command.
        let labels: Vec<&Value> = calls
            .iter()
            .filter(|c| c["subcommand"] == "label-join")
            .collect();
        assert_eq!(labels.len(), 6, "two label joins, three days: {labels:#?}");
        let label = labels
            .iter()
            .find(|c| {
                c["args"].to_string().contains("sample_label_join.v1")
                    && has(c, "--end-date=2023-12-03")
            })
            .unwrap_or_else(|| panic!("no label join for 2023-12-03 in {labels:#?}"));
        let through = if cli == Cli::Chronon {
            "chronon"
        } else {
            "driver"
        };
        assert_eq!(label["cli"], through, "{label:#}");
        // label_ds 2023-12-03 with offsets 30 and 10: left days 11-04..11-24.
        let labelled = real
            .s
            .repo
            .join("warehouse/sample_namespace.db/sample_team_sample_label_join_v1_labels/label_ds=2023-12-03");
        assert!(labelled.join("ds=2023-11-04").is_dir() && labelled.join("ds=2023-11-24").is_dir());
        if cli == Cli::Chronon {
            assert_environments_match_run_py(&real, calls.len());
        }
    }
}

/// For every job the Chronon corpus run started, the environment the Driver
/// saw equals what chronon-ai's own `set_runtime_env` computes for that
/// (config, literal mode) from a clean environment with the same exported
/// variables; and chronon-build added no variable of its own but
/// `CHRONON_BUILD_*`.
fn assert_environments_match_run_py(real: &Real, jobs: usize) {
    let checker = r#"
import argparse, json, os, runpy, sys
log, repo, exported = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
import ai.chronon.repo as pkg
set_runtime_env = runpy.run_path(os.path.join(os.path.dirname(pkg.__file__), "run.py"))["set_runtime_env"]
own = {"APP_NAME", "CHRONON_CONF_PATH", "CHRONON_DRIVER_JAR", "CUSTOMER_ID", "PATH"}
checked, problems = 0, []
base = dict(os.environ)
for line in open(log):
    call = json.loads(line)
    argv = call["argv"]
    if "--mode" not in argv:
        continue  # a team's own command (KV upload), not run.py
    mode, conf = argv[argv.index("--mode") + 1], argv[argv.index("--conf") + 1]
    os.environ.clear()
    os.environ.update(exported)
    args = argparse.Namespace(mode=mode, conf=conf, repo=repo, env="dev", app_name=None,
                              chronon_jar=None, online_jar=None, online_class=None)
    set_runtime_env(args)
    expected = {k: v for k, v in os.environ.items() if k not in own}
    got = call["env"]
    for k, v in expected.items():
        if got.get(k) != v:
            problems.append(f"{conf} {mode}: {k}={got.get(k)!r}, run.py computes {v!r}")
    for k, v in got.items():
        if k.startswith("CHRONON_BUILD_") or k in own or k in base or k in expected:
            continue
        problems.append(f"{conf} {mode}: {k}={v!r} is set, run.py sets no such variable")
    checked += 1
os.environ.clear(); os.environ.update(base)
print(json.dumps({"checked": checked, "problems": problems}))
"#;
    let exported: serde_json::Map<String, Value> = real
        .exported
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    let out = std::process::Command::new(Cli::Chronon.python())
        .args(["-c", checker])
        .arg(real.s.repo.join("shim.jsonl"))
        .arg(&real.s.repo)
        .arg(Value::Object(exported).to_string())
        .current_dir(&real.s.repo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // run.py prints what it sets; the report is the last line.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(report["problems"], serde_json::json!([]), "{report:#}");
    // Every run.py job was compared (the team's own KV uploads are not run.py).
    let checked = report["checked"].as_u64().unwrap() as usize;
    assert!(checked > 0 && checked <= jobs, "{report:#}");
}

/// teams.json's `PARTITION_COLUMN`/`PARTITION_FORMAT` reach the Driver
/// through run.py (its `spark_submit.sh` turns them into Spark conf), so
/// every table is partitioned `dt=yyyyMMdd`: the probe lists inputs and
/// outputs that way, the whole demo builds, and a second run runs nothing.
/// The local engine, which writes `ds=yyyy-MM-dd` only, refuses the run.
#[test]
fn partition_column_and_format_from_teams_json_are_how_tables_are_probed() {
    if !installed("partition_column_and_format_from_teams_json_are_how_tables_are_probed") {
        return;
    }
    let teams = r#"{
        "default": {"common_env": {"PARTITION_COLUMN": "dt", "PARTITION_FORMAT": "yyyyMMdd"}},
        "quickstart": {"namespace": "quickstart"}
    }"#;
    let real = Real::new("demo", Cli::Chronon, "airbnb", "");
    std::fs::write(real.s.repo.join("teams.json"), teams).unwrap();
    let warehouse = real.s.repo.join("warehouse");
    for table in DEMO_SOURCES {
        let (ns, name) = table.split_once('.').unwrap();
        for day in [20250830, 20250831, 20250901, 20250902, 20250903] {
            let dir = warehouse.join(format!("{ns}.db/{name}/dt={day}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("part-00000"), table).unwrap();
        }
    }
    let calls = real.build_twice(&["--from", "2025-09-01", "--until", "2025-09-03"]);
    for call in &calls {
        assert_eq!(call["env"]["PARTITION_COLUMN"], "dt", "{call:#}");
    }
    find(&calls, "join-final", "training_set.v1");
    let final_table = warehouse.join("quickstart.db/quickstart_training_set_v1");
    for day in ["dt=20250901", "dt=20250902", "dt=20250903"] {
        assert!(final_table.join(day).is_dir(), "{day}");
    }
    assert!(!final_table.join("ds=2025-09-03").exists());

    // The same repository on the local engine.
    let local = Scenario::copy("demo");
    std::fs::write(local.repo.join("teams.json"), teams).unwrap();
    let out = local.run(&["run", "--until", "2025-09-03"]);
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert_contains(&out.stderr, "would write partitions dt=yyyyMMdd");
    assert_contains(
        &out.stderr,
        "PARTITION_COLUMN in the job environment (teams.json",
    );
    assert_contains(&out.stderr, "the local engine writes ds=yyyy-MM-dd only");
}
