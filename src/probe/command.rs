//! The `command` probe: a user program given the table prints
//! `partition<TAB>fingerprint` lines; in batch form (`warehouse.batch`),
//! one program per plan is given every table on standard input and prints
//! `table<TAB>partition<TAB>fingerprint` lines, so a warehouse behind a
//! slow client (a JVM, `bq`) costs one start, not one per table.

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
    /// One program for all tables: each table on a line of standard input
    /// as `table<TAB>partition_column<TAB>partition_format`.
    pub batch: bool,
}

impl Probe for CommandProbe {
    fn list(&self, table: &str) -> Result<Partitions, ProbeError> {
        if self.batch {
            let mut listed = self.list_batch(&[table.to_string()])?;
            return Ok(listed.pop().map(|(_, p)| p).unwrap_or_default());
        }
        self.list_one(table)
    }

    fn list_all(&self, tables: Vec<String>) -> Result<Vec<(String, Partitions)>, ProbeError> {
        if self.batch {
            return self.list_batch(&tables);
        }
        use rayon::prelude::*;
        tables
            .into_par_iter()
            .map(|t| self.list_one(&t).map(|p| (t, p)))
            .collect()
    }
}

impl CommandProbe {
    /// One run of the program for one table.
    fn list_one(&self, table: &str) -> Result<Partitions, ProbeError> {
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

    /// One run of the program for `tables`, in the order asked. A table
    /// the program prints nothing for has no partitions; a line for a table
    /// not asked for is an error (a typo would otherwise go unseen).
    fn list_batch(&self, tables: &[String]) -> Result<Vec<(String, Partitions)>, ProbeError> {
        let mut stdin = String::new();
        for table in tables {
            let layout = self.layouts.of(table);
            stdin.push_str(&format!(
                "{table}\t{}\t{}\n",
                layout.column,
                layout.format.pattern()
            ));
        }
        let command = CommandLine::filled(&self.argv, &[], Path::new("."));
        let argv = command.argv.clone();
        let shown = match tables {
            [one] => one.clone(),
            _ => format!("{} tables", tables.len()),
        };
        let fail = |message: String| ProbeError::Command {
            table: shown.clone(),
            argv: argv.clone(),
            message,
        };
        let output =
            command::run_captured(&command, stdin.as_bytes(), self.timeout).map_err(fail)?;
        if !output.status.success() {
            return Err(fail(format!("{}: {}", output.status, output.stderr_text())));
        }
        let stdout =
            String::from_utf8(output.stdout).map_err(|_| fail("output is not UTF-8".into()))?;
        let index: std::collections::HashMap<&str, usize> = tables
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), i))
            .collect();
        let mut out: Vec<Partitions> = vec![Partitions::new(); tables.len()];
        for (i, line) in stdout.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let bad = |message: String| ProbeError::BadLine {
                table: shown.clone(),
                argv: argv.clone(),
                line: i + 1,
                message,
            };
            let mut fields = line.splitn(3, '\t');
            let (Some(table), Some(partition), Some(fingerprint)) =
                (fields.next(), fields.next(), fields.next())
            else {
                return Err(bad("expected table<TAB>partition<TAB>fingerprint".into()));
            };
            let Some(&at) = index.get(table.trim()) else {
                return Err(bad(format!(
                    "{:?} is not a table that was asked for",
                    table.trim()
                )));
            };
            let layout = self.layouts.of(table.trim());
            let day = layout.format.parse_day(partition.trim()).ok_or_else(|| {
                bad(format!(
                    "expected a partition in the format {}",
                    layout.format
                ))
            })?;
            out[at].insert(day, Hash::of(fingerprint.trim().as_bytes()));
        }
        Ok(tables.iter().cloned().zip(out).collect())
    }
}
