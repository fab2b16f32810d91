//! What a job runs: the `zipline` CLI's argv and environment for one node
//! over one partition range. Always an argv array, never a shell string:
//! config names come from pull requests.
//!
//! Each step has a built-in template matching the real CLI (DESIGN.md
//! section 7); `chronon-build.toml` can replace any of them under
//! `[executor.templates]`. Placeholders are substituted per argument, so a
//! value can never split into two arguments or reach a shell.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::config::{Config, Layout, Repo};
use crate::graph::{Node, Step};
use crate::hash::Hash;
use crate::partition::DayRange;
use crate::settings::{ExecutorKind, Settings};

/// A command ready to spawn.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandLine {
    pub argv: Vec<String>,
    /// Added to the runner's own environment.
    pub env: BTreeMap<String, String>,
    /// The repository root: `--conf` paths are relative to it.
    pub dir: std::path::PathBuf,
}

/// Whether a step takes a `--start-ds/--end-ds` range or one `--ds`.
pub fn takes_range(step: Step) -> bool {
    matches!(
        step,
        Step::GroupByBackfill
            | Step::StagingQuery
            | Step::JoinLeft
            | Step::JoinPart
            | Step::JoinFinal
    )
}

/// The zipline mode a step runs as; `whole` joins run as one `backfill`.
pub fn mode(step: Step) -> &'static str {
    match step {
        Step::StagingQuery | Step::GroupByBackfill | Step::JoinPart => "backfill",
        Step::JoinLeft => "backfill-left",
        Step::JoinFinal => "backfill-final",
        Step::GroupByUpload => "upload",
        Step::UploadToKv => "upload-to-kv",
        Step::GroupByStreaming => "streaming",
        Step::MetadataUpload => "metadata-upload",
        Step::LogFlattener => "log-flattener",
        Step::BuildComparisonTable => "build-comparison-table",
        Step::ConsistencyMetricsCompute => "consistency-metrics-compute",
    }
}

/// The template key for a whole-join `backfill`.
pub const JOIN_BACKFILL: &str = "join-backfill";

fn builtin_template(key: &str, settings: &Settings) -> Vec<String> {
    let mut args: Vec<&str> = match key {
        "join-part" => vec![
            "--mode",
            "backfill",
            "--conf",
            "{conf}",
            "--selected-join-parts",
            "{part}",
            "--use-cached-left",
            "--start-ds",
            "{start_ds}",
            "--end-ds",
            "{end_ds}",
        ],
        "log-flattener" => vec![
            "--mode",
            "log-flattener",
            "--conf",
            "{conf}",
            "--log-table",
            "{log_table}",
            "--schema-table",
            "{schema_table}",
            "--ds",
            "{ds}",
        ],
        "metadata-upload" => vec!["--mode", "metadata-upload", "--conf", "{conf}"],
        JOIN_BACKFILL => vec![
            "--mode",
            "backfill",
            "--conf",
            "{conf}",
            "--start-ds",
            "{start_ds}",
            "--end-ds",
            "{end_ds}",
        ],
        other => {
            let step = Step::parse(other).expect("template keys are steps");
            let mut args = vec!["--mode", mode(step), "--conf", "{conf}"];
            if takes_range(step) {
                args.extend(["--start-ds", "{start_ds}", "--end-ds", "{end_ds}"]);
            } else if step == Step::GroupByStreaming {
                args.extend(["--streaming-mode", "deploy"]);
            } else {
                args.extend(["--ds", "{ds}"]);
            }
            args
        }
    };
    let mut out: Vec<String> = args.drain(..).map(str::to_string).collect();
    if key == "upload-to-kv" {
        out.extend(["--uploader".into(), settings.executor.uploader.clone()]);
    }
    if key == "group-by-streaming" {
        if let Some(kafka) = &settings.streaming.kafka_bootstrap {
            out.extend(["--kafka-bootstrap".into(), kafka.clone()]);
        }
        if let Some(uri) = &settings.streaming.flink_state_uri {
            out.extend(["--flink-state-uri".into(), uri.clone()]);
        }
    }
    out
}

