//! Iceberg and Delta tables written by the real libraries (pyiceberg's SQL
//! catalog on SQLite, deltalake), read by the `iceberg` and `delta` probes
//! through the real binary. The writers come from the virtualenv
//! `scripts/formats-venv` makes, named by `CHRONON_BUILD_FORMATS_PY`
//! (`scripts/test` sets it); without it these tests skip.
//!
//! The repository is the scenario's staging query `risk.merchants.v1`: it
//! reads `raw.merchants` day by day and writes `risk_db.risk_merchants_v1`.
//!
//! The same on object stores, through emulators the tests start on
//! 127.0.0.1 (`servers`): fake-gcs-server and moto's S3 server, the tables
//! written into them by the same libraries; and an Iceberg REST catalog
//! (`tests/fixtures/iceberg-rest-catalog.py`: pyiceberg's SQL catalog behind
//! the specification's endpoints). The SQL catalog on PostgreSQL:
//! `pg_catalog`.

mod pg_catalog;
mod servers;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{Output, Scenario, not_fresh};
use servers::{Cloud, Emulator};

const SQ: &str = "staging-query:risk.merchants.v1";
const SOURCE: &str = "raw.merchants";
const OUTPUT: &str = "risk_db.risk_merchants_v1";

fn python(test: &str) -> Option<PathBuf> {
    let python = std::env::var_os("CHRONON_BUILD_FORMATS_PY").map(PathBuf::from);
    let present = python.as_ref().is_some_and(|p| p.exists());
    let missing = format!(
        "the table writers are not installed (CHRONON_BUILD_FORMATS_PY={:?} names no python)",
        python.as_deref().unwrap_or(Path::new(""))
    );
    crate::tool_or_skip(test, present, &missing).then(|| python.expect("present"))
}

/// The emulators, or a skip when the virtualenv predates them.
fn emulators_or_skip(test: &str, python: &Path) -> bool {
    crate::tool_or_skip(
        test,
        servers::emulator_programs(python).is_some(),
        "the object-store emulators are not in the formats virtualenv",
    )
}

/// How long a plan may take, however its stores answer.
const BOUND: Duration = Duration::from_secs(120);

struct Tables {
    s: Scenario,
    python: PathBuf,
    format: &'static str,
    /// Where the writer writes: `ROOT`, a local path or a URL.
    location: String,
    /// For the writer and the binary: the object stores' environment.
    env: Vec<(String, String)>,
}

impl Tables {
    /// The scenario's staging query alone, on a warehouse of `format`;
    /// `extra` goes into `[warehouse]`.
    fn new(python: PathBuf, format: &'static str, extra: &str) -> Tables {
        let s = Scenario::copy("scenario");
        for kind in ["group_bys", "joins", "models"] {
            let _ = std::fs::remove_dir_all(s.repo.join("compiled").join(kind));
        }
        std::fs::write(
            s.repo.join("chronon-build.toml"),
            format!("[executor]\nkind = \"zipline\"\nprogram = [\"false\"]\n[warehouse]\nkind = \"{format}\"\n{extra}"),
        )
        .unwrap();
        let location = s.repo.join("warehouse").display().to_string();
        Tables {
            s,
            python,
            format,
            location,
            env: Vec::new(),
        }
    }

    /// The same with the warehouse at `root`, a `gs://` or `s3://` URL
    /// reached with `env`.
    fn remote(
        python: PathBuf,
        format: &'static str,
        root: String,
        env: Vec<(String, String)>,
        extra: &str,
    ) -> Tables {
        let mut tables = Tables::new(python, format, &format!("root = \"{root}\"\n{extra}"));
        tables.location = root;
        tables.env = env;
        tables
    }

    fn root(&self) -> PathBuf {
        self.s.repo.join("warehouse")
    }

    /// What the table writer keeps outside the bucket.
    fn writer_local(&self) -> PathBuf {
        self.s.repo.parent().unwrap().join("writer-local")
    }

    fn write(&self, op: &str, table: &str, days: &[&str]) {
        let out = std::process::Command::new(&self.python)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/table-writer.py"))
            .args([self.format, &self.location, op, table])
            .args(days)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("TABLE_WRITER_LOCAL", self.writer_local())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "table-writer {op} {table} {days:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn plan(&self, until: &str) -> Vec<String> {
        not_fresh(&self.run(&["plan", "--until", until, "--format", "json"]))
    }

