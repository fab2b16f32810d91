//! What each Iceberg or Delta read remembers for the next one
//! (`formats::iceberg::TableMemory`, `formats::delta::TableMemory`): the
//! snapshot or log version read and each day's file sums, so a warm plan
//! reads one small file per table and a changed table only what is new.
//!
//! Kept in `<state folder>/tables.sqlite`, apart from the state: it is a
//! cache. Losing it costs one cold read per table (which, after a
//! compaction, can make the compacted days look changed once: a spurious
//! rebuild, never a missed one). Each row is keyed by the table's kind and
//! location, so a table moved or read as another kind starts cold.

use std::collections::HashMap;
use std::path::PathBuf;

use rusqlite::params;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS table_memory (
    kind TEXT NOT NULL,
    location TEXT NOT NULL,
    memory TEXT NOT NULL,
    PRIMARY KEY (kind, location)
) WITHOUT ROWID;";

pub struct Memories {
    path: PathBuf,
}

impl Memories {
    pub fn new(path: PathBuf) -> Memories {
        Memories { path }
    }

    /// Every remembered read of `kind`, by location (JSON). A cache that
    /// cannot be read is an empty one: the reads are cold.
    pub fn load(&self, kind: &str) -> HashMap<String, String> {
        let Ok(conn) = crate::sqlite::open_read_only(&self.path) else {
            return HashMap::new();
        };
        let rows = conn
            .prepare("SELECT location, memory FROM table_memory WHERE kind = ?1")
            .and_then(|mut stmt| {
                stmt.query_map([kind], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect::<Result<HashMap<String, String>, _>>()
            });
        rows.unwrap_or_default()
    }

    /// Stores new memories, in one transaction. A cache that cannot be
    /// written costs cold reads next time, nothing else: the error is
    /// returned for the caller to mention, not to fail on.
    pub fn store(&self, kind: &str, memories: &[(String, String)]) -> Result<(), String> {
        if memories.is_empty() {
            return Ok(());
        }
        let fail = |e: rusqlite::Error| format!("{}: {e}", self.path.display());
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let mut conn = crate::sqlite::open_write(&self.path).map_err(fail)?;
        crate::sqlite::use_wal(&conn).map_err(fail)?;
        conn.execute_batch(SCHEMA).map_err(fail)?;
        let tx = conn.transaction().map_err(fail)?;
        {
            let mut put = tx
                .prepare(
                    "INSERT OR REPLACE INTO table_memory (kind, location, memory) VALUES (?1, ?2, ?3)",
                )
                .map_err(fail)?;
            for (location, memory) in memories {
                put.execute(params![kind, location, memory]).map_err(fail)?;
            }
        }
        tx.commit().map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_per_kind_and_location_and_an_absent_cache_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let memories = Memories::new(dir.path().join("state/tables.sqlite"));
        assert!(memories.load("delta").is_empty());
        memories
            .store("delta", &[("/w/a".into(), "{\"v\":1}".into())])
            .unwrap();
        memories
            .store("iceberg", &[("/w/a".into(), "{\"v\":2}".into())])
            .unwrap();
        memories
            .store("delta", &[("/w/a".into(), "{\"v\":3}".into())])
            .unwrap();
        assert_eq!(memories.load("delta")["/w/a"], "{\"v\":3}");
        assert_eq!(memories.load("iceberg")["/w/a"], "{\"v\":2}");
    }
}
