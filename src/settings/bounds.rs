//! `[bounds]`: what every job of a run is held to (the grace a stop signal
//! gives it, how much of its output its log keeps) and, for the local
//! engine's jobs, a memory budget and a time budget, on by default, with
//! per-step overrides under `[bounds.steps.STEP]`.
//!
//! The default memory budget is sized from the machine: half its memory
//! (physical, or its cgroup's limit when lower) shared by the run's `-j`
//! jobs, so that the jobs of a run together never take the host down. The
//! default time budget is an hour: on the embedded warehouse, a job running
//! longer is a runaway query. The zipline executor's jobs (Spark, Flink,
//! a JVM that sizes its own memory) get neither: `executor.timeout` is
//! theirs.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::duration;
use crate::step::Step;

/// Bounds on every job of a run, and the local engine's budgets.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoundSettings {
    /// On SIGTERM or SIGHUP to a run, how long its jobs get between the
    /// SIGTERM forwarded to them and SIGKILL, e.g. `"30s"`.
    #[serde(
        default = "default_stop_grace",
        deserialize_with = "duration::required"
    )]
    pub stop_grace: Duration,
    /// The most output an attempt's log keeps, e.g. `"32MiB"`: the first
    /// half and the last half, with a line saying how much was left out.
    #[serde(default = "default_log_limit", deserialize_with = "size::required")]
    pub log_limit: u64,
    /// The local engine: the most memory one job may hold, e.g. `"4GiB"`.
    /// Default: half the machine's memory shared by the run's `-j` jobs.
    #[serde(default, deserialize_with = "memory")]
    pub memory: Option<u64>,
    /// The local engine: the longest one job may run, e.g. `"2h"`.
    /// Default: 1h.
    #[serde(default, deserialize_with = "time")]
    pub time: Option<Duration>,
    /// Per step (`staging-query`, `group-by-backfill`, ...), `memory` and
    /// `time` replacing the ones above for that step's jobs.
    #[serde(default)]
    pub steps: BTreeMap<String, StepBounds>,
}

impl Default for BoundSettings {
    fn default() -> Self {
        BoundSettings {
            stop_grace: default_stop_grace(),
            log_limit: default_log_limit(),
            memory: None,
            time: None,
            steps: BTreeMap::new(),
        }
    }
}

/// `[bounds.steps.STEP]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepBounds {
    #[serde(default, deserialize_with = "memory")]
    pub memory: Option<u64>,
    #[serde(default, deserialize_with = "time")]
    pub time: Option<Duration>,
}

/// The smallest memory bound taken: below it a job cannot hold its own
/// configs and SQLite's caches.
pub const MIN_MEMORY: u64 = 16 << 20;
/// The smallest default memory bound, however many jobs share the machine
/// (but never more than half of it).
const MIN_DEFAULT_MEMORY: u64 = 256 << 20;
/// What a machine whose memory cannot be read is taken to have.
const UNKNOWN_MACHINE: u64 = 8 << 30;
/// The default time bound of a local engine job.
pub const DEFAULT_TIME: Duration = Duration::from_secs(3600);

/// Where a bound comes from, for the message that says what to raise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Sized by the tool (`[bounds]` says nothing).
    Default,
    /// `[bounds] memory` or `time`.
    Bounds,
    /// `[bounds.steps.STEP]`.
    Step,
}

/// One local engine job's bounds, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobBounds {
    pub step: Step,
    /// Bytes.
    pub memory: u64,
    pub memory_from: Origin,
    pub time: Duration,
    pub time_from: Origin,
    /// What the default memory bound was sized from: the machine's memory
    /// (`None` when it could not be read) and the jobs sharing it.
    pub machine: Option<u64>,
    pub jobs: usize,
}

impl BoundSettings {
    /// The bounds of a local engine job of `step` in a run of `jobs` jobs
    /// at once: the step's setting, else `[bounds]`'s, else the default.
    pub fn for_step(&self, step: Step, jobs: usize) -> JobBounds {
        let per_step = self.steps.get(step.name());
        let (memory, memory_from) = pick(per_step.and_then(|s| s.memory), self.memory);
        let (time, time_from) = pick(per_step.and_then(|s| s.time), self.time);
        let machine = machine_memory();
        let jobs = jobs.max(1);
        JobBounds {
            step,
            memory: memory.unwrap_or_else(|| default_memory(machine, jobs)),
            memory_from,
            time: time.unwrap_or(DEFAULT_TIME),
            time_from,
            machine,
            jobs,
        }
    }
}

