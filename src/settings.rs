//! `chronon-build.toml` at the config repository root. Every setting is
//! optional and has a default; command-line flags override them. Unknown keys
//! are errors, so a typo does not silently fall back to a default.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::Error;
use crate::partition::Day;

pub const FILE_NAME: &str = "chronon-build.toml";

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// No partition before this day is wanted, whatever the configs say.
    pub start: Option<Day>,
    #[serde(default)]
    pub state: StateSettings,
    #[serde(default)]
    pub warehouse: WarehouseSettings,
    #[serde(default)]
    pub consistency: ConsistencySettings,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSettings {
    /// Relative paths are relative to the repository root.
    #[serde(default = "default_state_path")]
    pub path: PathBuf,
}

impl Default for StateSettings {
    fn default() -> Self {
        StateSettings {
            path: default_state_path(),
        }
    }
}

fn default_state_path() -> PathBuf {
    PathBuf::from(".chronon-build/state.db")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum WarehouseKind {
    /// `ROOT/<ns>.db/<table>/ds=YYYY-MM-DD/...`
    #[default]
    HiveDir,
    /// A user program that prints `partition<TAB>fingerprint` lines.
    Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum FingerprintMode {
    /// Sorted (relative path, size, modification time) of the files.
    #[default]
    Listing,
    /// File contents: slower, but immune to rewrites of identical data.
    Content,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarehouseSettings {
    #[serde(default)]
    pub kind: WarehouseKind,
    /// Hive-dir root; relative paths are relative to the repository root.
    #[serde(default = "default_warehouse_root")]
    pub root: PathBuf,
    #[serde(default)]
    pub fingerprint: FingerprintMode,
    #[serde(default = "default_partition_column")]
    pub partition_column: String,
    /// For `kind = "command"`: argv, with `{table}` replaced by the table.
    #[serde(default)]
    pub command: Vec<String>,
}

impl Default for WarehouseSettings {
    fn default() -> Self {
        WarehouseSettings {
            kind: WarehouseKind::default(),
            root: default_warehouse_root(),
            fingerprint: FingerprintMode::default(),
            partition_column: default_partition_column(),
            command: Vec::new(),
        }
    }
}

fn default_warehouse_root() -> PathBuf {
    PathBuf::from("warehouse")
}

fn default_partition_column() -> String {
    "ds".into()
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencySettings {
    /// The online request log that `log-flattener` reads.
    #[serde(default = "default_log_table")]
    pub log_table: String,
    #[serde(default = "default_schema_table")]
    pub schema_table: String,
}

impl Default for ConsistencySettings {
    fn default() -> Self {
        ConsistencySettings {
            log_table: default_log_table(),
            schema_table: default_schema_table(),
        }
    }
}

fn default_log_table() -> String {
    "default.chronon_log_table".into()
}

fn default_schema_table() -> String {
    "default.chronon_schema_table".into()
}

impl Settings {
    /// Reads `chronon-build.toml` from the repository root; absent means
    /// defaults.
    pub fn load(repo_root: &Path) -> Result<Settings, Error> {
        let path = repo_root.join(FILE_NAME);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::default()),
            Err(e) => {
                return Err(Error::Settings(format!(
                    "{}: cannot read: {e}",
                    path.display()
                )));
            }
        };
        let settings: Settings = toml::from_str(&text).map_err(|e| {
            Error::Settings(format!("{}: {}", path.display(), e.to_string().trim_end()))
        })?;
        if settings.warehouse.kind == WarehouseKind::Command
            && settings.warehouse.command.is_empty()
        {
            return Err(Error::Settings(format!(
                "{}: warehouse.command: expected an argv array such as [\"probe\", \"{{table}}\"] when warehouse.kind = \"command\"",
                path.display()
            )));
        }
        Ok(settings)
    }

    pub fn resolve(&self, repo_root: &Path, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            repo_root.join(path)
        }
    }
}
