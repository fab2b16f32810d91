//! Writing through a lost connection: when the PostgreSQL server restarts
//! or the connection drops, a write transaction is rolled back by the
//! server; it is run again, from the start, on a new connection, after a
//! backoff (0.25 s doubling to 5 s: `reconnect_until`, which a command
//! waiting for the state's lock uses too), for up to `RECONNECT_FOR`. Node ids
//! learnt in the lost transaction are forgotten (it may not have
//! committed them). A transaction whose commit was sent but not answered
//! is run again: every write is an upsert or a delete, so running it twice
//! records the same, and what was never written is never recorded as
//! built. Before anything on a new connection, the state's lock is made
//! sure of (`pg_lock`: the server may have restarted and let it go), and
//! nothing runs once it is lost for good.
//! On SQLite, a write runs once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::db::{Db, DbError, DbResult};
use super::{NodeKey, StateLocation};

/// How long a write keeps trying to reach a server that went away.
pub const RECONNECT_FOR: Duration = Duration::from_secs(60);

/// Runs `work` in a write transaction, again on a new connection when the
/// connection was lost.
pub(super) fn retrying<T>(
    db: &Db,
    location: &StateLocation,
    node_ids: &mut HashMap<NodeKey, i64>,
    mut work: impl FnMut(&Db, &mut HashMap<NodeKey, i64>) -> DbResult<T>,
) -> DbResult<T> {
    again(db, location, |db, lost| {
        if lost {
            node_ids.clear();
        }
        db.transaction(|db| work(db, node_ids))
    })
}

/// Runs `work` (a read, or one statement), again on a new connection when
/// the connection was lost.
pub(super) fn reading<T>(
    db: &Db,
    location: &StateLocation,
    mut work: impl FnMut(&Db) -> DbResult<T>,
) -> DbResult<T> {
    again(db, location, |db, _| work(db))
}

/// Runs `attempt` (told whether a connection was lost before), and again
/// after reconnecting while the connection is lost, until `reconnect_for`.
fn again<T>(
    db: &Db,
    location: &StateLocation,
    mut attempt: impl FnMut(&Db, bool) -> DbResult<T>,
) -> DbResult<T> {
    let StateLocation::Postgres(pg) = location else {
        return attempt(db, false);
    };
    let deadline = Instant::now() + reconnect_for();
    let mut delay = FIRST_DELAY;
    let mut lost = false;
    loop {
        db.check_lock(lost)?;
        let error = match attempt(db, lost) {
            Ok(value) => return Ok(value),
            Err(e) if db.lost(&e) => e,
            Err(e) => return Err(e),
        };
        lost = true;
        let said = location.redact(&error.to_string());
        let reconnected = reconnect_until(
            deadline,
            &mut delay,
            |delay| {
                errln!(
                    "warning: {}: connection lost ({said}); reconnecting in {:.2} s",
                    pg.name,
                    delay.as_secs_f64()
                )
            },
            || db.reconnect(pg).ok(),
        );
        if reconnected.is_none() {
            return Err(DbError::Other(format!(
                "lost the connection ({said}) and could not reconnect within {} s",
                reconnect_for().as_secs()
            )));
        }
    }
}

/// The first wait before reconnecting; each next one doubles, up to
/// `LAST_DELAY`.
pub(super) const FIRST_DELAY: Duration = Duration::from_millis(250);
const LAST_DELAY: Duration = Duration::from_secs(5);

/// Waits `delay` (said first by `say`), then tries `connect`, the delay
/// doubling each time up to `LAST_DELAY`, until it connects; `None` once
/// `deadline` has passed before a wait.
pub(super) fn reconnect_until<T>(
    deadline: Instant,
    delay: &mut Duration,
    mut say: impl FnMut(Duration),
    mut connect: impl FnMut() -> Option<T>,
) -> Option<T> {
    loop {
        if Instant::now() >= deadline {
            return None;
        }
        say(*delay);
        std::thread::sleep(*delay);
        *delay = (*delay * 2).min(LAST_DELAY);
        if let Some(connected) = connect() {
            return Some(connected);
        }
    }
}

/// `RECONNECT_FOR`, or `CHRONON_BUILD_STATE_RECONNECT_SECS` (the tests
/// shorten it).
pub(super) fn reconnect_for() -> Duration {
    std::env::var("CHRONON_BUILD_STATE_RECONNECT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(RECONNECT_FOR, Duration::from_secs)
}
