//! Iceberg's SQL catalog (the JDBC catalog's schema, which pyiceberg's
//! `SqlCatalog` shares: apache/iceberg `core/src/main/java/org/apache/
//! iceberg/jdbc/JdbcUtil.java`): a table's current metadata file is the
//! `metadata_location` of its row in `iceberg_tables`.

use std::collections::HashMap;
use std::path::Path;

use crate::formats::FormatError;

/// Per (namespace, table), its current metadata file, in the SQLite catalog
/// file `catalog` under the catalog name `catalog_name`: read whole, one
/// query for every table a listing asks about. A table the catalog lacks
/// is absent, not an error. A namespace of several levels is written with
/// dots (`a.b`), as the catalog stores it.
pub fn sql_catalog_pointers(
    catalog: &Path,
    catalog_name: &str,
) -> Result<HashMap<(String, String), String>, FormatError> {
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
        .prepare(
            "SELECT table_namespace, table_name, metadata_location FROM iceberg_tables
             WHERE catalog_name = ?1 AND metadata_location IS NOT NULL",
        )
        .map_err(|e| fail(format!("not an Iceberg SQL catalog: {e}")))?;
    stmt.query_map([catalog_name], |row| {
        Ok(((row.get(0)?, row.get(1)?), row.get::<_, String>(2)?))
    })
    .and_then(|rows| rows.collect::<Result<HashMap<_, _>, _>>())
    .map_err(|e| fail(e.to_string()))
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
        let err = sql_catalog_pointers(&dir.path().join("none.db"), "prod").unwrap_err();
        assert!(matches!(err, FormatError::Catalog { .. }), "{err}");
    }
}
