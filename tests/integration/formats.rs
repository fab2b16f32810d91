//! Iceberg and Delta tables written by the real libraries (pyiceberg's SQL
//! catalog on SQLite, deltalake), read by the `iceberg` and `delta` probes
//! through the real binary. The writers come from the virtualenv
//! `scripts/formats-venv` makes, named by `CHRONON_BUILD_FORMATS_PY`
//! (`scripts/test` sets it); without it these tests skip.
//!
//! The repository is the scenario's staging query `risk.merchants.v1`: it
//! reads `raw.merchants` day by day and writes `risk_db.risk_merchants_v1`.

use std::path::{Path, PathBuf};

use crate::{Output, Scenario, not_fresh};

const SQ: &str = "staging-query:risk.merchants.v1";
const SOURCE: &str = "raw.merchants";
const OUTPUT: &str = "risk_db.risk_merchants_v1";

fn python(test: &str) -> Option<PathBuf> {
    let python = std::env::var_os("CHRONON_BUILD_FORMATS_PY").map(PathBuf::from);
    let present = python.as_ref().is_some_and(|p| p.exists());
    crate::tool_or_skip(
        test,
        present,
        "the table writers are not installed (CHRONON_BUILD_FORMATS_PY names no python)",
    )
    .then(|| python.expect("present"))
}

struct Tables {
    s: Scenario,
    python: PathBuf,
    format: &'static str,
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
        Tables { s, python, format }
    }

    fn root(&self) -> PathBuf {
        self.s.repo.join("warehouse")
    }

    fn write(&self, op: &str, table: &str, days: &[&str]) {
        let out = std::process::Command::new(&self.python)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/table-writer.py"))
            .args([self.format, self.root().to_str().unwrap(), op, table])
            .args(days)
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

    fn run(&self, args: &[&str]) -> Output {
        self.s.run(args)
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
