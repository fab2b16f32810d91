//! The one SQLite helper: how every SQLite file of the tool is opened (the
//! state, the embedded warehouse's namespace files, the local KV store),
//! with one policy for waiting on locks, for readers that must create
//! nothing, and for telling a damaged file from a busy one.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// How long a connection waits for another's lock before it fails with
/// "database is locked": long enough for a writer's batch to commit.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens (creating) a file for reading and writing, waiting `BUSY_TIMEOUT`
/// on other writers. The caller sets its journal mode: WAL is kept in the
/// file, and switching it is a write of its own.
pub fn open_write(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// An in-memory database with the same lock policy, for attaching files.
pub fn open_in_memory() -> rusqlite::Result<Connection> {
    let conn = Connection::open_in_memory()?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// Opens a file for reading only, creating nothing. A WAL database needs
/// its `-shm` file, which a reader cannot create in a folder it may not
/// write (a read-only mount, another user's state): then the file is read
/// as it is (no writer can be running there either).
pub fn open_read_only(path: &Path) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let opened = Connection::open_with_flags(path, flags).and_then(|conn| {
        conn.pragma_query_value(None, "user_version", |row| row.get::<_, i64>(0))
            .map(|_| conn)
    });
    let conn = match opened {
        Ok(conn) => conn,
        Err(e) => {
            let uri = format!("file:{}?immutable=1", uri_path(path));
            Connection::open_with_flags(&uri, flags | OpenFlags::SQLITE_OPEN_URI).map_err(|_| e)?
        }
    };
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// Switches a connection's file to WAL (readers go on while one writer
/// writes) unless it is already.
pub fn use_wal(conn: &Connection) -> rusqlite::Result<()> {
    if !is_wal(conn)? {
        conn.pragma_update(None, "journal_mode", "WAL")?;
    }
    Ok(())
}

/// Whether a connection's file is in WAL mode.
pub fn is_wal(conn: &Connection) -> rusqlite::Result<bool> {
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0))?;
    Ok(mode.eq_ignore_ascii_case("wal"))
}

/// Whether the file itself is damaged or not SQLite at all (as opposed to
/// busy, missing or unreadable): then no retry helps.
pub fn is_damaged(error: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
    matches!(error, rusqlite::Error::SqliteFailure(e, _) if matches!(e.code, DatabaseCorrupt | NotADatabase))
}

/// A path for a SQLite `file:` URI: `%`, `?` and `#` escaped.
fn uri_path(path: &Path) -> String {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    absolute
        .to_string_lossy()
        .replace('%', "%25")
        .replace('?', "%3f")
        .replace('#', "%23")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_only_open_creates_nothing_and_reads_a_wal_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a ?#%.db");
        assert!(open_read_only(&path).is_err());
        assert!(!path.exists(), "a reader created the file");
        let conn = open_write(&path).unwrap();
        use_wal(&conn).unwrap();
        conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (7);")
            .unwrap();
        let reader = open_read_only(&path).unwrap();
        let x: i64 = reader
            .query_row("SELECT x FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(x, 7);
        assert!(reader.execute("INSERT INTO t VALUES (8)", []).is_err());
    }

    #[test]
    fn a_file_that_is_not_sqlite_is_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not.db");
        std::fs::write(&path, vec![b'x'; 4096]).unwrap();
        let e = open_read_only(&path)
            .and_then(|c| {
                c.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
                    r.get::<_, i64>(0)
                })
            })
            .unwrap_err();
        assert!(is_damaged(&e), "{e}");
    }
}
