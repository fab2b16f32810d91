//! `chronon-build.toml` at the config repository root. Every setting is
//! optional and has a default; command-line flags override them. Unknown keys
//! are errors, so a typo does not silently fall back to a default.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::partition::Day;

mod bounds;

pub use bounds::{BoundSettings, JobBounds};

/// A bad `chronon-build.toml`, or a setting that does not fit the
/// repository: the message names the file and the field.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(pub String);

mod state;
pub use state::StateSettings;

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
    #[serde(default)]
    pub executor: ExecutorSettings,
    #[serde(default)]
    pub limits: LimitSettings,
    #[serde(default)]
    pub retry: RetrySettings,
    #[serde(default)]
    pub streaming: StreamingSettings,
    #[serde(default)]
    pub hooks: HookSettings,
    #[serde(default)]
    pub bounds: BoundSettings,
}

/// How jobs are run: the `zipline` CLI's argv, built from templates.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutorSettings {
    /// `local`: the built-in engine computes each step on the embedded
    /// warehouse. `zipline`: jobs run the `zipline` CLI (Spark, Flink).
    #[serde(default)]
    pub kind: ExecutorKind,
    /// For `local`: the KV store `upload-to-kv` fills and `fetch` reads.
    #[serde(default = "default_kv")]
    pub kv: PathBuf,
    /// The program and the arguments before the mode, e.g. `["zipline", "run"]`.
    #[serde(default = "default_program")]
    pub program: Vec<String>,
    /// Which real CLI `program` is: `zipline` (zipline-ai >= 1.0.13,
    /// positional CONF), `zipline-1.0` (`--conf`), `chronon` (airbnb's
    /// `run.py`), or `auto`: ask the program once per run.
    #[serde(default)]
    pub cli: CliSetting,
    /// Per step, a whole command (program included) for steps the CLI has
    /// no mode for, e.g. `upload-to-kv` under airbnb's `run.py`. Same
    /// placeholders as `templates`.
    #[serde(default)]
    pub commands: std::collections::BTreeMap<String, Vec<String>>,
    /// `--artifact-prefix P` on every command, when set.
    pub artifact_prefix: Option<String>,
    /// `--version V` on every command, when set.
    pub version: Option<String>,
    /// Appended to every command.
    #[serde(default)]
    pub extra_args: Vec<String>,
    /// Per step, the arguments after the program, replacing the built-in
    /// template. Placeholders: `{conf}`, `{config}`, `{start_ds}`,
    /// `{end_ds}`, `{ds}`, `{part}`, `{output}`, `{log_table}`,
    /// `{schema_table}`.
    #[serde(default)]
    pub templates: std::collections::BTreeMap<String, Vec<String>>,
    /// `modular`: `backfill-left`, one `backfill --selected-join-parts` per
    /// part, `backfill-final`. `whole`: one `backfill` per join.
    #[serde(default)]
    pub joins: JoinMode,
    /// The longest range one backfill job covers, unless the config's
    /// `executionInfo.stepDays` says otherwise.
    #[serde(default = "default_step_days")]
    pub step_days: u32,
    /// Kill a job that runs longer, e.g. `"6h"`.
    #[serde(default, deserialize_with = "duration::optional")]
    pub timeout: Option<std::time::Duration>,
    /// `--uploader` for `upload-to-kv`.
    #[serde(default = "default_uploader")]
    pub uploader: String,
    /// Extra environment for every job.
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
}

impl ExecutorSettings {
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            ExecutorKind::Local => "local",
            ExecutorKind::Zipline => "zipline",
        }
    }
}

impl Default for ExecutorSettings {
    fn default() -> Self {
        ExecutorSettings {
            kind: ExecutorKind::default(),
            kv: default_kv(),
            program: default_program(),
            cli: CliSetting::default(),
            commands: Default::default(),
            artifact_prefix: None,
            version: None,
            extra_args: Vec::new(),
            templates: Default::default(),
            joins: JoinMode::default(),
            step_days: default_step_days(),
            timeout: None,
            uploader: default_uploader(),
            env: Default::default(),
        }
    }
}

