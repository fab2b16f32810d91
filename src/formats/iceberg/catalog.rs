//! Iceberg's SQL catalog (the JDBC catalog's schema, which pyiceberg's
//! `SqlCatalog` shares: apache/iceberg `core/src/main/java/org/apache/
//! iceberg/jdbc/JdbcUtil.java`; apache/iceberg-python `pyiceberg/catalog/
//! sql.py`, class `IcebergTables`): a table's current metadata file is the
//! `metadata_location` of its row in `iceberg_tables`, keyed by
//! `catalog_name`, `table_namespace` and `table_name`. The catalog is a
//! SQLite file or a PostgreSQL database (what pyiceberg's `uri` and the
//! JDBC catalog's `jdbc:postgresql:` name), read the same way.

use std::collections::HashMap;
use std::path::Path;

use crate::formats::FormatError;
use crate::store::{PgLocation, pg_message};

/// Per (namespace, table), its current metadata file. A namespace of
/// several levels is written with dots (`a.b`), as the catalog stores it.
pub type Pointers = HashMap<(String, String), String>;

/// Every table of one catalog name with a metadata file; `$1` is the
/// catalog name (SQLite reads `$1` as the first parameter too).
const POINTERS: &str = "SELECT table_namespace, table_name, metadata_location FROM iceberg_tables t
     WHERE catalog_name = $1 AND metadata_location IS NOT NULL";

/// Only tables, not views: the JDBC catalog's V1 layout keeps views in
/// `iceberg_tables` too, with `iceberg_type` 'VIEW' (JdbcUtil.java:
/// `RECORD_TYPE`, `TABLE_RECORD_TYPE`, `VIEW_RECORD_TYPE`); rows written
/// before it, and the V0 layout without the column, are tables (pyiceberg
/// sql.py, `_iceberg_type_filter`). SQLite's form names the column, so a
/// V0 catalog is read without it.
const TABLES_ONLY_SQLITE: &str = " AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL)";
/// PostgreSQL's form reads the column through the row as JSON, so one
/// query reads either layout.
const TABLES_ONLY_PG: &str = " AND coalesce(to_jsonb(t) ->> 'iceberg_type', 'TABLE') = 'TABLE'";

/// The pointers of the SQLite catalog file `catalog` under the catalog name
/// `catalog_name`: read whole, one query for every table a listing asks
/// about. A table the catalog lacks is absent, not an error.
pub fn sql_catalog_pointers(catalog: &Path, catalog_name: &str) -> Result<Pointers, FormatError> {
    let fail = |message: String| FormatError::Catalog {
        catalog: catalog.display().to_string(),
        message,
    };
    if !catalog.is_file() {
        return Err(fail("no catalog file there".into()));
    }
    let conn = crate::sqlite::open_read_only(catalog)
        .map_err(|e| fail(format!("cannot open the catalog: {e}")))?;
    let mut stmt = conn
        .prepare(&format!("{POINTERS}{TABLES_ONLY_SQLITE}"))
        .or_else(|_| conn.prepare(POINTERS))
        .map_err(|e| fail(format!("not an Iceberg SQL catalog: {e}")))?;
    stmt.query_map([catalog_name], |row| {
        Ok(((row.get(0)?, row.get(1)?), row.get::<_, String>(2)?))
    })
    .and_then(|rows| rows.collect::<Result<Pointers, _>>())
    .map_err(|e| fail(e.to_string()))
}

/// The same from a catalog in a PostgreSQL database: one connection, one
/// query in a read-only transaction. Messages name the database by its URL
/// with the password hidden, and never show the password.
pub fn pg_catalog_pointers(
    catalog: &PgLocation,
    catalog_name: &str,
) -> Result<Pointers, FormatError> {
    let fail = |message: String| FormatError::Catalog {
        catalog: catalog.name.clone(),
        message: catalog.redact(&message),
    };
    let mut client = catalog.connect().map_err(|e| {
        fail(format!(
            "cannot connect to the catalog's database at {}:{}: {}",
            catalog.host,
            catalog.port,
            pg_message(&e)
        ))
    })?;
    let mut read = client
        .build_transaction()
        .read_only(true)
        .start()
        .map_err(|e| fail(pg_message(&e)))?;
    let query = format!("{POINTERS}{TABLES_ONLY_PG}");
    let rows = read.query(&query, &[&catalog_name]).map_err(|e| {
        if e.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE) {
            fail(format!(
                "not an Iceberg SQL catalog: database {:?} has no table iceberg_tables \
                 (as pyiceberg's SqlCatalog and the JDBC catalog create it)",
                catalog.database
            ))
        } else {
            fail(format!("cannot read iceberg_tables: {}", pg_message(&e)))
        }
    })?;
    read.commit().map_err(|e| fail(pg_message(&e)))?;
    rows.iter()
        .map(|row| {
            let column = |i: usize| {
                row.try_get::<_, String>(i).map_err(|e| {
                    fail(format!(
                        "iceberg_tables.{}: expected text: {e}",
                        row.columns()[i].name()
                    ))
                })
            };
            Ok(((column(0)?, column(1)?), column(2)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_is_found_by_catalog_namespace_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute_batch(
            "CREATE TABLE iceberg_tables (catalog_name TEXT, table_namespace TEXT,
                 table_name TEXT, metadata_location TEXT, previous_metadata_location TEXT);
             INSERT INTO iceberg_tables VALUES ('prod', 'ns', 't', 'file:///w/t/metadata/1.json', NULL);
             INSERT INTO iceberg_tables VALUES ('test', 'ns', 't', 'file:///x/t/metadata/2.json', NULL);",
        )
        .unwrap();
        drop(db);
        let key = |t: &str| ("ns".to_string(), t.to_string());
        let pointers = sql_catalog_pointers(&path, "prod").unwrap();
        assert_eq!(
            pointers.get(&key("t")),
            Some(&"file:///w/t/metadata/1.json".to_string())
        );
        assert_eq!(pointers.get(&key("u")), None);
        // The V1 layout: a view is not a table; a row from before it is.
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute_batch(
            "ALTER TABLE iceberg_tables ADD COLUMN iceberg_type VARCHAR(5);
             INSERT INTO iceberg_tables VALUES ('prod', 'ns', 'v', 'file:///w/v/metadata/1.json', NULL, 'VIEW');
             INSERT INTO iceberg_tables VALUES ('prod', 'ns', 'u', 'file:///w/u/metadata/1.json', NULL, 'TABLE');",
        )
        .unwrap();
        drop(db);
        let pointers = sql_catalog_pointers(&path, "prod").unwrap();
        assert!(pointers.contains_key(&key("t")) && pointers.contains_key(&key("u")));
        assert_eq!(pointers.get(&key("v")), None);
        let err = sql_catalog_pointers(&dir.path().join("none.db"), "prod").unwrap_err();
        assert!(matches!(err, FormatError::Catalog { .. }), "{err}");
    }
}
