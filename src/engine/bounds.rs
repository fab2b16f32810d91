//! A local engine job's bounds (`settings::JobBounds`), enforced inside
//! the job, so that a runaway query (an endless recursive CTE, a cross
//! join) fails its target with a message instead of taking the host down:
//!
//! - **memory**: the Rust heap is counted (`heap`) and the process ends
//!   with the bound's message past the bound; SQLite's own heap is held to
//!   a quarter of it (`sqlite3_hard_heap_limit64`: past it, SQLite fails
//!   the statement, and it recycles its caches past an eighth); the progress handler of every query connection
//!   interrupts the statement once both together pass the bound; and
//!   `RLIMIT_DATA` on the job's process, at twice the bound and 1 GiB
//!   more, stops whatever else would grow (this process only: the zipline
//!   executor's JVMs size their own memory);
//! - **time**: the progress handler interrupts the statement at the
//!   deadline, and a watchdog thread ends the process `GRACE` after it
//!   (a job busy outside SQL); the runner's own deadline for the job, a
//!   little later, is the outer backstop (`run::events`).
//!
//! A job a bound stopped exits `Exit::OverMemory` or `Exit::OverTime`
//! (never 0), having written nothing more, after an `error:` line naming
//! the target, the bound and the setting to raise.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::error::Exit;
use crate::settings::JobBounds;

/// Between the deadline and the watchdog's end of the process: time for a
/// statement the progress handler interrupted to fail cleanly.
const GRACE: Duration = Duration::from_secs(2);
/// SQLite virtual machine steps between two progress handler calls.
const STEPS: i32 = 4096;

/// Which bound stopped the job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    Memory,
    Time,
}

impl Bound {
    pub fn exit(self) -> Exit {
        match self {
            Bound::Memory => Exit::OverMemory,
            Bound::Time => Exit::OverTime,
        }
    }
}

/// The bounds in force in this process.
struct Active {
    memory: u64,
    deadline: Instant,
    /// `TARGET: stopped after ...`, per bound.
    memory_message: String,
    time_message: String,
}

static ACTIVE: OnceLock<Active> = OnceLock::new();
/// 0 while no bound was passed; else 1 + the `Bound` passed first.
static PASSED: AtomicU8 = AtomicU8::new(0);

/// Puts this process (a job computing `target`, e.g.
/// `staging-query:team.x.v1@2025-01-01`) under `bounds`, from now.
pub fn enforce(bounds: &JobBounds, target: &str) {
    let active = Active {
        memory: bounds.memory,
        deadline: Instant::now() + bounds.time,
        memory_message: format!("{target}: {}", bounds.memory_exceeded()),
        time_message: format!("{target}: {}", bounds.time_exceeded()),
    };
    let memory = bounds.memory;
    let line = |message: &str| format!("error: {message}\n");
    crate::heap::limit(
        memory,
        line(&active.memory_message),
        Exit::OverMemory.code(),
    );
    // SAFETY: sets SQLite's process-wide heap limit; no pointer involved.
    // Below the soft limit SQLite recycles its caches rather than grow.
    unsafe {
        rusqlite::ffi::sqlite3_hard_heap_limit64((memory / 4) as i64);
        rusqlite::ffi::sqlite3_soft_heap_limit64((memory / 8) as i64);
    }
    limit_data(memory.saturating_mul(2).saturating_add(1 << 30));
    let deadline = active.deadline;
    let time_line = line(&active.time_message);
    if ACTIVE.set(active).is_err() {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("time bound".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
            pass(Bound::Time);
            std::thread::sleep(GRACE);
            // SAFETY: writes bytes this thread owns, then ends the process
            // as a kill would (no lock another thread holds is waited
            // for): the warehouse's writes are transactions, and a job
            // records nothing.
            unsafe {
                libc::write(2, time_line.as_ptr().cast(), time_line.len());
                libc::_exit(Exit::OverTime.code())
            }
        });
}

/// `RLIMIT_DATA` (the heap and private mappings) of this process, never
/// raised above its hard limit.
fn limit_data(bytes: u64) {
    // SAFETY: getrlimit and setrlimit read and write the struct given.
    unsafe {
        let mut current = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_DATA, &mut current) != 0 {
            return;
        }
        let wanted = (bytes as libc::rlim_t).min(current.rlim_max);
        if wanted < current.rlim_cur {
            current.rlim_cur = wanted;
            libc::setrlimit(libc::RLIMIT_DATA, &current);
        }
    }
}

fn pass(bound: Bound) {
    let _ = PASSED.compare_exchange(0, bound as u8 + 1, Relaxed, Relaxed);
}

/// The bound this job passed, if any.
pub fn passed() -> Option<Bound> {
    match PASSED.load(Relaxed) {
        1 => Some(Bound::Memory),
        2 => Some(Bound::Time),
        _ => None,
    }
}

/// What the job says when `bound` stopped it.
pub fn message(bound: Bound) -> Option<&'static str> {
    let active = ACTIVE.get()?;
    Some(match bound {
        Bound::Memory => &active.memory_message,
        Bound::Time => &active.time_message,
    })
}

/// Checks the bounds (with the bounds in force): a bound passed, or
/// passed now.
fn check() -> Option<Bound> {
    let active = ACTIVE.get()?;
    if let Some(bound) = passed() {
        return Some(bound);
    }
    let bound = if Instant::now() >= active.deadline {
        Bound::Time
    } else {
        // SAFETY: reads SQLite's memory statistics.
        let sqlite = unsafe { rusqlite::ffi::sqlite3_memory_used() }.max(0) as u64;
        if crate::heap::used().saturating_add(sqlite) <= active.memory {
            return None;
        }
        Bound::Memory
    };
    pass(bound);
    Some(bound)
}

/// Makes `conn`'s statements stop (SQLite's "interrupted") once a bound is
/// passed, when bounds are in force.
pub fn watch(conn: &mut Connection) -> rusqlite::Result<()> {
    if ACTIVE.get().is_none() {
        return Ok(());
    }
    conn.progress_handler(STEPS, Some(|| check().is_some()))
}

/// SQLite ran out of the heap it is given: with bounds in force, the
/// memory bound was passed.
pub fn out_of_memory() {
    if ACTIVE.get().is_some() {
        pass(Bound::Memory);
    }
}

/// Whether a bound stopped the job that failed with `error`: one was
/// passed, or SQLite ran out of the heap it is given (an error that did
/// not come through `sql_error`).
pub fn stopped(error: &super::EngineError) -> Option<Bound> {
    ACTIVE.get()?;
    passed().or_else(|| {
        error
            .message
            .contains("out of memory")
            .then_some(Bound::Memory)
    })
}

/// The environment variable in which the runner tells a local job how many
/// jobs its run runs at once (`-j`): they share the machine's memory.
pub const JOBS_ENV: &str = "CHRONON_BUILD_JOBS";
