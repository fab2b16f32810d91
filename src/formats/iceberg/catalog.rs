//! Iceberg's SQL catalog (the JDBC catalog's schema, which pyiceberg's
//! `SqlCatalog` shares): a table's current metadata file is the
//! `metadata_location` of its row in `iceberg_tables`.

use std::path::Path;

use rusqlite::OptionalExtension;

use crate::formats::FormatError;

/// The metadata location of `namespace.table` in the SQLite catalog file
/// `catalog`, under the catalog name `catalog_name`; `None` when the
/// catalog has no such table (absent, not an error). A namespace of several
/// levels is written with dots (`a.b`), as the catalog stores it.
pub fn sql_catalog_metadata_location(
    catalog: &Path,
    catalog_name: &str,
    namespace: &str,
    table: &str,
) -> Result<Option<String>, FormatError> {
    let fail = |message: String| FormatError::Catalog {
        catalog: catalog.display().to_string(),
        message,
    };
    let flags =
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = rusqlite::Connection::open_with_flags(catalog, flags)
        .map_err(|e| fail(format!("cannot open the catalog: {e}")))?;
    connection
        .query_row(
            "SELECT metadata_location FROM iceberg_tables
             WHERE catalog_name = ?1 AND table_namespace = ?2 AND table_name = ?3",
            [catalog_name, namespace, table],
            |row| row.get::<_, Option<String>>(0),
        )
        .optional()
        .map(Option::flatten)
        .map_err(|e| fail(format!("{catalog_name}.{namespace}.{table}: {e}")))
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
        assert_eq!(
            sql_catalog_metadata_location(&path, "prod", "ns", "t").unwrap(),
            Some("file:///w/t/metadata/1.json".to_string())
        );
        assert_eq!(
            sql_catalog_metadata_location(&path, "prod", "ns", "u").unwrap(),
            None
        );
        let err = sql_catalog_metadata_location(&dir.path().join("none.db"), "prod", "ns", "t")
            .unwrap_err();
        assert!(matches!(err, FormatError::Catalog { .. }), "{err}");
    }
}