/// Half of `machine` (or of `UNKNOWN_MACHINE`) shared by `jobs`, at least
/// `MIN_DEFAULT_MEMORY` unless that is more than half the machine.
fn default_memory(machine: Option<u64>, jobs: usize) -> u64 {
    let half = machine.unwrap_or(UNKNOWN_MACHINE) / 2;
    (half / jobs as u64)
        .max(MIN_DEFAULT_MEMORY.min(half))
        .max(MIN_MEMORY)
}

/// The step's value, else the section's, and where it came from.
fn pick<T>(step_value: Option<T>, value: Option<T>) -> (Option<T>, Origin) {
    match (step_value, value) {
        (Some(v), _) => (Some(v), Origin::Step),
        (None, Some(v)) => (Some(v), Origin::Bounds),
        (None, None) => (None, Origin::Default),
    }
}

impl JobBounds {
    /// Why a job its memory bound stopped failed, and what to raise.
    pub fn memory_exceeded(&self) -> String {
        let why = match (self.memory_from, self.machine) {
            (Origin::Default, Some(machine)) => format!(
                " (the default: half of this machine's {} shared by -j {} job(s))",
                show_size(machine),
                self.jobs
            ),
            (Origin::Default, None) => format!(
                " (the default: half of an assumed {} shared by -j {} job(s))",
                show_size(UNKNOWN_MACHINE),
                self.jobs
            ),
            _ => String::new(),
        };
        format!(
            "stopped after using {}, the memory bound{why}; raise {} in {}",
            show_size(self.memory),
            self.setting("memory", self.memory_from),
            super::FILE_NAME
        )
    }

    /// Why a job its time bound stopped failed, and what to raise.
    pub fn time_exceeded(&self) -> String {
        let why = match self.time_from {
            Origin::Default => " (the default)",
            _ => "",
        };
        format!(
            "stopped after {}, the time bound{why}; raise {} in {}",
            humantime::format_duration(Duration::from_secs(self.time.as_secs())),
            self.setting("time", self.time_from),
            super::FILE_NAME
        )
    }

    fn setting(&self, key: &str, origin: Origin) -> String {
        let step = self.step.name();
        match origin {
            Origin::Step => format!("[bounds.steps.{step}] {key}"),
            Origin::Bounds | Origin::Default => {
                format!("[bounds] {key} (or [bounds.steps.{step}] {key})")
            }
        }
    }
}

/// Bytes for people: `1.5 GiB`, `64 MiB`, `900 KiB`.
pub fn show_size(bytes: u64) -> String {
    let units = [(30, "GiB"), (20, "MiB"), (10, "KiB")];
    for (shift, unit) in units {
        let one = 1u64 << shift;
        if bytes >= one {
            let tenths = (bytes as u128 * 10 / one as u128) as u64;
            return if tenths.is_multiple_of(10) {
                format!("{} {unit}", tenths / 10)
            } else {
                format!("{}.{} {unit}", tenths / 10, tenths % 10)
            };
        }
    }
    format!("{bytes} B")
}

/// The machine's memory as this process sees it: physical memory, or its
/// cgroup's limit (a container's, a systemd unit's) when lower. Read once.
pub fn machine_memory() -> Option<u64> {
    static MEMORY: OnceLock<Option<u64>> = OnceLock::new();
    *MEMORY.get_or_init(|| {
        // SAFETY: sysconf only reads system values.
        let (pages, page) = unsafe {
            (
                libc::sysconf(libc::_SC_PHYS_PAGES),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let physical = (pages > 0 && page > 0).then(|| pages as u64 * page as u64);
        [physical, cgroup_limit()].into_iter().flatten().min()
    })
}

/// The memory limit of this process's cgroup (v2: `memory.max` of its own
/// cgroup and of the root the process sees; v1: `memory.limit_in_bytes`),
/// if it has a numeric one.
fn cgroup_limit() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("0::").map(str::to_string))
        })
        .map(|path| format!("/sys/fs/cgroup{}/memory.max", path.trim_end_matches('/')));
    let files = [
        own,
        Some("/sys/fs/cgroup/memory.max".to_string()),
        Some("/sys/fs/cgroup/memory/memory.limit_in_bytes".to_string()),
    ];
    files
        .into_iter()
        .flatten()
        .filter_map(|file| {
            std::fs::read_to_string(file)
                .ok()?
                .trim()
                .parse::<u64>()
                .ok()
        })
        .filter(|&n| n > 0)
        .min()
}

fn default_stop_grace() -> Duration {
    Duration::from_secs(30)
}

fn default_log_limit() -> u64 {
    32 << 20
}

/// `memory`: a size of `MIN_MEMORY` to 1024 GiB.
fn memory<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let text = String::deserialize(d)?;
    let bytes = size::parse(&text).map_err(serde::de::Error::custom)?;
    if bytes < MIN_MEMORY {
        return Err(serde::de::Error::custom(format!(
            "{text:?}: expected 16MiB to 1024GiB"
        )));
    }
    Ok(Some(bytes))
}