/// The command for one job: `node` over `range` (`None` for unpartitioned
/// steps), or the whole join when `whole_join` is set.
pub fn command(
    repo: &Repo,
    settings: &Settings,
    node: &Node,
    range: Option<DayRange>,
    whole_join: bool,
    key: Option<Hash>,
) -> CommandLine {
    let config = &repo.configs[node.config];
    let exec = &settings.executor;
    if exec.kind == ExecutorKind::Local {
        return local_command(repo, settings, node, range, key);
    }
    let template_key = if whole_join {
        JOIN_BACKFILL
    } else {
        node.step.name()
    };
    let template = exec
        .templates
        .get(template_key)
        .cloned()
        .unwrap_or_else(|| builtin_template(template_key, settings));
    let fill = |arg: &str| -> String {
        if !arg.contains('{') {
            return arg.to_string();
        }
        let (start, end) = match range {
            Some(r) => (r.from.to_string(), r.to.to_string()),
            None => (String::new(), String::new()),
        };
        arg.replace("{conf}", &config.path)
            .replace("{config}", &node.name)
            .replace("{start_ds}", &start)
            .replace("{end_ds}", &end)
            .replace("{ds}", &end)
            .replace("{part}", node.part.as_deref().unwrap_or_default())
            .replace("{output}", node.output.as_deref().unwrap_or_default())
            .replace("{log_table}", &settings.consistency.log_table)
            .replace("{schema_table}", &settings.consistency.schema_table)
    };
    let mut argv: Vec<String> = exec.program.clone();
    argv.extend(template.iter().map(|a| fill(a)));
    if let Some(prefix) = &exec.artifact_prefix {
        argv.extend(["--artifact-prefix".into(), prefix.clone()]);
    }
    if let Some(version) = &exec.version {
        argv.extend(["--version".into(), version.clone()]);
    }
    argv.extend(exec.extra_args.iter().map(|a| fill(a)));

    let zipline_mode = if whole_join {
        "backfill"
    } else {
        mode(node.step)
    };
    let mut env = environment(repo, config, zipline_mode);
    env.extend(exec.env.clone());
    let mut set = |k: &str, v: String| {
        env.insert(format!("CHRONON_BUILD_{k}"), v);
    };
    set("STEP", node.step.name().into());
    set("CONFIG", node.name.clone());
    set("TEAM", node.team.clone());
    // A whole join's backfill writes the join's own table.
    let output = if whole_join {
        Some(config.meta().output_table())
    } else {
        node.output.clone()
    };
    set("OUTPUT_TABLE", output.unwrap_or_default());
    if let Some(range) = range {
        set("START_DS", range.from.to_string());
        set("END_DS", range.to.to_string());
    }
    if let Some(key) = key {
        set("KEY", key.to_string());
    }
    CommandLine {
        argv,
        env,
        dir: repo.root.clone(),
    }
}

/// The local executor's job: this program's `compute` over the node.
fn local_command(
    repo: &Repo,
    settings: &Settings,
    node: &Node,
    range: Option<DayRange>,
    key: Option<Hash>,
) -> CommandLine {
    let program = std::env::current_exe()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "chronon-build".into());
    // The job runs in the repository: paths it gets must not depend on
    // where the runner was started.
    let root = std::path::absolute(&repo.root).unwrap_or_else(|_| repo.root.clone());
    let warehouse = settings.resolve(&root, &settings.warehouse.root());
    let mut argv = vec![
        program,
        "--repo".into(),
        root.to_string_lossy().into_owned(),
        "--warehouse".into(),
        warehouse.to_string_lossy().into_owned(),
        "compute".into(),
        node.step.name().into(),
        node.name.clone(),
    ];
    if let Some(part) = &node.part {
        argv.extend(["--part".into(), part.clone()]);
    }
    if let Some(range) = range {
        argv.extend([
            "--start-ds".into(),
            range.from.to_string(),
            "--end-ds".into(),
            range.to.to_string(),
        ]);
    }
    let mut env = settings.executor.env.clone();
    if let Some(key) = key {
        env.insert("CHRONON_BUILD_KEY".into(), key.to_string());
    }
    CommandLine {
        argv,
        env,
        dir: repo.root.clone(),
    }
}

/// The job's environment from the team's and the config's settings for the
/// mode, as `zipline run` resolves it: defaults, then the team, then the
/// config, each common part before its per-mode part.
pub fn environment(repo: &Repo, config: &Config, mode: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let team = repo.teams.get(config.team());
    match repo.layout {
        Layout::Chronon => {
            let context = if config.meta().production {
                "production"
            } else {
                "dev"
            };
            for scope in [repo.teams.get("default"), team].into_iter().flatten() {
                merge(&mut env, scope.get("common_env"));
                merge(&mut env, per_mode(scope.get(context), mode));
            }
            merge(
                &mut env,
                per_mode(config.raw.pointer("/metaData/modeToEnvMap"), mode),
            );
        }
        Layout::Zipline => {
            let scopes = [
                team.and_then(|t| t.pointer("/metaData/executionInfo/env")),
                config.raw.pointer("/metaData/executionInfo/env"),
            ];
            for scope in scopes.into_iter().flatten() {
                merge(&mut env, scope.get("common"));
                merge(&mut env, per_mode(scope.get("modeEnvironments"), mode));
            }
        }
    }
    env
}

/// `map[mode]`, falling back to `map["backfill"]` for the modular join modes.
fn per_mode<'v>(map: Option<&'v Value>, mode: &str) -> Option<&'v Value> {
    let map = map?;
    map.get(mode).or_else(|| {
        mode.starts_with("backfill")
            .then(|| map.get("backfill"))
            .flatten()
    })
}

fn merge(env: &mut BTreeMap<String, String>, values: Option<&Value>) {
    let Some(Value::Object(map)) = values else {
        return;
    };
    for (k, v) in map {
        let v = match v {
            Value::String(s) => s.clone(),
            Value::Null => continue,
            other => other.to_string(),
        };
        env.insert(k.clone(), v);
    }
}

/// How a command is shown to people: each argument quoted when it would not
/// survive a shell as is. Only for display; nothing ever runs it in a shell.
pub fn display(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c));
            if plain {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
