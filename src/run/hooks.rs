//! Alerting hooks: `on_failure` once per failed job after its retries,
//! `on_success_run` once when a run ends well. Each is an argv run with
//! `CHRONON_BUILD_*` variables, its output in a log of its own, killed after
//! a timeout. A hook that fails is reported and changes nothing else: the
//! run's result and exit code are the run's.

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::exec::command::{self, CommandLine};

/// The hook commands of a run (empty: none).
#[derive(Clone, Debug, Default)]
pub struct HookCommands {
    pub on_failure: Vec<String>,
    pub on_success_run: Vec<String>,
    pub timeout: Duration,
}

/// Hooks of one run: failure hooks run in the background while the run goes
/// on; `finish` waits for them.
pub struct Hooks {
    commands: HookCommands,
    dir: PathBuf,
    running: Vec<JoinHandle<Option<String>>>,
    started: usize,
}

impl Hooks {
    /// `dir` is the run's log folder; hook logs go to `dir/hooks`.
    pub fn new(commands: HookCommands, dir: PathBuf) -> Hooks {
        Hooks {
            commands,
            dir,
            running: Vec::new(),
            started: 0,
        }
    }

    pub fn wants_success(&self) -> bool {
        !self.commands.on_success_run.is_empty()
    }

    /// Starts `on_failure` with these variables, when there is one.
    pub fn failure(&mut self, vars: Vec<(&'static str, String)>) {
        if self.commands.on_failure.is_empty() {
            return;
        }
        self.started += 1;
        let log = self
            .dir
            .join("hooks")
            .join(format!("on-failure.{}.log", self.started));
        let argv = self.commands.on_failure.clone();
        let timeout = self.commands.timeout;
        self.running.push(std::thread::spawn(move || {
            run_hook("on_failure", &argv, &vars, &log, timeout)
        }));
    }

    /// Runs `on_success_run` and waits for it.
    pub fn success_run(&mut self, vars: Vec<(&'static str, String)>) -> Option<String> {
        let argv = self.commands.on_success_run.clone();
        let log = self.dir.join("hooks").join("on-success-run.log");
        run_hook("on_success_run", &argv, &vars, &log, self.commands.timeout)
    }

    /// Waits for the failure hooks; returns what went wrong with them.
    pub fn finish(&mut self) -> Vec<String> {
        self.running
            .drain(..)
            .filter_map(|h| {
                h.join()
                    .unwrap_or_else(|_| Some("a hook thread panicked".into()))
            })
            .collect()
    }
}

/// Runs one hook to its end or its timeout (then its whole process group
/// is killed); `Some(problem)` when it did not exit 0.
fn run_hook(
    name: &str,
    argv: &[String],
    vars: &[(&'static str, String)],
    log: &Path,
    timeout: Duration,
) -> Option<String> {
    let problem = |what: String| {
        Some(format!(
            "{name} hook {argv:?}: {what} (log: {})",
            log.display()
        ))
    };
    let command = CommandLine {
        argv: argv.to_vec(),
        env: vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        dir: PathBuf::from("."),
    };
    match command::run_logged(&command, log, timeout) {
        Ok(Some(status)) if status.success() => None,
        Ok(Some(status)) => problem(format!("exited with {status}")),
        Ok(None) => problem(format!(
            "killed after its timeout of {}s",
            timeout.as_secs()
        )),
        Err(e) => problem(e),
    }
}
