//! Tables written by the real Python libraries, for the readers' tests:
//! `tests/formats/write_tables.py` run by the python that
//! `CHRONON_BUILD_FORMATS_PY` names (`scripts/formats-venv` makes it). Tests
//! that need one skip, saying why, when it is not set.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use super::{Change, Content, FileIdentity, PartitionSums};
use crate::partition::{Day, DayFormat};
use crate::table::Partitions;

/// One scenario's tables, in a folder removed when dropped.
pub struct Scenario {
    pub dir: tempfile::TempDir,
    pub steps: Vec<Step>,
}

#[derive(Debug, Deserialize)]
struct Report {
    steps: Vec<Step>,
}

/// The table as one step left it, as the writing library reports it.
#[derive(Debug, Deserialize)]
pub struct Step {
    pub step: String,
    pub location: String,
    pub touched: BTreeSet<Day>,
    pub files: Vec<WrittenFile>,
}

#[derive(Debug, Deserialize)]
pub struct WrittenFile {
    pub path: String,
    pub day: Option<String>,
    pub size: u64,
    pub records: Option<u64>,
    pub content: u8,
}

impl Step {
    /// The partitions a cold read must find: the live files the library
    /// lists, summed by day (their partition values in `format`). Delta's
    /// files are hashed without their record counts, as the reader does
    /// not read statistics.
    pub fn expected(&self, with_records: bool, format: &DayFormat) -> Partitions {
        let mut sums = PartitionSums::default();
        for file in &self.files {
            let day = file
                .day
                .as_deref()
                .and_then(|value| format.parse_day(value))
                .unwrap_or_else(|| panic!("{}: {file:?} has no day", self.step));
            let content = match file.content {
                0 => Content::Data,
                1 => Content::PositionDeletes,
                _ => Content::EqualityDeletes,
            };
            let identity = FileIdentity {
                path: &file.path,
                size: file.size,
                records: file.records.filter(|_| with_records),
                content,
                deletion_vector: None,
            };
            sums.apply(day, &identity, Change::Added, true);
        }
        sums.partitions()
    }
}

/// The days whose fingerprint differs, or that are in one and not the other.
pub fn changed_days(before: &Partitions, after: &Partitions) -> BTreeSet<Day> {
    let days: BTreeSet<Day> = before.keys().chain(after.keys()).copied().collect();
    days.into_iter()
        .filter(|day| before.get(day) != after.get(day))
        .collect()
}

/// The python with the writers, or `None` after saying why the test skips.
fn python(test: &str) -> Option<PathBuf> {
    let skip = |why: String| {
        // `scripts/test` installs the writers: there, a skip is a failure.
        if std::env::var_os("CHRONON_BUILD_REQUIRE_TOOLS").is_some() {
            panic!("{test}: {why}, and CHRONON_BUILD_REQUIRE_TOOLS is set");
        }
        eprintln!(
            "skipped {test}: {why}; run `export CHRONON_BUILD_FORMATS_PY=\"$(scripts/formats-venv)\"` to run it"
        );
        None
    };
    let Some(path) = std::env::var_os("CHRONON_BUILD_FORMATS_PY") else {
        return skip("CHRONON_BUILD_FORMATS_PY is not set".into());
    };
    let path = PathBuf::from(path);
    if !path.is_file() {
        return skip(format!(
            "CHRONON_BUILD_FORMATS_PY={} is not a file",
            path.display()
        ));
    }
    Some(path)
}

/// Writes `scenario`'s tables, or `None` (skipped) without the python.
pub fn write(test: &str, scenario: &str) -> Option<Scenario> {
    let python = python(test)?;
    let dir = tempfile::tempdir().expect("a temporary folder");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/formats/write_tables.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg(dir.path())
        .arg(scenario)
        .output()
        .expect("the python runs");
    assert!(
        output.status.success(),
        "{scenario}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Report = serde_json::from_slice(&output.stdout).expect("the writer's report");
    Some(Scenario {
        dir,
        steps: report.steps,
    })
}

/// A storage that records what was read and listed, over the local one.
#[derive(Default)]
pub struct Recording {
    pub reads: std::sync::Mutex<Vec<String>>,
}

impl Recording {
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.reads.lock().unwrap())
    }
}

impl super::storage::Storage for Recording {
    fn read(&self, location: &str) -> Result<Vec<u8>, super::storage::StorageError> {
        self.reads.lock().unwrap().push(location.to_string());
        super::storage::LocalStorage.read(location)
    }

    fn list(
        &self,
        folder: &str,
        after: Option<&str>,
    ) -> Result<Vec<super::storage::Listed>, super::storage::StorageError> {
        self.reads.lock().unwrap().push(format!("list {folder}"));
        super::storage::LocalStorage.list(folder, after)
    }
}
