//! The state's lock on PostgreSQL: a session advisory lock on one fixed
//! key (<https://www.postgresql.org/docs/15/explicit-locking.html#ADVISORY-LOCKS>),
//! held by a connection of the process that holds it. The server lets it
//! go when that connection ends, so a killed run never leaves it behind,
//! and every host that shares the database sees it.

use super::db::DbError;
use super::{PgLocation, StateLocation, StoreError, pg_error};

/// The advisory lock key of the state ("chronon" in ASCII).
pub const STATE_LOCK: i64 = 0x0063_6872_6f6e_6f6e;

/// Holds the lock while it lives.
pub struct PgLock {
    _client: postgres::Client,
}

/// Who holds a lock this process could not take.
pub struct Held(pub String);

/// Takes the state's lock, shared (runs) or exclusive (`adopt`, `gc`), or
/// says who holds it; with `wait`, waits for it.
pub fn lock(pg: &PgLocation, shared: bool, wait: bool) -> Result<Result<PgLock, Held>, StoreError> {
    let (try_lock, lock) = if shared {
        (
            "SELECT pg_try_advisory_lock_shared($1)",
            "SELECT pg_advisory_lock_shared($1)",
        )
    } else {
        (
            "SELECT pg_try_advisory_lock($1)",
            "SELECT pg_advisory_lock($1)",
        )
    };
    let location = StateLocation::Postgres(pg.clone());
    let fail = |e: postgres::Error| pg_error(&location, DbError::Pg(e));
    let mut client = pg.connect().map_err(fail)?;
    let me = format!("pid {} on {}", std::process::id(), hostname());
    client
        .execute("SELECT set_config('application_name', $1, false)", &[&me])
        .map_err(fail)?;
    let taken: bool = client
        .query_one(try_lock, &[&STATE_LOCK])
        .map_err(fail)?
        .get(0);
    if taken {
        return Ok(Ok(PgLock { _client: client }));
    }
    let holder = holder(&mut client).unwrap_or_else(|| "another chronon-build process".into());
    if !wait {
        return Ok(Err(Held(holder)));
    }
    errln!("waiting for {} (held by {holder})", pg.name);
    client.execute(lock, &[&STATE_LOCK]).map_err(fail)?;
    Ok(Ok(PgLock { _client: client }))
}

/// The application name of a session that holds the lock (a
/// chronon-build names itself with its pid and host); runs holding it
/// shared are said as such.
fn holder(client: &mut postgres::Client) -> Option<String> {
    let row = client
        .query_opt(
            "SELECT CASE WHEN l.mode = 'ShareLock' THEN 'one or more runs (chronon-build run)'
                    ELSE a.application_name END
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid()
               AND l.classid::bigint = ($1::bigint >> 32) AND l.objid::bigint = ($1::bigint & 4294967295)
             LIMIT 1",
            &[&STATE_LOCK],
        )
        .ok()??;
    row.try_get::<_, String>(0).ok().filter(|s| !s.is_empty())
}

/// This host's name.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; the name is cut there.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown host".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
