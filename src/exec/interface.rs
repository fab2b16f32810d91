//! The real CLIs the zipline executor drives, and each one's argv per step:
//! one table per interface, not conditions spread through the code.
//!
//! - `zipline`: zipline-ai >= 1.0.13, `zipline run CONF ...` (click). CONF is
//!   positional and must come first: with `ignore_unknown_options`, the
//!   first bare token is bound to CONF, so `--conf C` would make "--conf"
//!   the config path. Unknown options (`--selected-join-parts P
//!   --use-cached-left`, `--log-table`, `--schema-table`) pass through to
//!   the Scala Driver. (sardine-ai/zipline-chronon
//!   `python/src/ai/chronon/repo/run.py`: `@click.argument("conf")`, and
//!   `constants.py` `MODE_ARGS`/`ROUTES`.)
//! - `zipline-1.0`: zipline-ai before 1.0.13 (e.g. 1.0.5): `--conf C` is an
//!   option; otherwise the same modes. The wheels on PyPI show where it
//!   changed: zipline-ai 1.0.12 `ai/chronon/repo/run.py` line 111 has
//!   `"--conf", required=True`, 1.0.13 line 110 `@click.argument("conf")`.
//! - `chronon`: airbnb's `run.py` (chronon-ai, argparse,
//!   `api/py/ai/chronon/repo/run.py`): `--mode` is one of its `MODE_ARGS`
//!   keys, which have no `upload-to-kv` and no `build-comparison-table`, and
//!   it has no `--artifact-prefix`, `--uploader`, `--flink-state-uri` or
//!   savepoint options (unknown ones would reach the Driver, which rejects
//!   them). Steps it lacks run through `executor.commands`.
//! - `label-join` runs only through airbnb's run.py (`--mode label-join
//!   --ds LABEL_DS`): Zipline's Driver has no such subcommand.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use crate::graph::Step;
use crate::settings::CliSetting;

/// The template key for a whole-join `backfill`.
pub const JOIN_BACKFILL: &str = "join-backfill";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interface {
    Zipline,
    Zipline10,
    Chronon,
}

impl fmt::Display for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Interface::Zipline => "zipline (zipline-ai >= 1.0.13: positional CONF)",
            Interface::Zipline10 => "zipline-1.0 (zipline-ai < 1.0.13: --conf)",
            Interface::Chronon => "chronon (airbnb's run.py)",
        })
    }
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

/// The CLI mode a step runs as; `whole` joins run as one `backfill`.
pub fn mode(step: Step) -> &'static str {
    match step {
        Step::StagingQuery | Step::GroupByBackfill | Step::JoinPart => "backfill",
        Step::JoinLeft => "backfill-left",
        Step::JoinFinal => "backfill-final",
        Step::LabelJoin => "label-join",
        Step::GroupByUpload => "upload",
        Step::UploadToKv => "upload-to-kv",
        Step::GroupByStreaming => "streaming",
        Step::MetadataUpload => "metadata-upload",
        Step::LogFlattener => "log-flattener",
        Step::BuildComparisonTable => "build-comparison-table",
        Step::ConsistencyMetricsCompute => "consistency-metrics-compute",
    }
}

/// Whether a join step runs as one `backfill` of the whole join
/// (`executor.joins = "whole"`).
pub fn whole_join(joins: crate::settings::JoinMode, step: Step) -> bool {
    joins == crate::settings::JoinMode::Whole
        && matches!(step, Step::JoinLeft | Step::JoinPart | Step::JoinFinal)
}

/// The template key of a job: the step's name, or `join-backfill`.
pub fn template_key(step: Step, whole_join: bool) -> &'static str {
    if whole_join {
        JOIN_BACKFILL
    } else {
        step.name()
    }
}

/// The mode of a template key.
pub fn key_mode(key: &str) -> &'static str {
    match Step::parse(key) {
        Some(step) => mode(step),
        None => "backfill",
    }
}

impl Interface {
    pub fn from_setting(setting: CliSetting) -> Option<Interface> {
        match setting {
            CliSetting::Auto => None,
            CliSetting::Zipline => Some(Interface::Zipline),
            CliSetting::Zipline10 => Some(Interface::Zipline10),
            CliSetting::Chronon => Some(Interface::Chronon),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Interface::Zipline => "zipline",
            Interface::Zipline10 => "zipline-1.0",
            Interface::Chronon => "chronon",
        }
    }

