//! Iceberg's SQL catalog on PostgreSQL: tables written by pyiceberg's
//! `SqlCatalog` on a database of the tests' server (`crate::postgres`),
//! read through `catalog_uri = "postgresql://..."`, and compared with the
//! same tables read through a SQLite catalog holding the same rows.

use std::path::PathBuf;

use super::{OUTPUT, SOURCE, SQ, Tables, lifecycle, python};
use crate::postgres::{PASSWORD, bin_dir, with_shared};

/// The formats writers and a PostgreSQL server, or a skip.
fn python_and_postgres(test: &str) -> Option<PathBuf> {
    let python = python(test)?;
    crate::tool_or_skip(
        test,
        bin_dir().is_some(),
        "PostgreSQL (initdb) is not installed",
    )
    .then_some(python)
}

/// Iceberg tables whose catalog is a new database of the shared server;
/// the writer writes there too.
fn pg_tables(python: PathBuf) -> (Tables, String) {
    let url = with_shared(|server| server.create_database());
    let mut tables = Tables::new(python, "iceberg", &format!("catalog_uri = \"{url}\"\n"));
    tables.env = vec![("TABLE_WRITER_CATALOG_URI".to_string(), url.clone())];
    (tables, url)
}

/// The settings' `catalog_uri` replaced by `uri`.
fn use_catalog(tables: &Tables, uri: &str) {
    let path = tables.s.repo.join("chronon-build.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text: Vec<String> = text
        .lines()
        .map(|line| match line.starts_with("catalog_uri") {
            true => format!("catalog_uri = \"{uri}\""),
            false => line.to_string(),
        })
        .collect();
    std::fs::write(&path, text.join("\n") + "\n").unwrap();
}

/// The PostgreSQL catalog's rows copied into a SQLite catalog file (the
/// layout pyiceberg creates there); returns its `catalog_uri`.
fn mirror_into_sqlite(tables: &Tables, url: &str) -> String {
    let mut pg = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let path = tables.root().join("mirror.db");
    let _ = std::fs::remove_file(&path);
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute_batch(
        "CREATE TABLE iceberg_tables (catalog_name VARCHAR(255) NOT NULL,
             table_namespace VARCHAR(255) NOT NULL, table_name VARCHAR(255) NOT NULL,
             metadata_location VARCHAR(1000), previous_metadata_location VARCHAR(1000),
             PRIMARY KEY (catalog_name, table_namespace, table_name))",
    )
    .unwrap();
    let rows = pg
        .query(
            "SELECT catalog_name, table_namespace, table_name, metadata_location,
                 previous_metadata_location FROM iceberg_tables",
            &[],
        )
        .unwrap();
    assert!(
        !rows.is_empty(),
        "the writer wrote its tables through PostgreSQL"
    );
    for row in rows {
        let column = |i| row.get::<_, Option<String>>(i);
        db.execute(
            "INSERT INTO iceberg_tables VALUES (?1, ?2, ?3, ?4, ?5)",
            [column(0), column(1), column(2), column(3), column(4)],
        )
        .unwrap();
    }
    format!("sqlite:///{}", path.display())
}