/// `executor.cli`: which real CLI the zipline executor drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
pub enum CliSetting {
    #[default]
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "zipline")]
    Zipline,
    #[serde(rename = "zipline-1.0")]
    Zipline10,
    #[serde(rename = "chronon")]
    Chronon,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ExecutorKind {
    #[default]
    Local,
    Zipline,
}

fn default_kv() -> PathBuf {
    PathBuf::from(".chronon-build/kv.sqlite")
}

fn default_program() -> Vec<String> {
    vec!["zipline".into(), "run".into()]
}

fn default_step_days() -> u32 {
    30
}

fn default_uploader() -> String {
    "spark".into()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum JoinMode {
    #[default]
    Modular,
    Whole,
}

/// How many jobs run at once: overall, per step kind and per team.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// Overall; `-j` overrides it. Default: the number of CPUs.
    pub jobs: Option<usize>,
    /// Step name to limit, e.g. `group-by-backfill = 300`.
    #[serde(default)]
    pub steps: std::collections::BTreeMap<String, usize>,
    /// Team name to limit.
    #[serde(default)]
    pub teams: std::collections::BTreeMap<String, usize>,
}

/// Retries of a failed job, with exponential backoff.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    /// Retries after the first attempt.
    #[serde(default)]
    pub retries: u32,
    /// The delay before the first retry; each next one doubles it.
    #[serde(default = "default_backoff", deserialize_with = "duration::required")]
    pub backoff: std::time::Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            retries: 0,
            backoff: default_backoff(),
        }
    }
}

fn default_backoff() -> std::time::Duration {
    std::time::Duration::from_secs(30)
}

/// Alerting: commands a run starts when targets fail or when it ends well.
/// Both are argv arrays; details come in `CHRONON_BUILD_*` environment
/// variables (see the README).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookSettings {
    /// Run once per failed job (a target range) after its retries are
    /// exhausted. `run --on-failure PROGRAM` overrides it.
    #[serde(default)]
    pub on_failure: Vec<String>,
    /// Run once when a run ends with result `ok`. `run --on-success-run
    /// PROGRAM` overrides it.
    #[serde(default)]
    pub on_success_run: Vec<String>,
    /// A hook running longer is killed, e.g. `"30s"`.
    #[serde(
        default = "default_hook_timeout",
        deserialize_with = "duration::required"
    )]
    pub timeout: std::time::Duration,
}

impl Default for HookSettings {
    fn default() -> Self {
        HookSettings {
            on_failure: Vec::new(),
            on_success_run: Vec::new(),
            timeout: default_hook_timeout(),
        }
    }
}

fn default_hook_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(60)
}

/// Streaming keep-alive.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamingSettings {
    /// Argv with `{config}`; prints `running HASH` when the group-by's job
    /// runs with that config hash, anything else (or nothing) when not.
    #[serde(default)]
    pub status_command: Vec<String>,
    /// A status command running longer is killed, and the plan fails
    /// naming it, e.g. `"60s"`.
    #[serde(
        default = "default_status_timeout",
        deserialize_with = "duration::required"
    )]
    pub status_timeout: std::time::Duration,
    /// `--kafka-bootstrap` for deploys, when set.
    pub kafka_bootstrap: Option<String>,
    /// `--flink-state-uri` for deploys, when set.
    pub flink_state_uri: Option<String>,
    /// The savepoint a deploy starts from: `none` (`--no-savepoint`, as in
    /// Zipline's documented deploy), `latest` (`--latest-savepoint`) or
    /// `custom:URI` (`--custom-savepoint URI`). Zipline's Flink submitter
    /// refuses a deploy without one.
    #[serde(default)]
    pub savepoint: Savepoint,
    /// `--parallelism N` for deploys, when set.
    pub parallelism: Option<u32>,
}

