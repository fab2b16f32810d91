//! `chronon-build`: make for Chronon feature data.
//!
//! The pipeline: compiled Chronon configs are loaded into a typed model
//! (`config`); each config becomes graph nodes, one per step (`graph`), whose
//! targets are partitions with inputs and lookback; each target gets a key,
//! a content hash of the config's semantic slice for the step and of the
//! fingerprints of what it reads (`hash`), where fingerprints come from the
//! warehouse (`probe`) or, for tables another node writes, from that node's
//! recorded output, so keys chain. The planner (`plan`) compares keys with
//! the SQLite state (`store`) and says, per target, fresh, stale (with a
//! reason), blocked on a missing input, or waiting on an upstream target.
//! The runner (`run`) runs the stale targets through an executor (`exec`)
//! and records them as their jobs end; the live plan (`plan::live`) is told
//! what ended and answers with what became ready. Staleness is decided in
//! `plan` alone.
//!
//! Module map:
//! - `cli`: argument parsing and one module per subcommand;
//! - `config`: repository layouts, the typed model, validation;
//! - `graph`: steps, nodes, inputs and lookback, order, DOT/JSON output;
//! - `hash`: canonical JSON, the field classification table, slices, digests;
//! - `partition`: days and day ranges;
//! - `table`: a warehouse table's layout (partition column and format) and
//!   its partitions with fingerprints, whatever holds it;
//! - `formats`: Iceberg and Delta metadata readers: days and fingerprints
//!   from a table's own metadata, through a `Storage` (local disk, or
//!   `gs://` and `s3://` through `formats::remote`);
//! - `probe`: warehouse probes, one file per kind (sqlite, hive-dir,
//!   command, iceberg, delta), each table listed by its partition column and
//!   format (`Layouts`); what Iceberg and Delta reads remember
//!   (`probe::memory`);
//! - `warehouse`: the embedded SQLite warehouse: namespace files, partition
//!   catalog, writes, imports, verify and gc, one file each;
//! - `store`: the state, in a SQLite file or PostgreSQL behind one store
//!   (`store::db`: one schema, one dialect map): schema and migrations
//!   (`store::schema`), recorded targets and their writes, node memos, run
//!   history, and per-target claims (`store::claims`: runs started together
//!   build each target once);
//! - `sqlite`: how every SQLite file is opened (state, warehouse, KV, the
//!   table-read cache): one lock policy, read-only opens that create
//!   nothing;
//! - `plan`: the planner (`compute`, `decide`: where staleness is decided),
//!   keys (`plan::key`: where a key is made), input columns, stale reasons,
//!   what a build records, the live plan a run consumes (`plan::live`), node
//!   memos (`plan::memo`: skipping nodes nothing touched), and its output;
//! - `diff`: what a config change invalidates, for CI: configs matched
//!   across the sides (`diff::configs`), targets whose keys change
//!   (`diff::targets`), cost from run history, and text/Markdown output;
//! - `monitor`: status, metrics (`monitor::metrics`) and the HTML report
//!   (`monitor::report`), from plans and history;
//! - `run`: the runner (where jobs run), its state lock (shared by runs)
//!   and claims (`run::claims`), progress and summary,
//!   adopt's state writer (`run::writer`), and `gc` (orphaned partitions,
//!   and what nodes no config makes any more left);
//! - `exec`: the executors' argv and environment (zipline, local), the
//!   tables' partition layouts as the Driver sees them (`partitioning`),
//!   the days a job covers and what that changes on Spark (`ranges`), and
//!   `exec::command`: how every process is started (jobs, hooks, probe,
//!   status and delete commands) with one policy; a watchdog per run that
//!   stops the run's jobs when their runner dies (`exec::watch`);
//! - `identity`: a process named by host, pid and start time (what claims
//!   and watchdogs record);
//! - `engine`: the local engine: Chronon's steps computed on the warehouse
//!   (label joins included), staging SQL read-only, a job's memory and
//!   time bounds enforced inside it (`engine::bounds`), and serving: batch IRs
//!   (`ir`), local streaming (`streaming`) and `fetch`;
//! - `settings`: `chronon-build.toml`; its `[bounds]` (`settings::bounds`)
//!   resolved per step, the local engine's defaults sized from the machine;
//! - `step`: the kinds of work (`Step`), shared by the graph and the
//!   settings without either importing the other;
//! - `clock`: wall-clock time as stored (seconds since the epoch);
//! - `heap`: the binary's allocator, counting the heap where a local
//!   engine job's memory bound asks for it (`engine::bounds`);
//! - `error`: the command-level error, converted from each domain's own
//!   (`StoreError`, `ProbeError`, `SettingsError`, `WarehouseError`), and
//!   the one map to exit codes;
//! - `testing`: what the integration tests and benchmarks use (the one
//!   public module; every other is crate-private).
//!
//! Files on disk:
//! - `<repo>/chronon-build.toml`: settings (optional);
//! - `<repo>/.chronon-build/state.db` (and its `-wal`, `-shm`): the state,
//!   unless `state.path` or `--state` says otherwise; beside it `state.db.lock`,
//!   `logs/` and `tables.sqlite` (what Iceberg and Delta reads remember).

/// `eprintln!` that never panics: standard error closed early (`2>&1 |
/// head`) must not crash a run mid-way, or lose what it would record.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

pub(crate) mod cli;
pub(crate) mod clock;
pub(crate) mod config;
pub(crate) mod diff;
pub(crate) mod engine;
pub(crate) mod error;
pub(crate) mod exec;
pub(crate) mod formats;
pub(crate) mod graph;
pub(crate) mod hash;
pub(crate) mod heap;
pub(crate) mod identity;
pub(crate) mod monitor;
pub(crate) mod partition;
pub(crate) mod plan;
pub(crate) mod probe;
pub(crate) mod run;
pub(crate) mod say;
pub(crate) mod settings;
pub(crate) mod sqlite;
pub(crate) mod step;
pub(crate) mod store;
pub(crate) mod table;
pub(crate) mod warehouse;

// What the binary uses: the command line, and the allocator it installs.
pub use cli::run;
pub use heap::Counting;

/// What the integration tests and benchmarks use; not a stable API.
pub mod testing {
    pub use crate::cli::{Global, Workspace};
    pub use crate::config::Repo;
    pub use crate::exec::partitioning::Partitioning;
    pub use crate::formats::remote::Storages;
    pub use crate::formats::storage::{Storage, StorageError};
    pub use crate::graph::{Graph, Schedule, Step};
    pub use crate::hash::{Hash, KEY_VERSION};
    pub use crate::partition::{Day, DayRange};
    pub use crate::settings::Settings;
    pub use crate::store::{SCHEMA_VERSION, StateStore};
    pub use crate::warehouse::Warehouse;

    /// The planner's entry points the tests drive directly.
    pub mod plan {
        pub use crate::plan::{
            BuildRecord, Context, PlanOptions, Status, compute, node_key, reads, slice_json,
        };
    }

    /// The probes the tests and benchmarks build.
    pub mod probe {
        pub use crate::probe::{fingerprint_dir, from_settings};
    }
}