    /// The argv after the program for a template key, or `None` when the
    /// CLI has no mode for it. Options the settings add (uploader, streaming)
    /// come after, from `exec::command`.
    pub fn template(self, key: &str) -> Option<Vec<String>> {
        let mode = key_mode(key);
        if self == Interface::Chronon && matches!(mode, "upload-to-kv" | "build-comparison-table") {
            return None;
        }
        // zipline-ai's CLI still routes `label-join`, but its Driver dropped
        // the subcommand (sardine-ai/zipline-chronon commit 6298d39d,
        // 2025-07-17, "Removed deprecated label join functionality"; before,
        // it ran LabelJoinV2, whose tables are not airbnb's).
        if self != Interface::Chronon && mode == "label-join" {
            return None;
        }
        let mut args: Vec<&str> = match self {
            Interface::Zipline => vec!["{conf}", "--mode", mode],
            Interface::Zipline10 | Interface::Chronon => vec!["--mode", mode, "--conf", "{conf}"],
        };
        let step = Step::parse(key);
        if step == Some(Step::JoinPart) {
            args.extend(["--selected-join-parts", "{part}", "--use-cached-left"]);
        }
        if step == Some(Step::LogFlattener) {
            args.extend([
                "--log-table",
                "{log_table}",
                "--schema-table",
                "{schema_table}",
            ]);
        }
        match step {
            None => args.extend(["--start-ds", "{start_ds}", "--end-ds", "{end_ds}"]),
            Some(s) if takes_range(s) => {
                args.extend(["--start-ds", "{start_ds}", "--end-ds", "{end_ds}"])
            }
            Some(Step::MetadataUpload) => {}
            Some(Step::GroupByStreaming) if self != Interface::Chronon => {
                args.extend(["--streaming-mode", "deploy"])
            }
            Some(Step::GroupByStreaming) => {}
            Some(_) => args.extend(["--ds", "{ds}"]),
        }
        Some(args.into_iter().map(str::to_string).collect())
    }

    /// Whether the CLI has the Zipline-only options (`--artifact-prefix`,
    /// `--uploader`, `--flink-state-uri`, savepoints).
    pub fn is_zipline(self) -> bool {
        self != Interface::Chronon
    }
}

/// How long `auto` waits for the program's help.
const DETECT_TIMEOUT: Duration = Duration::from_secs(120);

/// `auto`: runs `program --help` once and reads which CLI answered.
/// Returns the interface and the command shown to people.
pub fn detect(program: &[String], dir: &Path) -> Result<Interface, String> {
    let shown = crate::exec::command::display(&[program, &["--help".to_string()]].concat());
    let text = help_text(program, dir).map_err(|e| {
        format!("executor.cli = \"auto\": cannot run `{shown}` to tell which CLI it is: {e}; set executor.cli to \"zipline\", \"zipline-1.0\" or \"chronon\"")
    })?;
    classify(&text).ok_or_else(|| {
        let head: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).take(6).collect();
        format!(
            "executor.cli = \"auto\": `{shown}` printed no help of a known CLI (zipline-ai's \
             `run [OPTIONS] CONF` or `--conf`, or airbnb's run.py `usage: run.py`); it printed:\n  {}\n\
             set executor.cli to \"zipline\", \"zipline-1.0\" or \"chronon\"",
            if head.is_empty() {
                "(nothing)".to_string()
            } else {
                head.join("\n  ")
            }
        )
    })
}

/// Which CLI printed this help.
/// - zipline-ai >= 1.0.13 (click): `Usage: zipline run [OPTIONS] CONF`;
/// - zipline-ai 1.0.x (click): `Usage: zipline run [OPTIONS]` and `--conf TEXT`;
/// - airbnb's run.py (argparse): `usage: run.py [-h] [--conf CONF] ...
///   --mode {backfill,...}`.
pub fn classify(help: &str) -> Option<Interface> {
    let click = help.contains("Usage:");
    let argparse = help.contains("usage:") && help.contains("--mode {");
    let conf_option = help.contains("--conf TEXT") || help.contains("--conf CONF");
    if click && help.contains("[OPTIONS] CONF") {
        Some(Interface::Zipline)
    } else if click && conf_option {
        Some(Interface::Zipline10)
    } else if argparse && conf_option {
        Some(Interface::Chronon)
    } else {
        None
    }
}

/// What `program --help` prints (stdout and stderr), through the runner's
/// own process start: its own process group, killed whole at the timeout.
fn help_text(program: &[String], dir: &Path) -> Result<String, String> {
    let log = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    let command = crate::exec::CommandLine {
        argv: [program, &["--help".to_string()]].concat(),
        env: Default::default(),
        dir: dir.to_path_buf(),
    };
    if crate::exec::command::run_logged(&command, log.path(), DETECT_TIMEOUT)?.is_none() {
        return Err(format!("no answer within {}s", DETECT_TIMEOUT.as_secs()));
    }
    let text = std::fs::read(log.path()).map_err(|e| e.to_string())?;
    // The log's first line is the command itself.
    let text = String::from_utf8_lossy(&text);
    Ok(text
        .split_once('\n')
        .map_or("", |(_, rest)| rest)
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chronon_lacks_kv_upload_and_comparison() {
        assert!(Interface::Chronon.template("upload-to-kv").is_none());
        assert!(
            Interface::Chronon
                .template("build-comparison-table")
                .is_none()
        );
        assert!(Interface::Zipline.template("upload-to-kv").is_some());
    }

    #[test]
    fn zipline_puts_the_positional_conf_first() {
        let argv = Interface::Zipline.template("join-part").unwrap();
        assert_eq!(argv[0], "{conf}");
        assert!(!argv.iter().any(|a| a == "--conf"));
        let argv = Interface::Zipline10.template("join-part").unwrap();
        assert_eq!(&argv[..4], ["--mode", "backfill", "--conf", "{conf}"]);
    }
}