impl Default for StreamingSettings {
    fn default() -> Self {
        StreamingSettings {
            status_command: Vec::new(),
            status_timeout: default_status_timeout(),
            kafka_bootstrap: None,
            flink_state_uri: None,
            savepoint: Savepoint::default(),
            parallelism: None,
        }
    }
}

fn default_status_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(60)
}

/// `streaming.savepoint`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Savepoint {
    #[default]
    None,
    Latest,
    Custom(String),
}

impl<'de> Deserialize<'de> for Savepoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Savepoint, D::Error> {
        let text = String::deserialize(d)?;
        match text.as_str() {
            "none" => Ok(Savepoint::None),
            "latest" => Ok(Savepoint::Latest),
            other => match other.strip_prefix("custom:") {
                Some(uri) if !uri.is_empty() => Ok(Savepoint::Custom(uri.to_string())),
                _ => Err(serde::de::Error::custom(format!(
                    "expected \"none\", \"latest\" or \"custom:URI\", got {text:?}"
                ))),
            },
        }
    }
}

/// Durations such as `90s`, `5m`, `2h`, `1h30m` or `1d` (`humantime`'s
/// syntax), at most `MAX` (366 days): a timeout, backoff or wait beyond a
/// year is a typo, and a deadline must stay a valid instant.
pub(crate) mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub const MAX: Duration = Duration::from_secs(366 * 86_400);

    pub fn parse(text: &str) -> Result<Duration, String> {
        let value = humantime::parse_duration(text.trim()).map_err(|e| {
            format!("expected a duration such as 90s, 5m, 2h or 1h30m, got {text:?} ({e})")
        })?;
        if value > MAX {
            return Err(format!(
                "{text:?} is longer than the longest duration taken, 366d"
            ));
        }
        Ok(value)
    }

    pub fn required<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(serde::de::Error::custom)
    }

    pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| parse(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum WarehouseKind {
    /// The embedded warehouse: `ROOT/<ns>.sqlite`, with a partition catalog.
    #[default]
    Sqlite,
    /// `ROOT/<ns>.db/<table>/ds=YYYY-MM-DD/...`
    HiveDir,
    /// A user program that prints `partition<TAB>fingerprint` lines.
    Command,
    /// Iceberg tables, read from their own metadata: through a SQL or REST
    /// catalog (`catalog_uri`), or found by path under `root`.
    Iceberg,
    /// Delta Lake tables at `ROOT/<ns>.db/<table>` (or `tables`), read from
    /// their `_delta_log`.
    Delta,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum FingerprintMode {
    /// Sorted (relative path, size, modification time) of the files.
    #[default]
    Listing,
    /// File contents: slower, but immune to rewrites of identical data.
    Content,
    /// The partition folder's own metadata (modification and change times,
    /// inode): one stat per partition, as ninja stats an output. It sees
    /// files added, removed or renamed in the folder (every Spark or Hive
    /// write), not a file rewritten in place.
    Folder,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarehouseSettings {
    #[serde(default)]
    pub kind: WarehouseKind,
    /// The warehouse folder; relative paths are relative to the repository
    /// root. Default: `.chronon-build/warehouse` for `sqlite`, `warehouse`
    /// for `hive-dir`, `iceberg` and `delta`. For `iceberg` and `delta` also
    /// a `gs://` or `s3://` URL (`warehouse` is accepted as its name, as
    /// Iceberg catalogs call it).
    #[serde(default, alias = "warehouse")]
    pub root: Option<PathBuf>,
    /// For `iceberg`: the catalog that names each table's current metadata
    /// file: `sqlite:///path/catalog.db` or `postgresql://...` (the SQL
    /// catalog's `iceberg_tables`, as pyiceberg and Java's JdbcCatalog
    /// write it), or `http(s)://...` (a REST catalog). Absent: tables are
    /// found by path, `ROOT/<ns>.db/<table>/metadata/`.
    #[serde(default)]
    pub catalog_uri: Option<String>,
    /// For `iceberg`: the catalog's name (`iceberg_tables.catalog_name`; a
    /// REST catalog's warehouse).
    #[serde(default = "default_catalog_name")]
    pub catalog_name: String,
    /// For `iceberg` and `delta`: tables that live elsewhere than
    /// `ROOT/<ns>.db/<table>`, by name: `"ns.t" = "gs://bucket/path/t"`.
    #[serde(default)]
    pub tables: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub fingerprint: FingerprintMode,
    #[serde(default = "default_partition_column")]
    pub partition_column: String,
    /// For `kind = "command"`: argv, with `{table}` replaced by the table.
    #[serde(default)]
    pub command: Vec<String>,
    /// For `kind = "command"`: one run of `command` per plan, given every
    /// table on standard input (`table<TAB>partition_column<TAB>format`
    /// lines) and printing `table<TAB>partition<TAB>fingerprint` lines.
    #[serde(default)]
    pub batch: bool,
    /// For `sqlite`: source tables to import from files (CSV or JSON lines,
    /// relative to the repository root), e.g. `"data.purchases" =
    /// "data/purchases.csv"`. `plan` and `run` import a file again whenever
    /// its content changed since its last import.
    #[serde(default)]
    pub seed: std::collections::BTreeMap<String, PathBuf>,
    /// For warehouses other than `sqlite`: how `gc` deletes one partition,
    /// an argv with `{table}`, `{partition_column}` and `{partition}`, e.g.
    /// `["hive", "-e", "..."]` or a script of yours.
    #[serde(default)]
    pub delete_command: Vec<String>,
    /// A probe or delete command running longer is killed, and the plan or
    /// `gc` fails naming it, e.g. `"10m"`.
    #[serde(
        default = "default_command_timeout",
        deserialize_with = "duration::required"
    )]
    pub command_timeout: std::time::Duration,
}

impl Default for WarehouseSettings {
    fn default() -> Self {
        WarehouseSettings {
            kind: WarehouseKind::default(),
            root: None,
            delete_command: Vec::new(),
            command_timeout: default_command_timeout(),
            catalog_uri: None,
            catalog_name: default_catalog_name(),
            tables: Default::default(),
            fingerprint: FingerprintMode::default(),
            partition_column: default_partition_column(),
            command: Vec::new(),
            batch: false,
            seed: Default::default(),
        }
    }
}

impl WarehouseSettings {
    /// The warehouse folder as configured, or the kind's default.
    pub fn root(&self) -> PathBuf {
        match (&self.root, self.kind) {
            (Some(root), _) => root.clone(),
            (None, WarehouseKind::HiveDir | WarehouseKind::Iceberg | WarehouseKind::Delta) => {
                PathBuf::from("warehouse")
            }
            (None, _) => PathBuf::from(".chronon-build/warehouse"),
        }
    }
}

impl WarehouseSettings {
    /// Catalogs and object-store URLs only where the kind reads them.
    fn check_locations(&self) -> Result<(), String> {
        let formats = matches!(self.kind, WarehouseKind::Iceberg | WarehouseKind::Delta);
        if let Some(uri) = &self.catalog_uri {
            if self.kind != WarehouseKind::Iceberg {
                return Err("warehouse.catalog_uri: expected warehouse.kind = \"iceberg\"".into());
            }
            let known = [
                "sqlite:///",
                "postgresql://",
                "postgres://",
                "http://",
                "https://",
            ];
            if !known.iter().any(|prefix| uri.starts_with(prefix)) {
                return Err(format!(
                    "warehouse.catalog_uri: {:?}: expected sqlite:///PATH, postgresql://... or http(s)://...",
                    crate::settings::redact_url(uri)
                ));
            }
        }
        if !self.tables.is_empty() && !formats {
            return Err(
                "warehouse.tables: expected warehouse.kind = \"iceberg\" or \"delta\"".into(),
            );
        }
        let roots = self.root.iter().map(|r| r.to_string_lossy().into_owned());
        for (field, location) in roots.map(|r| ("warehouse.root".to_string(), r)).chain(
            self.tables
                .iter()
                .map(|(t, l)| (format!("warehouse.tables.{t:?}"), l.clone())),
        ) {
            if !is_url(&location) {
                continue;
            }
            let scheme = location.split("://").next().unwrap_or_default();
            let allowed: &[&str] = if formats { &["gs", "s3", "file"] } else { &[] };
            if !allowed.contains(&scheme) {
                return Err(format!(
                    "{field}: {location:?}: {scheme}:// is not a location this warehouse kind reads \
                     (iceberg and delta read local paths, gs:// and s3://; the others local paths)"
                ));
            }
        }
        Ok(())
    }
}

/// A URL with its password replaced by `***`, for messages: credentials
/// are never printed (the one redaction, `store::redact_url`).
pub use crate::store::redact_url;

fn default_catalog_name() -> String {
    "default".into()
}

fn default_command_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(600)
}

