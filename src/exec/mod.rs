//! What a job runs: the argv and environment for one node over one
//! partition range, for the local engine or a real CLI (`interface`: one
//! argv table per CLI; `env`: the environment as that CLI computes it).
//! Always an argv array, never a shell string: config names come from pull
//! requests.
//!
//! `chronon-build.toml` can replace a step's argv after the program under
//! `[executor.templates]`, or give a whole command under
//! `[executor.commands]` (for steps the CLI lacks). Placeholders are
//! substituted per argument, so a value can never split into two arguments
//! or reach a shell.

pub(crate) mod command;
pub(crate) mod env;
pub(crate) mod interface;
pub(crate) mod partitioning;
pub(crate) mod ranges;
pub(crate) mod spawn;
pub(crate) mod watch;

use std::collections::BTreeMap;

pub use command::CommandLine;
use command::display;

use crate::config::Repo;
use crate::graph::Node;
use crate::hash::Hash;
use crate::partition::DayRange;
use crate::settings::SettingsError;
use crate::settings::{ExecutorKind, Savepoint, Settings};

pub use interface::{Interface, takes_range};

/// The executor of a run: the local engine, or a real CLI whose interface
/// is known (set, or detected once for the run).
pub struct Executor<'a> {
    repo: &'a Repo,
    settings: &'a Settings,
    /// `None` for the local executor.
    interface: Option<Interface>,
    /// How the interface was decided, for the run log and `--dry-run`.
    origin: String,
}