/// `explain` of the target of `day` as JSON: its key document, with every
/// input partition's fingerprint. The tables' remembered reads are
/// forgotten first, so the catalog's tables are read cold.
fn explain(tables: &Tables, day: &str) -> serde_json::Value {
    let _ = std::fs::remove_file(tables.s.repo.join(".chronon-build/tables.sqlite"));
    let target = format!("{SQ}@{day}");
    let out = tables.run(&["explain", &target, "--until", day, "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

const DAYS: [&str; 3] = ["2025-01-01", "2025-01-02", "2025-01-03"];

/// The lifecycle (presence, adopt, a late row in one day staling only that
/// day's target, a compaction, an overwrite, a delete) through a catalog
/// on PostgreSQL. Then the same tables through a SQLite catalog with the
/// same rows: read cold, the same partitions and fingerprints; and a row
/// appended to one day through PostgreSQL stales only that day's target,
/// read through either catalog. A row of the catalog marked as a view is
/// not read as a table.
#[test]
fn iceberg_tables_through_a_postgresql_catalog_read_as_through_sqlite() {
    let test = "iceberg_tables_through_a_postgresql_catalog_read_as_through_sqlite";
    let Some(python) = python_and_postgres(test) else {
        return;
    };
    let (tables, url) = pg_tables(python);
    lifecycle(&tables);
    tables.write("append", SOURCE, &["2025-01-03"]);
    tables.write("append", OUTPUT, &["2025-01-03"]);

    // Read cold (a compaction read cold has other files than the warm read
    // that saw it happen), per day: the same on both catalogs.
    let through_pg: Vec<_> = DAYS.iter().map(|day| explain(&tables, day)).collect();
    let sqlite = mirror_into_sqlite(&tables, &url);
    use_catalog(&tables, &sqlite);
    for (day, pg) in DAYS.iter().zip(&through_pg) {
        let text = pg.to_string();
        assert!(
            text.contains(&format!("[\"{day}\",\"")),
            "{day}'s partition with its fingerprint: {text}"
        );
        assert_eq!(&explain(&tables, day), pg, "{day}");
    }

    // Built on what the tables hold now; one more row in one day, through
    // the PostgreSQL catalog: only that day's target is stale, on either
    // catalog.
    use_catalog(&tables, &url);
    let adopt = tables.run(&["adopt", "--until", "2025-01-03"]);
    assert_eq!(adopt.code, 0, "{}", adopt.stderr);
    assert_eq!(tables.plan("2025-01-03"), Vec::<String>::new());
    use_catalog(&tables, &mirror_into_sqlite(&tables, &url));
    assert_eq!(tables.plan("2025-01-03"), Vec::<String>::new());
    use_catalog(&tables, &url);
    tables.write("late", SOURCE, &["2025-01-02"]);
    let stale = [format!("{SQ} 2025-01-02..2025-01-02 stale input-changed")];
    assert_eq!(tables.plan("2025-01-03"), stale);
    use_catalog(&tables, &mirror_into_sqlite(&tables, &url));
    assert_eq!(tables.plan("2025-01-03"), stale);

    // A view is not a table: the JDBC catalog's V1 layout (pyiceberg's
    // too) keeps views in iceberg_tables, marked by iceberg_type.
    use_catalog(&tables, &url);
    let mut pg = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let marked = pg
        .execute(
            "UPDATE iceberg_tables SET iceberg_type = 'VIEW'
             WHERE table_namespace = 'raw' AND table_name = 'merchants'",
            &[],
        )
        .unwrap();
    assert_eq!(marked, 1);
    assert_eq!(
        tables.plan("2025-01-03"),
        [format!("{SQ} 2025-01-01..2025-01-03 blocked")]
    );
}

/// A catalog database that is down, one without `iceberg_tables`, a wrong
/// password and a URL that does not parse: each exit 2, naming the
/// catalog (the host), never showing the password.
#[test]
fn a_postgresql_catalog_down_empty_or_misspelled_is_a_clear_error() {
    let test = "a_postgresql_catalog_down_empty_or_misspelled_is_a_clear_error";
    if !crate::tool_or_skip(
        test,
        bin_dir().is_some(),
        "PostgreSQL (initdb) is not installed",
    ) {
        return;
    }
    // No table is written: no writer needed.
    let (tables, url) = pg_tables(PathBuf::from("python3"));
    let plan = || tables.run(&["plan", "--until", "2025-01-01"]);

    // A database without the catalog's table.
    let out = plan();
    crate::assert_error(&out, "has no table iceberg_tables");
    crate::assert_contains(&out.stderr, "postgresql://chronon:***@127.0.0.1");

    // A server that is not there.
    let down = "postgresql://reader:pa55@127.0.0.1:1/catalog";
    use_catalog(&tables, down);
    let out = plan();
    crate::assert_error(
        &out,
        "cannot connect to the catalog's database at 127.0.0.1:1",
    );
    crate::assert_contains(&out.stderr, "postgresql://reader:***@127.0.0.1:1/catalog");
    assert!(!out.stderr.contains("pa55"), "{}", out.stderr);

    // A wrong password.
    use_catalog(&tables, &url.replace(PASSWORD, "wr0ng-pw"));
    let out = plan();
    crate::assert_error(
        &out,
        "cannot connect to the catalog's database at 127.0.0.1",
    );
    assert!(!out.stderr.contains("wr0ng-pw"), "{}", out.stderr);

    // A URL that does not parse.
    use_catalog(&tables, &format!("{url}?sslmode=sometimes"));
    let out = plan();
    crate::assert_error(&out, "warehouse.catalog_uri");
    crate::assert_contains(&out.stderr, "expected disable, prefer or require");
    assert!(!out.stderr.contains(PASSWORD), "{}", out.stderr);
}