/// Chronon's partition column when nothing sets one
/// (airbnb/chronon `api/py/test/sample/scripts/spark_submit.sh` line 56).
pub const CHRONON_PARTITION_COLUMN: &str = "ds";

fn default_partition_column() -> String {
    CHRONON_PARTITION_COLUMN.into()
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
    pub fn load(repo_root: &Path) -> Result<Settings, SettingsError> {
        let path = repo_root.join(FILE_NAME);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::default()),
            Err(e) => {
                return Err(SettingsError(format!(
                    "{}: cannot read: {e}",
                    path.display()
                )));
            }
        };
        // serde_path_to_error names the field (`executor.timeout`); toml's
        // own error shows the line.
        let shown = |e: toml::de::Error| e.to_string().trim_end().to_string();
        let settings: Settings = toml::de::Deserializer::parse(&text)
            .map_err(shown)
            .and_then(|de| {
                serde_path_to_error::deserialize(de).map_err(|e| {
                    let field = e.path().to_string();
                    match field.as_str() {
                        "." => shown(e.into_inner()),
                        _ => format!("{field}: {}", shown(e.into_inner())),
                    }
                })
            })
            .map_err(|e| SettingsError(format!("{}: {e}", path.display())))?;
        if settings.warehouse.kind == WarehouseKind::Command
            && settings.warehouse.command.is_empty()
        {
            return Err(SettingsError(format!(
                "{}: warehouse.command: expected an argv array such as [\"probe\", \"{{table}}\"] when warehouse.kind = \"command\"",
                path.display()
            )));
        }
        settings
            .check()
            .map_err(|e| SettingsError(format!("{}: {e}", path.display())))?;
        Ok(settings)
    }

    /// What serde cannot check: names of steps, empty argv.
    fn check(&self) -> Result<(), String> {
        use crate::step::Step;
        if self.executor.program.is_empty() {
            return Err(
                "executor.program: expected a non-empty argv array such as [\"zipline\", \"run\"]"
                    .into(),
            );
        }
        for name in self.executor.templates.keys() {
            if Step::parse(name).is_none() && name != "join-backfill" {
                return Err(format!(
                    "executor.templates.{name}: expected a step name ({}) or join-backfill",
                    step_names()
                ));
            }
        }
        for (name, argv) in &self.executor.commands {
            if Step::parse(name).is_none() && name != "join-backfill" {
                return Err(format!(
                    "executor.commands.{name}: expected a step name ({}) or join-backfill",
                    step_names()
                ));
            }
            if argv.is_empty() {
                return Err(format!(
                    "executor.commands.{name}: expected a non-empty argv array"
                ));
            }
        }
        if self.streaming.parallelism == Some(0) {
            return Err("streaming.parallelism: expected at least 1".into());
        }
        self.check_steps()?;
        if self.executor.kind == ExecutorKind::Local && self.warehouse.kind != WarehouseKind::Sqlite
        {
            return Err(
                "executor.kind: the local executor computes on the embedded warehouse; \
                 expected warehouse.kind = \"sqlite\", or executor.kind = \"zipline\""
                    .into(),
            );
        }
        if self.executor.kind == ExecutorKind::Local && self.executor.joins == JoinMode::Whole {
            return Err(
                "executor.joins: the local executor runs joins modular (left, parts, final); \
                 expected \"modular\""
                    .into(),
            );
        }
        if !self.warehouse.seed.is_empty() && self.warehouse.kind != WarehouseKind::Sqlite {
            return Err("warehouse.seed: expected warehouse.kind = \"sqlite\"".into());
        }
        self.warehouse.check_locations()?;
        if let Some(url) = &self.state.url {
            crate::store::StateLocation::parse(url, Path::new("/"))
                .map_err(|e| format!("state.url: {e}"))?;
        }
        if self.executor.step_days == 0 {
            return Err("executor.step_days: expected at least 1".into());
        }
        if let Some(jobs) = self.limits.jobs {
            check_jobs("limits.jobs", jobs)?;
        }
        for (table, limits) in [("steps", &self.limits.steps), ("teams", &self.limits.teams)] {
            for (name, n) in limits {
                check_jobs(&format!("limits.{table}.{name}"), *n)?;
            }
        }
        let least = self.bounds.stop_grace + std::time::Duration::from_secs(5);
        if self.state.lease <= least {
            let least = humantime::format_duration(least);
            return Err(format!(
                "state.lease: expected more than bounds.stop_grace + 5s ({least}), so a killed runner's jobs stop before another host takes their targets over"
            ));
        }
        if self.retry.retries > MAX_RETRIES {
            return Err(format!(
                "retry.retries: {} is more than {MAX_RETRIES}",
                self.retry.retries
            ));
        }
        Ok(())
    }

    /// `limits.steps` and `bounds.steps` name steps.
    fn check_steps(&self) -> Result<(), String> {
        let limited = self.limits.steps.keys().map(|n| ("limits", n));
        let bounded = self.bounds.steps.keys().map(|n| ("bounds", n));
        match limited
            .chain(bounded)
            .find(|(_, n)| crate::step::Step::parse(n).is_none())
        {
            Some((table, name)) => Err(format!(
                "{table}.steps.{name}: expected a step name ({})",
                step_names()
            )),
            None => Ok(()),
        }
    }

    pub fn resolve(&self, repo_root: &Path, path: &Path) -> PathBuf {
        if path.is_absolute() || is_url(&path.to_string_lossy()) {
            path.to_path_buf()
        } else {
            repo_root.join(path)
        }
    }
}

