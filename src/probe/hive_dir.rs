//! The `hive-dir` probe: `ROOT/<ns>.db/<table>/<col>=YYYY-MM-DD/...`, each
//! partition folder fingerprinted by its `stat` (`folder`), its files'
//! sizes and times (`listing`), or their contents (`content`). Listings go
//! through rustix, relative to open folders.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};

use super::{Layouts, Partitions, Probe, ProbeError, TableLayout, only_days};
use crate::config::TableRef;
use crate::hash::Hash;
use crate::partition::Day;
use crate::settings::FingerprintMode;

pub struct HiveDir {
    pub root: PathBuf,
    pub layouts: Layouts,
    pub mode: FingerprintMode,
}

impl HiveDir {
    /// `ns.t` lives in `ROOT/ns.db/t`; a table with no namespace is in `default`.
    pub fn table_dir(&self, table: &str) -> PathBuf {
        let (ns, name) = table.split_once('.').unwrap_or(("default", table));
        self.root.join(format!("{ns}.db")).join(name)
    }

    /// The entries of the folder of `table` (`ns.t` or `ns.t/hr=00`, the
    /// base table's folder), with its folder; `None` when it has none.
    fn entries(&self, table: &str) -> Result<Option<(PathBuf, std::fs::ReadDir)>, ProbeError> {
        let dir = self.table_dir(TableRef::split(table).0);
        match std::fs::read_dir(&dir) {
            Ok(entries) => Ok(Some((dir, entries))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(listing_error(table, &dir, e)),
        }
    }
}

/// The day of a partition folder's name (`ds=2025-01-01`) in a table's
/// layout, whose `prefix` is its column and `=`.
fn partition_day(name: &std::ffi::OsStr, prefix: &str, layout: &TableLayout) -> Option<Day> {
    name.to_str()
        .and_then(|n| n.strip_prefix(prefix))
        .and_then(|v| layout.format.parse_day(v))
}

impl Probe for HiveDir {
    /// The first partition folder found, without fingerprinting any.
    fn has_partitions(&self, table: &str) -> Result<bool, ProbeError> {
        let (base, sub) = TableRef::split(table);
        let Some((dir, entries)) = self.entries(table)? else {
            return Ok(false);
        };
        let layout = self.layouts.of(base);
        let prefix = format!("{}=", layout.column);
        for entry in entries {
            let entry = entry.map_err(|e| listing_error(table, &dir, e))?;
            let is_day = partition_day(&entry.file_name(), &prefix, layout).is_some();
            let path = entry.path();
            if is_day && path.is_dir() && sub.is_none_or(|s| path.join(s).is_dir()) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn list_days(&self, table: &str, days: &[Day]) -> Result<Partitions, ProbeError> {
        let (base, sub) = TableRef::split(table);
        // Many days (a range job, an adoption): one listing of the table
        // costs less than a lookup of each partition's path.
        if days.len() > 16 {
            return Ok(only_days(self.list(table)?, days));
        }
        let dir = self.table_dir(base);
        let layout = self.layouts.of(base);
        let mut out = Partitions::new();
        for day in days {
            let path = dir.join(layout.partition_name(*day));
            if self.mode == FingerprintMode::Listing && sub.is_none() {
                // One open, not a stat and an open: each job's outputs are
                // probed so as it ends.
                let open = open_dir_at(rustix::fs::CWD, path.as_os_str());
                let found = match open {
                    Ok(found) => found,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => return Err(listing_error(table, &path, e)),
                };
                if let Some(folder) = found {
                    let fingerprint =
                        listing_fingerprint(folder).map_err(|e| listing_error(table, &path, e))?;
                    out.insert(*day, fingerprint);
                }
                continue;
            }
            if !path.is_dir() || sub.is_some_and(|s| !path.join(s).is_dir()) {
                continue;
            }
            out.insert(
                *day,
                fingerprint_dir(&path, self.mode).map_err(|e| listing_error(table, &path, e))?,
            );
        }
        Ok(out)
    }

    fn list(&self, table: &str) -> Result<Partitions, ProbeError> {
        let (base, sub) = TableRef::split(table);
        let Some((dir, entries)) = self.entries(table)? else {
            return Ok(Partitions::new());
        };
        // `folder` and `listing` modes read each partition folder relative
        // to the open table folder, and its files relative to it: one path
        // component to resolve per name, not the whole path (at a million
        // partitions, most of the probe's time).
        let relative = match (self.mode, sub) {
            (FingerprintMode::Folder | FingerprintMode::Listing, None) => {
                Some(std::fs::File::open(&dir).map_err(|e| listing_error(table, &dir, e))?)
            }
            _ => None,
        };
        let layout = self.layouts.of(base);
        let prefix = format!("{}=", layout.column);
        let mut out = Partitions::new();
        for entry in entries {
            let entry = entry.map_err(|e| listing_error(table, &dir, e))?;
            let name = entry.file_name();
            let Some(day) = partition_day(&name, &prefix, layout) else {
                continue;
            };
            if let Some(folder) = &relative {
                // Follows a symlink, as `is_dir` does; what is not a folder
                // (a file, a dangling symlink, a folder gone since the
                // listing) is no partition.
                let fingerprint = match self.mode {
                    FingerprintMode::Folder => stat_at(folder, &name).map(|stat| {
                        (FileType::from_raw_mode(stat.st_mode) == FileType::Directory)
                            .then(|| folder_hash(&stat))
                    }),
                    _ => open_dir_at(folder, &name)
                        .and_then(|partition| partition.map(listing_fingerprint).transpose()),
                };
                let fingerprint = match fingerprint {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    other => other.map_err(|e| listing_error(table, &entry.path(), e))?,
                };
                if let Some(fingerprint) = fingerprint {
                    out.insert(day, fingerprint);
                }
                continue;
            }
            let path = entry.path();
            // The entry's type comes with the listing (no stat).
            let is_dir = match entry.file_type() {
                Ok(t) if t.is_symlink() => path.is_dir(),
                Ok(t) => t.is_dir(),
                Err(e) => return Err(listing_error(table, &path, e)),
            };
            if !is_dir || sub.is_some_and(|s| !path.join(s).is_dir()) {
                continue;
            }
            out.insert(
                day,
                fingerprint_dir(&path, self.mode).map_err(|e| listing_error(table, &path, e))?,
            );
        }
        Ok(out)
    }
}

/// `fstatat(2)` of `name` in the open folder, following symlinks.
fn stat_at(folder: impl AsFd, name: &std::ffi::OsStr) -> std::io::Result<Stat> {
    Ok(rustix::fs::statat(folder, name, AtFlags::empty())?)
}

/// Opens the folder `name` in the open folder `folder` (following a
/// symlink); `None` when it is something else.
fn open_dir_at(folder: impl AsFd, name: &std::ffi::OsStr) -> std::io::Result<Option<OwnedFd>> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    match rustix::fs::openat(folder, name, flags, Mode::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(rustix::io::Errno::NOTDIR) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn listing_error(table: &str, path: &Path, e: std::io::Error) -> ProbeError {
    ProbeError::Listing {
        table: table.to_string(),
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Fingerprint of a partition folder: the sorted (relative path, size,
/// modification time) of its files, or their contents. Hidden files (`.crc`
/// and the like) are left out.
pub fn fingerprint_dir(dir: &Path, mode: FingerprintMode) -> std::io::Result<Hash> {
    match mode {
        FingerprintMode::Folder => Ok(folder_hash(&rustix::fs::stat(dir)?)),
        FingerprintMode::Listing => listing_fingerprint(std::fs::File::open(dir)?.into()),
        FingerprintMode::Content => {
            let mut files = Vec::new();
            walk(dir, dir, &mut files)?;
            files.sort();
            let mut hasher = blake3::Hasher::new();
            for (rel, path) in files {
                hasher.update(rel.as_bytes());
                hasher.update(&[0]);
                let mut file = std::fs::File::open(&path)?;
                std::io::copy(&mut file, &mut hasher)?;
            }
            Ok(Hash(*hasher.finalize().as_bytes()))
        }
    }
}

/// The `listing` fingerprint of an open partition folder: per file, sorted
/// by relative path, the path, a NUL, its size and its modification time in
/// nanoseconds since the epoch (0 before it), little-endian (`u64`, `u128`).
/// Names are read and stat'ed relative to their open folder.
fn listing_fingerprint(folder: OwnedFd) -> std::io::Result<Hash> {
    let mut files = Vec::new();
    walk_at(folder, "", &mut files)?;
    files.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut hasher = blake3::Hasher::new();
    for (rel, size, mtime) in files {
        hasher.update(rel.as_bytes());
        hasher.update(&[0]);
        hasher.update(&size.to_le_bytes());
        hasher.update(&mtime.to_le_bytes());
    }
    Ok(Hash(*hasher.finalize().as_bytes()))
}

/// The files under an open folder, not hidden ones: (relative path, size,
/// modification time in nanoseconds). A symlink counts as the file or
/// folder it points to, not followed into.
fn walk_at(
    folder: OwnedFd,
    prefix: &str,
    out: &mut Vec<(String, u64, u128)>,
) -> std::io::Result<()> {
    let mut entries = rustix::fs::Dir::new(folder)?;
    while let Some(entry) = entries.read() {
        let entry = entry?;
        let name = std::ffi::OsStr::from_bytes(entry.file_name().to_bytes());
        let shown = name.to_string_lossy();
        if shown.starts_with('.') {
            continue;
        }
        let rel = match prefix {
            "" => shown.into_owned(),
            _ => format!("{prefix}/{shown}"),
        };
        let fd = entries.fd()?;
        let file_type = match entry.file_type() {
            FileType::Unknown => FileType::from_raw_mode(
                rustix::fs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW)?.st_mode,
            ),
            known => known,
        };
        if file_type == FileType::Directory {
            let folder = open_dir_at(fd, name)?
                .ok_or_else(|| std::io::Error::other(format!("{rel} is no longer a folder")))?;
            walk_at(folder, &rel, out)?;
        } else {
            let stat = stat_at(fd, name)?;
            let mtime = match u128::try_from(stat.st_mtime) {
                Ok(secs) => secs * 1_000_000_000 + u128::from(stat.st_mtime_nsec),
                Err(_) => 0,
            };
            out.push((rel, stat.st_size as u64, mtime));
        }
    }
    Ok(())
}

/// The `folder` fingerprint, from the partition folder's `stat`: its
/// modification and change times and inode.
fn folder_hash(stat: &Stat) -> Hash {
    let fields = [
        stat.st_mtime,
        stat.st_mtime_nsec as i64,
        stat.st_ctime,
        stat.st_ctime_nsec as i64,
        stat.st_ino as i64,
    ];
    let mut bytes = [0u8; 40];
    for (i, field) in fields.into_iter().enumerate() {
        bytes[i * 8..i * 8 + 8].copy_from_slice(&field.to_le_bytes());
    }
    Hash(*blake3::hash(&bytes).as_bytes())
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            walk(root, &path, out)?;
        } else {
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            out.push((rel, path));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `listing` fingerprint as defined: files found through paths,
    /// sorted, each its relative path, NUL, size and modification time.
    fn listing_by_paths(dir: &Path) -> Hash {
        let mut files = Vec::new();
        walk(dir, dir, &mut files).unwrap();
        files.sort();
        let mut hasher = blake3::Hasher::new();
        for (rel, path) in files {
            let meta = std::fs::metadata(&path).unwrap();
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .unwrap_or_default();
            hasher.update(rel.as_bytes());
            hasher.update(&[0]);
            hasher.update(&meta.len().to_le_bytes());
            hasher.update(&mtime.as_nanos().to_le_bytes());
        }
        Hash(*hasher.finalize().as_bytes())
    }

    /// `has_partitions` says what a listing would: no folder, no
    /// partition folder (a file, a dangling symlink, another column, no
    /// day, no sub-partition), then one.
    #[test]
    fn a_table_has_partitions_when_its_listing_has_some() {
        let root = tempfile::tempdir().unwrap();
        let probe = HiveDir {
            root: root.path().to_path_buf(),
            layouts: Layouts::uniform("ds"),
            mode: FingerprintMode::Listing,
        };
        let table = root.path().join("ns.db/t");
        let agree = |reference: &str, expected: bool| {
            let listed = !probe.list(reference).unwrap().is_empty();
            assert_eq!(listed, expected, "{reference} listed");
            assert_eq!(
                probe.has_partitions(reference).unwrap(),
                expected,
                "{reference}"
            );
        };
        agree("ns.t", false);
        std::fs::create_dir_all(&table).unwrap();
        std::fs::write(table.join("ds=2025-01-01"), "a file").unwrap();
        std::os::unix::fs::symlink("nowhere", table.join("ds=2025-01-02")).unwrap();
        std::fs::create_dir_all(table.join("hr=2025-01-03")).unwrap();
        std::fs::create_dir_all(table.join("ds=latest")).unwrap();
        agree("ns.t", false);
        std::fs::create_dir_all(table.join("ds=2025-01-04")).unwrap();
        agree("ns.t", true);
        agree("ns.t/hr=00", false);
        std::fs::create_dir_all(table.join("ds=2025-01-04/hr=00")).unwrap();
        agree("ns.t/hr=00", true);
    }

    #[test]
    fn listing_through_descriptors_is_listing_through_paths() {
        let root = tempfile::tempdir().unwrap();
        let table = root.path().join("ns.db/t");
        let day = |d: &str| table.join(format!("ds={d}"));
        let write = |path: PathBuf, text: &str| {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write(day("2025-01-01").join("part-0.parquet"), "rows");
        write(day("2025-01-01").join("part-1.parquet"), "more rows");
        write(day("2025-01-01").join(".part-0.crc"), "hidden");
        write(day("2025-01-01").join("nested/deeper/part-2"), "x");
        write(day("2025-01-01").join(".hidden/part-3"), "y");
        write(day("2025-01-01").join("caf\u{e9}/part-4"), "z");
        std::os::unix::fs::symlink("part-0.parquet", day("2025-01-01").join("link")).unwrap();
        std::os::unix::fs::symlink("nested", day("2025-01-01").join("dir-link")).unwrap();
        // Before the epoch: counted as 0, as `duration_since` fails.
        write(day("2025-01-02").join("old"), "old");
        let old = std::fs::File::options()
            .write(true)
            .open(day("2025-01-02").join("old"))
            .unwrap();
        old.set_modified(std::time::UNIX_EPOCH - std::time::Duration::from_secs(10))
            .unwrap();
        std::fs::create_dir_all(day("2025-01-03")).unwrap();
        // Not partitions: a file, and a dangling symlink. A symlink to a
        // partition folder is one.
        write(day("2025-01-04"), "a file");
        std::os::unix::fs::symlink("ds=2025-01-01", day("2025-01-05")).unwrap();
        std::os::unix::fs::symlink("nowhere", day("2025-01-06")).unwrap();

        let folder = HiveDir {
            root: root.path().to_path_buf(),
            layouts: Layouts::uniform("ds"),
            mode: FingerprintMode::Folder,
        };
        let folders = folder.list("ns.t").unwrap();
        for (d, fingerprint) in &folders {
            let dir = day(&d.to_string());
            assert_eq!(
                fingerprint_dir(&dir, FingerprintMode::Folder).unwrap(),
                *fingerprint,
                "{d}"
            );
        }
        let folders: Vec<Day> = folders.into_keys().collect();
        let probe = HiveDir {
            root: root.path().to_path_buf(),
            layouts: Layouts::uniform("ds"),
            mode: FingerprintMode::Listing,
        };
        let listed = probe.list("ns.t").unwrap();
        let days: Vec<String> = listed.keys().map(|d| d.to_string()).collect();
        assert_eq!(
            days,
            ["2025-01-01", "2025-01-02", "2025-01-03", "2025-01-05"]
        );
        assert_eq!(folders, listed.keys().copied().collect::<Vec<_>>());
        for (d, fingerprint) in &listed {
            let dir = day(&d.to_string());
            assert_eq!(*fingerprint, listing_by_paths(&dir), "{d}");
            assert_eq!(
                fingerprint_dir(&dir, FingerprintMode::Listing).unwrap(),
                *fingerprint
            );
        }
        // What a few days' lookup finds is what the listing found, with
        // days that are files, dangling symlinks or missing left out.
        let some: Vec<Day> = listed.keys().copied().collect();
        assert_eq!(probe.list_days("ns.t", &some).unwrap(), listed);
        let first = Day::parse("2025-01-01").unwrap();
        let week: Vec<Day> = (0..7).map(|d| first.plus(d)).collect();
        assert_eq!(probe.list_days("ns.t", &week).unwrap(), listed);
        assert_eq!(
            folder
                .list_days("ns.t", &week)
                .unwrap()
                .into_keys()
                .collect::<Vec<_>>(),
            folders
        );
        assert_ne!(listed[&some[0]], listed[&some[2]]);
    }
}
