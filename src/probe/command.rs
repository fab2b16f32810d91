//! The `command` probe: a user program given the table prints
//! `partition<TAB>fingerprint` lines.

use std::path::Path;

use super::{Layouts, Partitions, Probe, ProbeError};
use crate::exec::command::{self, CommandLine};
use crate::hash::Hash;

/// A user program: `{table}`, `{partition_column}` and `{partition_format}`
/// in its argv are the table and its layout, also given in the environment
/// as `CHRONON_BUILD_PARTITION_COLUMN` and `CHRONON_BUILD_PARTITION_FORMAT`;
/// it prints partition values in that format.
pub struct CommandProbe {
    pub argv: Vec<String>,
    pub layouts: Layouts,
    pub timeout: std::time::Duration,
}

impl Probe for CommandProbe {
    fn list(&self, table: &str) -> Result<Partitions, ProbeError> {
        let layout = self.layouts.of(table);
        let vars = [
            ("table", table),
            ("partition_column", layout.column.as_str()),
            ("partition_format", layout.format.pattern()),
        ];
        let command = CommandLine::filled(&self.argv, &vars, Path::new("."))
            .with_env("CHRONON_BUILD_PARTITION_COLUMN", &layout.column)
            .with_env("CHRONON_BUILD_PARTITION_FORMAT", layout.format.pattern());
        let argv = command.argv.clone();
        let fail = |message: String| ProbeError::Command {
            table: table.to_string(),
            argv: argv.clone(),
            message,
        };
        let output = command::run_captured(&command, b"", self.timeout).map_err(fail)?;
        if !output.status.success() {
            return Err(fail(format!("{}: {}", output.status, output.stderr_text())));
        }
        let stdout =
            String::from_utf8(output.stdout).map_err(|_| fail("output is not UTF-8".into()))?;
        let mut out = Partitions::new();
        for (i, line) in stdout.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let bad = |message: &str| ProbeError::BadLine {
                table: table.to_string(),
                argv: argv.clone(),
                line: i + 1,
                message: message.to_string(),
            };
            let (partition, fingerprint) = line
                .split_once('\t')
                .ok_or_else(|| bad("expected partition<TAB>fingerprint"))?;
            let day = layout.format.parse_day(partition.trim()).ok_or_else(|| {
                bad(&format!(
                    "expected a partition in the format {}",
                    layout.format
                ))
            })?;
            out.insert(day, Hash::of(fingerprint.trim().as_bytes()));
        }
        Ok(out)
    }
}