/// Whether a location is a URL (`gs://b/p`, `s3://b/p`, `file:///p`)
/// rather than a path: it is taken as it is, never joined to the
/// repository root.
pub fn is_url(location: &str) -> bool {
    location.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    })
}

/// The most jobs at once (`-j`, `limits.*`): each job is a process and a
/// thread; beyond this a machine runs out of them before it runs faster.
pub const MAX_JOBS: usize = 1024;

/// The most retries of a failed job.
pub const MAX_RETRIES: u32 = 100;

fn check_jobs(field: &str, n: usize) -> Result<(), String> {
    if (1..=MAX_JOBS).contains(&n) {
        Ok(())
    } else {
        Err(format!(
            "{field}: {n}: expected 1 to {MAX_JOBS} jobs at once"
        ))
    }
}

/// `-j N`: 1 to `MAX_JOBS`.
pub fn parse_jobs(text: &str) -> Result<usize, String> {
    let n: usize = text
        .parse()
        .map_err(|_| format!("expected a number of jobs (1 to {MAX_JOBS}), got {text:?}"))?;
    check_jobs("-j", n)?;
    Ok(n)
}

fn step_names() -> String {
    crate::step::Step::ALL
        .iter()
        .map(|s| s.name())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod duration_tests {
    use std::time::Duration;

    use super::duration::parse;

    #[test]
    fn durations_parse_in_the_documented_forms_and_range() {
        assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        for bad in [
            "",
            "5",
            "5x",
            "-1s",
            "18446744073709551615s",
            "367d",
            "1000000000000d",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
