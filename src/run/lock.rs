//! The state lock, on `<state>.lock`: runs take it shared, so several run
//! at once (per-target claims, `store::claims`, keep them from building a
//! target twice); `adopt` and `gc`, which write or delete across the whole
//! state and warehouse, take it exclusive. An exclusive holder writes its
//! name into the file so a refused command can say who holds it. The lock
//! goes away with the process, so a crashed run never leaves it behind.
//!
//! On PostgreSQL the lock is an advisory lock on one fixed key, shared or
//! exclusive the same way (`store::pg_lock`), which every host sharing the
//! database sees.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::Error;

pub enum StateLock {
    /// On a file: the lock lasts while the file stays open, so it is held
    /// (never read) and dropping it lets go.
    File { _held: File },
    /// On PostgreSQL: an advisory lock, held by its own connection.
    Postgres(Box<crate::store::pg_lock::PgLock>),
}

impl StateLock {
    /// Makes `store`'s writes fail once this lock is lost for good (on
    /// PostgreSQL, a server restart lets it go; `store::pg_lock` takes it
    /// again, or says it is lost).
    pub fn guard(&self, store: &crate::store::StateStore) {
        if let StateLock::Postgres(lock) = self {
            store.guard(lock);
        }
    }
}

impl StateLock {
    /// Makes sure the lock is still held, before deleting what it guards:
    /// on PostgreSQL a server restart lets it go, and it is taken again
    /// here (or found taken by another process meanwhile: then an error,
    /// and nothing may be deleted). A file lock cannot be lost.
    pub fn check(&self) -> Result<(), Error> {
        match self {
            StateLock::File { .. } => Ok(()),
            StateLock::Postgres(lock) => lock.check().map_err(Error::StateLost),
        }
    }
}

/// Takes the lock of the state wherever it is (`acquire` for a file), or
/// fails naming the holder; with `wait`, blocks until the holder is done.
pub fn acquire_at(
    location: &crate::store::StateLocation,
    mode: Mode,
    wait: bool,
) -> Result<StateLock, Error> {
    use crate::store::StateLocation;
    match location {
        StateLocation::File(path) => acquire(path, mode, wait),
        StateLocation::Postgres(pg) => {
            match crate::store::pg_lock::lock(pg, mode == Mode::Shared, wait)? {
                Ok(lock) => Ok(StateLock::Postgres(Box::new(lock))),
                Err(held) => Err(Error::Locked(format!(
                    "{} is in use by {}; wait for it to finish, or pass --wait-lock",
                    pg.name, held.0
                ))),
            }
        }
    }
}

/// How a command holds the state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `run`: with other runs.
    Shared,
    /// `adopt`, `gc`: alone.
    Exclusive,
}

pub fn lock_path(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the lock, or fails naming the holder; with `wait`, blocks until
/// the holder is done.
pub fn acquire(state: &Path, mode: Mode, wait: bool) -> Result<StateLock, Error> {
    let path = lock_path(state);
    let io = |e: std::io::Error| Error::Io(format!("{}: {e}", path.display()));
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::Io(format!("{}: {e}", parent.display())))?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io)?;
    let tried = match mode {
        Mode::Shared => file.try_lock_shared(),
        Mode::Exclusive => file.try_lock(),
    };
    match tried {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let holder = holder(&mut file, &path, mode);
            if !wait {
                return Err(Error::Locked(format!(
                    "{} is in use by {holder}; wait for it to finish, or pass --wait-lock",
                    state.display()
                )));
            }
            errln!("waiting for {} (held by {holder})", state.display());
            match mode {
                Mode::Shared => file.lock_shared(),
                Mode::Exclusive => file.lock(),
            }
            .map_err(io)?;
        }
        Err(TryLockError::Error(e)) => {
            return Err(Error::Io(format!("{}: cannot lock: {e}", path.display())));
        }
    }
    if mode == Mode::Exclusive {
        let me = format!(
            "pid {} ({})",
            std::process::id(),
            crate::store::redacted_args().join(" ")
        );
        let written = file
            .set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(me.as_bytes()))
            .and_then(|_| file.flush());
        written.map_err(io)?;
    }
    Ok(StateLock::File { _held: file })
}

/// Who holds the lock this mode was refused: the runs sharing it, or the
/// exclusive holder named in the file.
fn holder(file: &mut File, path: &Path, wanted: Mode) -> String {
    if wanted == Mode::Exclusive {
        // A shared lock through a new open file description is granted
        // when only runs hold the lock (flock locks per description).
        let shared = File::open(path).is_ok_and(|probe| probe.try_lock_shared().is_ok());
        if shared {
            return "one or more runs (chronon-build run)".into();
        }
    }
    let mut text = String::new();
    let _ = file.seek(SeekFrom::Start(0));
    let _ = file.read_to_string(&mut text);
    let text = text.trim();
    if text.is_empty() {
        "another chronon-build process".into()
    } else {
        text.to_string()
    }
}