    /// The binary with the tables' environment, killed past `BOUND`.
    fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &[])
    }

    fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut child = crate::command(&self.s.repo)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Read as it comes, so a full pipe never stalls the child.
        let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                bytes
            })
        };
        let stdout = drain(Box::new(child.stdout.take().unwrap()));
        let stderr = drain(Box::new(child.stderr.take().unwrap()));
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > BOUND {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "chronon-build {args:?} still ran after {BOUND:?}: {}",
                    String::from_utf8_lossy(&stderr.join().unwrap())
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Output::from(std::process::Output {
            status,
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        })
    }
}

/// Presence, adopt, a late row, a compaction, a day deleted and a day
/// overwritten, on one format.
fn lifecycle(tables: &Tables) {
    tables.write(
        "append",
        SOURCE,
        &["2025-01-01", "2025-01-02", "2025-01-03"],
    );
    assert_eq!(
        tables.plan("2025-01-05"),
        [
            format!("{SQ} 2025-01-01..2025-01-03 stale never-built"),
            format!("{SQ} 2025-01-04..2025-01-05 blocked"),
        ]
    );

    // The Driver's output, as a job would have left it: adopted, fresh.
    tables.write(
        "append",
        OUTPUT,
        &["2025-01-01", "2025-01-02", "2025-01-03"],
    );
    let adopt = tables.run(&["adopt", "--until", "2025-01-03"]);
    assert_eq!(adopt.code, 0, "{}", adopt.stderr);
    assert_eq!(tables.plan("2025-01-03"), Vec::<String>::new());

    // A late row in one day: exactly that day's target.
    tables.write("late", SOURCE, &["2025-01-02"]);
    assert_eq!(
        tables.plan("2025-01-03"),
        [format!("{SQ} 2025-01-02..2025-01-02 stale input-changed")]
    );
    tables.write("late", OUTPUT, &["2025-01-02"]);
    let adopt = tables.run(&["adopt", "--until", "2025-01-03"]);
    assert_eq!(adopt.code, 0, "{}", adopt.stderr);
    assert_eq!(tables.plan("2025-01-03"), Vec::<String>::new());

    // A compaction of both tables restates nothing.
    tables.write("compact", SOURCE, &[]);
    tables.write("compact", OUTPUT, &[]);
    assert_eq!(tables.plan("2025-01-03"), Vec::<String>::new());

    // A day overwritten: that day.
    tables.write("overwrite", SOURCE, &["2025-01-01"]);
    assert_eq!(
        tables.plan("2025-01-03"),
        [format!("{SQ} 2025-01-01..2025-01-01 stale input-changed")]
    );

    // Every row of a day deleted: the partition is gone, its reader blocked.
    tables.write("delete", SOURCE, &["2025-01-03"]);
    let plan = tables.plan("2025-01-03");
    assert!(
        plan.contains(&format!("{SQ} 2025-01-03..2025-01-03 blocked")),
        "{plan:?}"
    );
}

#[test]
fn delta_tables_written_by_deltalake_plan_adopt_and_change_day_by_day() {
    let Some(python) = python("delta_tables_written_by_deltalake_plan_adopt_and_change_day_by_day")
    else {
        return;
    };
    lifecycle(&Tables::new(python, "delta", ""));
}

#[test]
fn iceberg_tables_found_by_path_plan_adopt_and_change_day_by_day() {
    let Some(python) = python("iceberg_tables_found_by_path_plan_adopt_and_change_day_by_day")
    else {
        return;
    };
    lifecycle(&Tables::new(python, "iceberg", ""));
}

#[test]
fn iceberg_tables_through_a_sql_catalog_plan_adopt_and_change_day_by_day() {
    let Some(python) =
        python("iceberg_tables_through_a_sql_catalog_plan_adopt_and_change_day_by_day")
    else {
        return;
    };
    let tables = Tables::new(
        python,
        "iceberg",
        "catalog_uri = \"sqlite:///warehouse/catalog.db\"\n",
    );
    lifecycle(&tables);
    // A table the catalog does not know is absent (its files stay, but the
    // catalog is the truth): its readers blocked.
    tables.write("drop", SOURCE, &[]);
    let plan = tables.plan("2025-01-03");
    assert!(
        plan.iter().all(|t| t.ends_with("blocked")) && !plan.is_empty(),
        "{plan:?}"
    );
}