impl<'a> Executor<'a> {
    /// Resolves `executor.cli`; `auto` runs `program --help` once.
    pub fn new(repo: &'a Repo, settings: &'a Settings) -> Result<Executor<'a>, SettingsError> {
        let exec = &settings.executor;
        let (interface, origin) = match exec.kind {
            ExecutorKind::Local => (None, "local engine".to_string()),
            ExecutorKind::Zipline => match Interface::from_setting(exec.cli) {
                Some(i) => (Some(i), "executor.cli".to_string()),
                None => {
                    let found =
                        interface::detect(&exec.program, &repo.root).map_err(SettingsError)?;
                    let shown = display(&[&exec.program[..], &["--help".to_string()]].concat());
                    (Some(found), format!("detected from `{shown}`"))
                }
            },
        };
        if let Some(i) = interface
            && !i.is_zipline()
        {
            let refuse = |field: &str| {
                Err(SettingsError(format!(
                    "{field}: airbnb's run.py (executor.cli = chronon) has no such option; \
                     the Driver would reject it. Remove it, or pass it through executor.extra_args \
                     if your run.py wrapper takes it"
                )))
            };
            if exec.artifact_prefix.is_some() {
                return refuse("executor.artifact_prefix");
            }
            if settings.streaming.flink_state_uri.is_some() {
                return refuse("streaming.flink_state_uri");
            }
            if settings.streaming.savepoint != Savepoint::None {
                return refuse("streaming.savepoint");
            }
        }
        Ok(Executor {
            repo,
            settings,
            interface,
            origin,
        })
    }

    /// For runs that start no job (`adopt`): asks no program.
    pub fn idle(repo: &'a Repo, settings: &'a Settings) -> Executor<'a> {
        Executor {
            repo,
            settings,
            interface: None,
            origin: "no job is started".into(),
        }
    }

    pub fn interface(&self) -> Option<Interface> {
        self.interface
    }

    /// One line for the run log and the `--dry-run` header.
    pub fn describe(&self) -> String {
        match self.interface {
            None => "executor: local engine".into(),
            Some(i) => format!(
                "executor: {} ({}), cli {i} ({})",
                self.settings.executor.kind_name(),
                display(&self.settings.executor.program),
                self.origin
            ),
        }
    }

    /// The argv after the program for a template key: the settings'
    /// template, else the interface's.
    fn template(&self, key: &str) -> Option<(Vec<String>, bool)> {
        let exec = &self.settings.executor;
        if let Some(command) = exec.commands.get(key) {
            return Some((command.clone(), true));
        }
        if let Some(t) = exec.templates.get(key) {
            return Some((t.clone(), false));
        }
        self.interface?.template(key).map(|t| (t, false))
    }

    /// Refuses, before anything runs, a job whose step the CLI has no mode
    /// for and the settings give no command: (label, template key) pairs.
    pub fn check<'n>(
        &self,
        jobs: impl IntoIterator<Item = (String, &'n str)>,
    ) -> Result<(), SettingsError> {
        let Some(interface) = self.interface else {
            return Ok(());
        };
        for (label, key) in jobs {
            if self.template(key).is_none() {
                return Err(SettingsError(format!(
                    "{label}: the {} CLI has no mode for {key}; give the command under \
                     [executor.commands] (e.g. {key} = [\"my-kv-upload\", \"{{conf}}\", \"{{ds}}\"]), \
                     or leave it out with --step",
                    interface.name()
                )));
            }
        }
        Ok(())
    }

    /// The command for one job: `node` over `range` (`None` for
    /// unpartitioned steps), or the whole join when `whole_join` is set.
    pub fn command(
        &self,
        node: &Node,
        range: Option<DayRange>,
        whole_join: bool,
        key: Option<Hash>,
    ) -> CommandLine {
        let (repo, settings) = (self.repo, self.settings);
        let Some(interface) = self.interface else {
            return local_command(repo, settings, node, range, key);
        };
        let config = &repo.configs[node.config];
        let exec = &settings.executor;
        let template_key = interface::template_key(node.step, whole_join);
        let (template, whole_command) = self
            .template(template_key)
            .unwrap_or_else(|| (Vec::new(), false));
        let (start, end) = match range {
            Some(r) => (r.from.to_string(), r.to.to_string()),
            None => (String::new(), String::new()),
        };
        let vars = [
            ("conf", config.path.as_str()),
            ("config", node.name.as_str()),
            ("start_ds", start.as_str()),
            ("end_ds", end.as_str()),
            ("ds", end.as_str()),
            ("part", node.part.as_deref().unwrap_or_default()),
            ("output", node.output.as_deref().unwrap_or_default()),
            ("log_table", settings.consistency.log_table.as_str()),
            ("schema_table", settings.consistency.schema_table.as_str()),
        ];
        let fill = |arg: &str| command::fill(arg, &vars);
        let mut argv: Vec<String> = if whole_command {
            Vec::new()
        } else {
            exec.program.clone()
        };
        argv.extend(template.iter().map(|a| fill(a)));
        if !whole_command {
            argv.extend(self.step_options(interface, template_key));
            if let Some(prefix) = &exec.artifact_prefix {
                argv.extend(["--artifact-prefix".into(), prefix.clone()]);
            }
            if let Some(version) = &exec.version {
                argv.extend(["--version".into(), version.clone()]);
            }
            argv.extend(exec.extra_args.iter().map(|a| fill(a)));
        }

        let cli_mode = interface::key_mode(template_key);
        // What the CLI would set itself, less what the runner's environment
        // (the operator's) or `executor.env` already has: theirs win.
        let mut env: BTreeMap<String, String> = env::environment(interface, repo, config, cli_mode)
            .into_iter()
            .filter(|(k, _)| std::env::var_os(k).is_none() && !exec.env.contains_key(k))
            .collect();
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

    /// Options from the settings that a step's mode takes.
    fn step_options(&self, interface: Interface, key: &str) -> Vec<String> {
        let settings = self.settings;
        let mut out = Vec::new();
        if key == "upload-to-kv" && interface.is_zipline() {
            out.extend(["--uploader".into(), settings.executor.uploader.clone()]);
        }
        if key == "group-by-streaming" {
            let streaming = &settings.streaming;
            if let Some(kafka) = &streaming.kafka_bootstrap {
                out.extend(["--kafka-bootstrap".into(), kafka.clone()]);
            }
            if let Some(parallelism) = streaming.parallelism {
                out.extend(["--parallelism".into(), parallelism.to_string()]);
            }
            if interface.is_zipline() {
                if let Some(uri) = &streaming.flink_state_uri {
                    out.extend(["--flink-state-uri".into(), uri.clone()]);
                }
                match &streaming.savepoint {
                    Savepoint::None => out.push("--no-savepoint".into()),
                    Savepoint::Latest => out.push("--latest-savepoint".into()),
                    Savepoint::Custom(uri) => {
                        out.extend(["--custom-savepoint".into(), uri.clone()])
                    }
                }
            }
        }
        out
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
        // Only this config is loaded: a job costs the same in a repository
        // of ten configs or of ten thousand.
        "--conf".into(),
        repo.configs[node.config].path.clone(),
    ];
    if let Some(part) = &node.part {
        argv.extend(["--part".into(), part.clone()]);
    }
    if let Some(range) = range {
        argv.extend([
            "--from".into(),
            range.from.to_string(),
            "--until".into(),
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