/// `time`: a duration of at least a second.
fn time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    let value = duration::parse(&text).map_err(serde::de::Error::custom)?;
    if value < Duration::from_secs(1) {
        return Err(serde::de::Error::custom(format!(
            "{text:?}: expected at least 1s"
        )));
    }
    Ok(Some(value))
}

/// Sizes such as `32MiB`, `500KB`, `1GiB` or a number of bytes: at least
/// 1 KiB (a log must hold its header and a few lines), at most 1 TiB.
pub(crate) mod size {
    use serde::{Deserialize, Deserializer};

    const EXPECTED: &str = "expected a size such as 32MiB, 500KB or 1GiB";

    pub fn parse(text: &str) -> Result<u64, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let unit_bytes: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" => 1000,
            "KiB" => 1 << 10,
            "MB" => 1000 * 1000,
            "MiB" => 1 << 20,
            "GB" => 1000 * 1000 * 1000,
            "GiB" => 1 << 30,
            _ => return Err(format!("{EXPECTED}, got {text:?}")),
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{EXPECTED}, got {text:?}"))?;
        n.checked_mul(unit_bytes)
            .filter(|b| (1 << 10..=1 << 40).contains(b))
            .ok_or_else(|| format!("{text:?}: expected 1KiB to 1024GiB"))
    }

    pub fn required<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> BoundSettings {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn a_step_s_bound_wins_over_the_section_s_and_the_default_fills_the_rest() {
        let b = settings(
            "memory = \"2GiB\"\n[steps.staging-query]\ntime = \"10m\"\n[steps.join-part]\nmemory = \"64MiB\"\n",
        );
        let sq = b.for_step(Step::StagingQuery, 4);
        assert_eq!((sq.memory, sq.memory_from), (2 << 30, Origin::Bounds));
        assert_eq!(
            (sq.time, sq.time_from),
            (Duration::from_secs(600), Origin::Step)
        );
        let part = b.for_step(Step::JoinPart, 4);
        assert_eq!((part.memory, part.memory_from), (64 << 20, Origin::Step));
        assert_eq!((part.time, part.time_from), (DEFAULT_TIME, Origin::Default));
        assert!(
            part.memory_exceeded().contains(
                "stopped after using 64 MiB, the memory bound; raise [bounds.steps.join-part] memory in chronon-build.toml"
            ),
            "{}",
            part.memory_exceeded()
        );
        assert_eq!(
            sq.memory_exceeded(),
            "stopped after using 2 GiB, the memory bound; raise [bounds] memory \
             (or [bounds.steps.staging-query] memory) in chronon-build.toml"
        );
        assert_eq!(
            part.time_exceeded(),
            "stopped after 1h, the time bound (the default); raise [bounds] time \
             (or [bounds.steps.join-part] time) in chronon-build.toml"
        );
    }

    #[test]
    fn the_default_memory_is_half_the_machine_shared_by_the_jobs() {
        let gib = 1u64 << 30;
        assert_eq!(default_memory(Some(24 * gib), 2), 6 * gib);
        assert_eq!(default_memory(Some(24 * gib), 8), 3 * gib / 2);
        // Many jobs on a small machine: each still gets 256 MiB...
        assert_eq!(default_memory(Some(4 * gib), 1000), 256 << 20);
        // ...unless that is more than half the machine.
        assert_eq!(default_memory(Some(256 << 20), 4), 128 << 20);
        assert_eq!(default_memory(Some(1 << 20), 4), MIN_MEMORY);
        assert_eq!(default_memory(None, 1), 4 * gib);
        let machine = machine_memory().expect("this machine's memory is known");
        let b = BoundSettings::default().for_step(Step::StagingQuery, 2);
        assert_eq!(b.memory, default_memory(Some(machine), 2));
        assert!(
            b.memory_exceeded()
                .contains("(the default: half of this machine's"),
            "{}",
            b.memory_exceeded()
        );
    }

    #[test]
    fn bounds_out_of_range_are_refused() {
        for bad in [
            "memory = \"1MiB\"",
            "memory = \"2TiB\"",
            "memory = \"lots\"",
            "time = \"0s\"",
            "time = \"500ms\"",
            "time = \"400d\"",
            "[steps.staging-query]\nmemory = \"1KiB\"",
            "[steps.staging-query]\ncpu = \"1\"",
        ] {
            assert!(toml::from_str::<BoundSettings>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_show_in_binary_units() {
        assert_eq!(show_size(3 << 29), "1.5 GiB");
        assert_eq!(show_size(64 << 20), "64 MiB");
        assert_eq!(show_size(1000), "1000 B");
    }
}