/// Spec evolution: the table re-partitioned (identity on `id` added), and
/// a day written under the new spec; each manifest is read with its own
/// spec, and nothing already built is restated.
#[test]
fn an_iceberg_table_whose_partition_spec_evolved_keeps_its_days() {
    let Some(python) = python("an_iceberg_table_whose_partition_spec_evolved_keeps_its_days")
    else {
        return;
    };
    let tables = Tables::new(python, "iceberg", "");
    tables.write("append", SOURCE, &["2025-01-01", "2025-01-02"]);
    tables.write("append", OUTPUT, &["2025-01-01", "2025-01-02"]);
    let adopt = tables.run(&["adopt", "--until", "2025-01-02"]);
    assert_eq!(adopt.code, 0, "{}", adopt.stderr);
    tables.write("evolve", SOURCE, &[]);
    assert_eq!(tables.plan("2025-01-02"), Vec::<String>::new());
    tables.write("append", SOURCE, &["2025-01-03"]);
    assert_eq!(
        tables.plan("2025-01-03"),
        [format!("{SQ} 2025-01-03..2025-01-03 stale never-built")]
    );
}

/// Corrupt metadata is an error naming the table and the file, exit 2.
#[test]
fn corrupt_delta_metadata_is_an_error_naming_the_table_and_file() {
    let Some(python) = python("corrupt_delta_metadata_is_an_error_naming_the_table_and_file")
    else {
        return;
    };
    let tables = Tables::new(python, "delta", "");
    tables.write("append", SOURCE, &["2025-01-01"]);
    let commit = tables
        .root()
        .join("raw.db/merchants/_delta_log/00000000000000000000.json");
    std::fs::write(&commit, "{ not json").unwrap();
    let out = tables.run(&["plan", "--until", "2025-01-01"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    crate::assert_contains(&out.stderr, "00000000000000000000.json");
    crate::assert_contains(&out.stderr, "merchants");
}

// ------------------------------------------------------------ object stores

/// The lifecycle on a warehouse in an emulated bucket, found by path under
/// `gs://lake/wh` or `s3://lake/wh`.
fn lifecycle_on(test: &str, cloud: Cloud, format: &'static str) {
    let Some(python) = python(test) else {
        return;
    };
    if !emulators_or_skip(test, &python) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(&python, cloud, dir.path());
    let tables = Tables::remote(python, format, emulator.url("wh"), emulator.env.clone(), "");
    lifecycle(&tables);
}

#[test]
fn delta_tables_on_gcs_plan_adopt_and_change_day_by_day() {
    lifecycle_on(
        "delta_tables_on_gcs_plan_adopt_and_change_day_by_day",
        Cloud::Gcs,
        "delta",
    );
}

#[test]
fn delta_tables_on_s3_plan_adopt_and_change_day_by_day() {
    lifecycle_on(
        "delta_tables_on_s3_plan_adopt_and_change_day_by_day",
        Cloud::S3,
        "delta",
    );
}

#[test]
fn iceberg_tables_on_s3_plan_adopt_and_change_day_by_day() {
    lifecycle_on(
        "iceberg_tables_on_s3_plan_adopt_and_change_day_by_day",
        Cloud::S3,
        "iceberg",
    );
}

#[test]
fn iceberg_tables_on_gcs_plan_adopt_and_change_day_by_day() {
    lifecycle_on(
        "iceberg_tables_on_gcs_plan_adopt_and_change_day_by_day",
        Cloud::Gcs,
        "iceberg",
    );
}

/// What `Storage` promises, kept by both emulated stores: a listing has
/// only the folder's direct children, sorted, from an offset; a folder
/// that is not there lists empty; an object that is not there is
/// `NotFound`.
#[test]
fn object_stores_keep_the_storage_contract() {
    use chronon_build::testing::{Storage, StorageError, Storages};

    let test = "object_stores_keep_the_storage_contract";
    let Some(python) = python(test) else {
        return;
    };
    if !emulators_or_skip(test, &python) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for cloud in [Cloud::Gcs, Cloud::S3] {
        let emulator = Emulator::start(&python, cloud, dir.path());
        for key in [
            "wh/log/02.json",
            "wh/log/00.json",
            "wh/log/01.json",
            "wh/log/sub/03.json",
            "wh/logs/04.json",
        ] {
            emulator.put(key, key.as_bytes());
        }
        let storages = Storages::with_env(emulator.env.clone());
        let names = |folder: &str, after| -> Vec<(String, u64)> {
            storages
                .list(&emulator.url(folder), after)
                .unwrap_or_else(|e| panic!("{cloud:?} {folder}: {e}"))
                .into_iter()
                .map(|l| (l.name, l.size))
                .collect()
        };
        let listed = |names: &[&str]| -> Vec<(String, u64)> {
            names.iter().map(|n| (n.to_string(), 14)).collect()
        };
        assert_eq!(
            names("wh/log", None),
            listed(&["00.json", "01.json", "02.json"])
        );
        assert_eq!(
            names("wh/log/", None),
            listed(&["00.json", "01.json", "02.json"])
        );
        assert_eq!(
            names("wh/log", Some("00.json")),
            listed(&["01.json", "02.json"])
        );
        assert_eq!(names("wh/log", Some("02.json")), listed(&[]));
        assert_eq!(names("wh/none", None), listed(&[]));
        assert_eq!(
            storages.read(&emulator.url("wh/log/01.json")).unwrap(),
            b"wh/log/01.json"
        );
        assert!(
            matches!(
                storages.read(&emulator.url("wh/log/09.json")),
                Err(StorageError::NotFound)
            ),
            "{cloud:?}"
        );
    }
}

/// A failed plan: exit 2 within a bounded time, the object's URL named,
/// the secret never shown.
fn assert_store_error(out: &Output, took: Duration, url: &str) {
    assert_eq!(
        out.code, 2,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    crate::assert_contains(&out.stderr, url);
    assert!(!out.stderr.contains(servers::SECRET), "{}", out.stderr);
    assert!(
        took < Duration::from_secs(30),
        "took {took:?}: {}",
        out.stderr
    );
}

/// A store that is down (connection refused) and one that answers 500 to
/// every request: each a clear error naming the URL, retried a few times,
/// never a hang.
#[test]
fn a_store_down_or_failing_is_an_error_naming_the_url_not_a_hang() {
    let test = "a_store_down_or_failing_is_an_error_naming_the_url_not_a_hang";
    let Some(python) = python(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let failing = servers::failing_server(&python, dir.path());
    let down = format!("http://127.0.0.1:{}", servers::free_port());
    for (cloud, endpoint, what) in [
        (Cloud::S3, down.clone(), "Connection refused"),
        (Cloud::Gcs, down.clone(), "Connection refused"),
        (Cloud::S3, failing.url(), "500"),
        (Cloud::Gcs, failing.url(), "500"),
    ] {
        let env = match cloud {
            Cloud::S3 => servers::s3_env(&endpoint),
            Cloud::Gcs => vec![(
                "GOOGLE_APPLICATION_CREDENTIALS".to_string(),
                servers::gcs_service_account(dir.path(), &endpoint),
            )],
        };
        let root = format!("{}://lake/wh", cloud.scheme());
        let tables = Tables::remote(python.clone(), "delta", root.clone(), env, "");
        let started = Instant::now();
        let out = tables.run(&["plan", "--until", "2025-01-01"]);
        assert_store_error(
            &out,
            started.elapsed(),
            &format!("{root}/raw.db/merchants/_delta_log"),
        );
        crate::assert_contains(&out.stderr, what);
        // Retried with backoff, as many times as `formats::remote` says.
        crate::assert_contains(&out.stderr, "after 4 retries");
    }
}

// ------------------------------------------------------------ REST catalog

/// Iceberg tables written through pyiceberg's SQL catalog on
/// `ROOT/catalog.db`, read through the REST catalog fixture over it,
/// started with `options`; the catalog's URL is in the settings.
fn rest_tables(python: PathBuf, options: &[&str]) -> (Tables, servers::Server) {
    let tables = Tables::new(python.clone(), "iceberg", "");
    std::fs::create_dir_all(tables.root()).unwrap();
    let catalog = servers::rest_catalog(
        &python,
        &tables.root().join("catalog.db"),
        &tables.root(),
        tables.s.repo.parent().unwrap(),
        options,
    );
    let settings = tables.s.repo.join("chronon-build.toml");
    let mut text = std::fs::read_to_string(&settings).unwrap();
    text.push_str(&format!("catalog_uri = \"{}\"\n", catalog.url()));
    std::fs::write(&settings, text).unwrap();
    (tables, catalog)
}

/// With a bearer token: presence, a late row, a compaction; a table the
/// catalog does not have is absent (its readers blocked), and a wrong
/// token is a clear error.
#[test]
fn iceberg_tables_through_a_rest_catalog_with_a_bearer_token() {
    let Some(python) = python("iceberg_tables_through_a_rest_catalog_with_a_bearer_token") else {
        return;
    };
    let (tables, catalog) = rest_tables(python, &["--token", "t0ken"]);
    let token = [("CHRONON_BUILD_ICEBERG_TOKEN", "t0ken")];
    let plan = |until: &str| {
        not_fresh(&tables.run_with(&["plan", "--until", until, "--format", "json"], &token))
    };

    // Neither table written yet: absent, not an error.
    assert_eq!(
        plan("2025-01-02"),
        [format!("{SQ} 2025-01-01..2025-01-02 blocked")]
    );
    tables.write("append", SOURCE, &["2025-01-01", "2025-01-02"]);
    assert_eq!(
        plan("2025-01-02"),
        [format!("{SQ} 2025-01-01..2025-01-02 stale never-built")]
    );
    tables.write("append", OUTPUT, &["2025-01-01", "2025-01-02"]);
    let adopt = tables.run_with(&["adopt", "--until", "2025-01-02"], &token);
    assert_eq!(adopt.code, 0, "{}", adopt.stderr);
    assert_eq!(plan("2025-01-02"), Vec::<String>::new());
    tables.write("late", SOURCE, &["2025-01-02"]);
    assert_eq!(
        plan("2025-01-02"),
        [format!("{SQ} 2025-01-02..2025-01-02 stale input-changed")]
    );
    tables.write("late", OUTPUT, &["2025-01-02"]);
    let adopt = tables.run_with(&["adopt", "--until", "2025-01-02"], &token);
    assert_eq!(adopt.code, 0, "{}", adopt.stderr);
    tables.write("compact", SOURCE, &[]);
    tables.write("compact", OUTPUT, &[]);
    assert_eq!(plan("2025-01-02"), Vec::<String>::new());
    // Dropped from the catalog: absent, its readers blocked.
    tables.write("drop", SOURCE, &[]);
    assert_eq!(
        plan("2025-01-02"),
        [format!("{SQ} 2025-01-01..2025-01-02 blocked")]
    );

    for wrong in [&[("CHRONON_BUILD_ICEBERG_TOKEN", "wr0ng")][..], &[]] {
        let started = Instant::now();
        let out = tables.run_with(&["plan", "--until", "2025-01-02"], wrong);
        assert_eq!(out.code, 2, "{}", out.stderr);
        crate::assert_contains(&out.stderr, &catalog.url());
        crate::assert_contains(&out.stderr, "refused the credentials");
        crate::assert_contains(&out.stderr, "CHRONON_BUILD_ICEBERG_TOKEN");
        assert!(!out.stderr.contains("wr0ng"), "{}", out.stderr);
        assert!(started.elapsed() < Duration::from_secs(30));
    }
}

/// With OAuth2 client credentials exchanged for a token; wrong ones are a
/// clear error that shows no secret.
#[test]
fn iceberg_tables_through_a_rest_catalog_with_oauth2_client_credentials() {
    let Some(python) =
        python("iceberg_tables_through_a_rest_catalog_with_oauth2_client_credentials")
    else {
        return;
    };
    let (tables, catalog) = rest_tables(python, &["--client", "reader:s3cret"]);
    tables.write("append", SOURCE, &["2025-01-01"]);
    let credential = [("CHRONON_BUILD_ICEBERG_CREDENTIAL", "reader:s3cret")];
    let out = tables.run_with(
        &["plan", "--until", "2025-01-02", "--format", "json"],
        &credential,
    );
    assert_eq!(
        not_fresh(&out),
        [
            format!("{SQ} 2025-01-01..2025-01-01 stale never-built"),
            format!("{SQ} 2025-01-02..2025-01-02 blocked"),
        ]
    );

    let wrong = [("CHRONON_BUILD_ICEBERG_CREDENTIAL", "reader:wr0ng")];
    let out = tables.run_with(&["plan", "--until", "2025-01-02"], &wrong);
    assert_eq!(out.code, 2, "{}", out.stderr);
    crate::assert_contains(&out.stderr, &catalog.url());
    crate::assert_contains(&out.stderr, "refused the client credentials");
    assert!(!out.stderr.contains("wr0ng"), "{}", out.stderr);
}

/// A catalog that answers 500s, and one that is down: clear errors naming
/// the catalog's URL, within a bounded time.
#[test]
fn a_rest_catalog_failing_or_down_is_an_error_naming_it_not_a_hang() {
    let Some(python) = python("a_rest_catalog_failing_or_down_is_an_error_naming_it_not_a_hang")
    else {
        return;
    };
    let (tables, catalog) = rest_tables(python, &["--fail-with", "503"]);
    let started = Instant::now();
    let out = tables.run(&["plan", "--until", "2025-01-01"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    crate::assert_contains(&out.stderr, &catalog.url());
    crate::assert_contains(&out.stderr, "503");
    assert!(started.elapsed() < Duration::from_secs(30));

    let url = catalog.url();
    drop(catalog);
    let started = Instant::now();
    let out = tables.run(&["plan", "--until", "2025-01-01"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    crate::assert_contains(&out.stderr, &url);
    crate::assert_contains(&out.stderr, "cannot reach the catalog");
    assert!(started.elapsed() < Duration::from_secs(30));
}
