//! The state's lock on PostgreSQL: a session advisory lock on one fixed
//! key (<https://www.postgresql.org/docs/15/explicit-locking.html#ADVISORY-LOCKS>),
//! held by a connection of the process that holds it. The server lets it
//! go when that connection ends, so a killed run never leaves it behind,
//! and every host that shares the database sees it.
//!
//! The server also lets it go when it restarts. So a thread checks the
//! lock's connection every `CHECK_EVERY`, and every write checks it after
//! its own connection was lost (`retry.rs`): a lost one is replaced and
//! the lock taken again in the same mode, before anything is written. When
//! it cannot be (an exclusive holder got in between, or the server stays
//! away), the lock is lost for good: every later write of the state fails
//! with `DbError::LockLost`, and a run stops as when its state is lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::db::{DbError, LockCheck};
use super::{PgLocation, StateLocation, StoreError, pg_error};

/// The advisory lock key of the state ("chronon" in ASCII).
pub const STATE_LOCK: i64 = 0x0063_6872_6f6e_6f6e;

/// How often the lock's connection is checked.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Holds the lock while it lives.
pub struct PgLock {
    keeper: Arc<Keeper>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// The lock's connection, and whether the lock was lost for good.
pub(super) struct Keeper {
    pg: PgLocation,
    shared: bool,
    client: Mutex<postgres::Client>,
    lost: Mutex<Option<String>>,
    stopping: AtomicBool,
}

/// Who holds a lock this process could not take.
pub struct Held(pub String);

/// Takes the state's lock, shared (runs) or exclusive (`adopt`, `gc`), or
/// says who holds it; with `wait`, waits for it.
pub fn lock(pg: &PgLocation, shared: bool, wait: bool) -> Result<Result<PgLock, Held>, StoreError> {
    let client = match take(pg, shared, wait)? {
        Ok(client) => client,
        Err(held) => return Ok(Err(held)),
    };
    let keeper = Arc::new(Keeper {
        pg: pg.clone(),
        shared,
        client: Mutex::new(client),
        lost: Mutex::new(None),
        stopping: AtomicBool::new(false),
    });
    let (stop, stopped) = mpsc::channel::<()>();
    let watched = Arc::clone(&keeper);
    let thread = std::thread::Builder::new()
        .name("state-lock".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECK_EVERY) {
                if watched.check().is_err() {
                    break;
                }
            }
        })
        .map_err(|e| StoreError::Open {
            path: pg.name.clone(),
            message: format!("cannot start the thread that keeps the lock: {e}"),
        })?;
    Ok(Ok(PgLock {
        keeper,
        stop: Some(stop),
        thread: Some(thread),
    }))
}

impl PgLock {
    pub(super) fn keeper(&self) -> Arc<Keeper> {
        Arc::clone(&self.keeper)
    }

    /// Makes sure the lock is held, taking it again if its connection was
    /// lost; the error says why it cannot be.
    pub fn check(&self) -> Result<(), String> {
        self.keeper.check()
    }
}

impl Drop for PgLock {
    fn drop(&mut self) {
        self.keeper.stopping.store(true, Ordering::Relaxed);
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl LockCheck for Keeper {
    fn lost(&self) -> Option<String> {
        self.lost.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Checks the lock's connection; a lost one is replaced and the lock
    /// taken again, or the lock is lost for good (the error says why).
    fn check(&self) -> Result<(), String> {
        let mut client = self.client.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(why) = self.lost() {
            return Err(why);
        }
        if client.is_valid(Duration::from_secs(10)).is_ok() {
            return Ok(());
        }
        match self.retake() {
            Ok(new) => {
                *client = new;
                errln!(
                    "warning: {}: the connection holding the state's lock was lost; took the \
                     lock again ({})",
                    self.pg.name,
                    if self.shared { "shared" } else { "exclusive" }
                );
                Ok(())
            }
            Err(why) => {
                *self.lost.lock().unwrap_or_else(|e| e.into_inner()) = Some(why.clone());
                Err(why)
            }
        }
    }
}

impl Keeper {
    /// A new connection holding the lock in the same mode, trying again
    /// (0.1 s doubling to 1 s) while the server is away, for as long as a
    /// write would (`retry::reconnect_for`).
    fn retake(&self) -> Result<postgres::Client, String> {
        let limit = super::retry::reconnect_for();
        let deadline = Instant::now() + limit;
        let mut delay = Duration::from_millis(100);
        loop {
            let error = match take(&self.pg, self.shared, false) {
                Ok(Ok(client)) => return Ok(client),
                Ok(Err(Held(holder))) => {
                    return Err(format!(
                        "lost the state's lock (its connection dropped) and {holder} took it \
                         meanwhile, so this process no longer holds the state"
                    ));
                }
                Err(e) => e,
            };
            if Instant::now() >= deadline || self.stopping.load(Ordering::Relaxed) {
                return Err(format!(
                    "lost the state's lock (its connection dropped) and could not take it again \
                     within {} s ({error})",
                    limit.as_secs()
                ));
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }
}

/// A connection holding the lock, or who holds it.
fn take(
    pg: &PgLocation,
    shared: bool,
    wait: bool,
) -> Result<Result<postgres::Client, Held>, StoreError> {
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
    let mut client = named_connection(pg).map_err(fail)?;
    let taken: bool = client
        .query_one(try_lock, &[&STATE_LOCK])
        .map_err(fail)?
        .get(0);
    if taken {
        return Ok(Ok(client));
    }
    let holder = holder(&mut client).unwrap_or_else(|| "another chronon-build process".into());
    if !wait {
        return Ok(Err(Held(holder)));
    }
    errln!("waiting for {} (held by {holder})", pg.name);
    // A server that restarts while we wait drops the wait with the
    // connection: wait again on a new one, reconnecting as a write does
    // (`retry::reconnect_until`, for `retry::reconnect_for` at a time).
    loop {
        let error = match client.execute(lock, &[&STATE_LOCK]) {
            Ok(_) => return Ok(Ok(client)),
            Err(e) if client.is_closed() || super::db::connection_lost(&e) => e,
            Err(e) => return Err(fail(e)),
        };
        let said = location.redact(&error.to_string());
        let (mut last, mut delay) = (None, super::retry::FIRST_DELAY);
        let reconnected = super::retry::reconnect_until(
            Instant::now() + super::retry::reconnect_for(),
            &mut delay,
            |delay| {
                errln!(
                    "warning: {}: connection lost while waiting for the state's lock ({said}); \
                     reconnecting in {:.2} s",
                    pg.name,
                    delay.as_secs_f64()
                )
            },
            || named_connection(pg).map_err(|e| last = Some(e)).ok(),
        );
        client = match reconnected {
            Some(client) => client,
            None => return Err(fail(last.unwrap_or(error))),
        };
    }
}

/// A connection named after this process (pid and host), as holders are
/// told apart in `holder`.
fn named_connection(pg: &PgLocation) -> Result<postgres::Client, postgres::Error> {
    let mut client = pg.connect()?;
    let me = format!("pid {} on {}", std::process::id(), hostname());
    client.execute("SELECT set_config('application_name', $1, false)", &[&me])?;
    Ok(client)
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
