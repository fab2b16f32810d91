//! One writer at a time per state file: an OS file lock on `<state>.lock`,
//! which also names its holder so a refused run can say who holds it. The
//! lock goes away with the process, so a crashed run never leaves it behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::Error;

pub enum StateLock {
    File(File),
    /// On PostgreSQL: an advisory lock, held by its own connection.
    Postgres(Box<crate::store::pg_lock::PgLock>),
}

/// Takes the lock of the state wherever it is (`acquire` for a file),
/// or fails naming the holder; with `wait`, blocks until the holder is
/// done.
pub fn acquire_at(location: &crate::store::StateLocation, wait: bool) -> Result<StateLock, Error> {
    use crate::store::StateLocation;
    match location {
        StateLocation::File(path) => acquire(path, wait),
        StateLocation::Postgres(pg) => match crate::store::pg_lock::lock(pg, wait)? {
            Ok(lock) => Ok(StateLock::Postgres(Box::new(lock))),
            Err(held) => Err(Error::Locked(format!(
                "{} is in use by {}; wait for it to finish, or pass --wait-lock",
                pg.name, held.0
            ))),
        },
    }
}

pub fn lock_path(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the lock, or fails naming the holder; with `wait`, blocks until
/// the holder is done.
pub fn acquire(state: &Path, wait: bool) -> Result<StateLock, Error> {
    let path = lock_path(state);
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
        .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let holder = holder(&mut file);
            if !wait {
                return Err(Error::Locked(format!(
                    "{} is in use by {holder}; wait for it to finish, or pass --wait-lock",
                    state.display()
                )));
            }
            errln!("waiting for {} (held by {holder})", state.display());
            file.lock()
                .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        }
        Err(TryLockError::Error(e)) => {
            return Err(Error::Io(format!("{}: cannot lock: {e}", path.display())));
        }
    }
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
    written.map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    Ok(StateLock::File(file))
}

fn holder(file: &mut File) -> String {
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
