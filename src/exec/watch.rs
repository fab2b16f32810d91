//! Jobs die with their runner: one watchdog per run, the runner's own
//! binary started as `chronon-build __watch-run GRACE_MS RUNNER LOG` when
//! the run starts its first job (`RUNNER`: the runner's `pid:start`, so a
//! later run can find the watchdog of a runner that is gone, `of_runner`;
//! `LOG`: where it says what it did, written only when it does something).
//!
//! The watchdog runs in a session (and so a process group) of its own and
//! ignores SIGINT, SIGTERM and SIGHUP: a Ctrl-C, a `kill -- -PGID` aimed at
//! the runner's group or a closed terminal does not reach it. Its standard
//! input is a pipe whose write end only the runner holds (close-on-exec, so
//! no job inherits it). The runner writes one line per event: `+PGID` when
//! it started a job (each job leads its own process group,
//! `spawn::start_piped`), `-PGID` when the job exited (before it is
//! reaped, so its pid cannot be reused meanwhile), and `end` when the run
//! ends with no job left.
//!
//! End of file without `end` means the runner is gone (SIGKILL, the OOM
//! killer, a lost session): the kernel closed its end. The watchdog sends
//! SIGTERM to every job group it was told of and not told ended, waits for
//! them up to the stop grace (`[bounds] stop_grace`), SIGKILLs what is left
//! and exits. So no job writes behind a runner that can no longer record
//! it, and the claims of that runner (`store::claims`) can be taken over: a
//! run on the same host waits for the watchdog to be gone first.
//!
//! The one window: a runner killed after a job's `posix_spawn` returned
//! and before its `+PGID` line was written (a few microseconds on the
//! thread that starts jobs, with no blocking call between) leaves that job
//! unwatched. The runner's jobs carry `CHRONON_BUILD_RUNNER=RUNNER` in
//! their environment, so the watchdog, when its runner is gone, also stops
//! the process group of any process of the host that carries it (read from
//! `/proc/PID/environ`): the window is closed wherever the watchdog may read
//! the job's environment (the same user).
//!
//! Why not `PR_SET_PDEATHSIG` on the job: it reaches only the process it is
//! set on (a CLI's JVM child would live on), it fires when the *thread*
//! that started the job ends, and it is Linux only. Why not one supervisor
//! process per job: starting this binary once more per job cost ~3 ms a
//! job, three times the run of 10,000 `true` jobs (`bench/run.sh`).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::CommandLine;
use crate::identity::Identity;

/// The first argument that makes the binary a watchdog.
pub const ARG: &str = "__watch-run";

/// The variable that names a job's runner in the job's environment.
pub const ENV: &str = "CHRONON_BUILD_RUNNER";

/// How often the watchdog looks whether the groups it stops are gone.
const POLL: Duration = Duration::from_millis(50);

/// How long the watchdog waits for SIGKILLed groups to be gone.
const AFTER_KILL: Duration = Duration::from_secs(1);

/// The runner's side: the watchdog process and the pipe it reads.
pub struct Watchdog {
    child: Child,
    tell: Tell,
}

/// The write end of the watchdog's pipe, shared by the thread that starts
/// jobs and the threads that wait for them. Each line is one `write`, of
/// less than `PIPE_BUF` bytes, so lines of several threads never mix.
#[derive(Clone)]
pub struct Tell(Arc<std::io::PipeWriter>);

impl Tell {
    /// A job's process group started.
    pub fn started(&self, pgid: u32) -> Result<(), String> {
        (&*self.0)
            .write_all(format!("+{pgid}\n").as_bytes())
            .map_err(|e| format!("cannot tell the run's watchdog about it: {e}"))
    }

    /// A job's leader exited (not reaped yet): the watchdog forgets its
    /// group.
    pub fn ended(&self, pgid: u32) {
        let _ = (&*self.0).write_all(format!("-{pgid}\n").as_bytes());
    }
}

impl Watchdog {
    /// Starts the watchdog of this runner: `grace` between SIGTERM and
    /// SIGKILL when the runner dies; what it does goes to `log`.
    pub fn start(grace: Duration, log: &Path) -> Result<Watchdog, String> {
        let (reader, writer) = std::io::pipe().map_err(|e| format!("cannot make a pipe: {e}"))?;
        let command = CommandLine {
            argv: vec![
                me(),
                ARG.to_string(),
                grace.as_millis().to_string(),
                tag().to_string(),
                log.to_string_lossy().into_owned(),
            ],
            env: Default::default(),
            // Holds no folder of the run busy.
            dir: PathBuf::from("/"),
        };
        let child = super::command::start_detached(&command, reader)?;
        Ok(Watchdog {
            child,
            tell: Tell(Arc::new(writer)),
        })
    }

    pub fn tell(&self) -> &Tell {
        &self.tell
    }

    /// Whether the watchdog still runs (someone may have killed it).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The run ended with no job left: the watchdog exits, and is reaped.
    /// One that does not exit within `END_WAIT` (stopped, or stuck) is
    /// killed: it has no job left to watch, and the run must not hang on
    /// it.
    pub fn end(mut self) {
        if (&*self.tell.0).write_all(b"end\n").is_err() {
            let _ = self.child.try_wait();
            return;
        }
        let deadline = std::time::Instant::now() + END_WAIT;
        while std::time::Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long the end of a run waits for its watchdog to exit.
const END_WAIT: Duration = Duration::from_secs(5);

/// The running binary itself, even if its file was replaced or removed
/// since it started (an upgrade during a run): `/proc/self/exe` is
/// resolved by the child before it executes, so it names this binary.
fn me() -> String {
    if Path::new("/proc/self/exe").exists() {
        return "/proc/self/exe".into();
    }
    std::env::current_exe()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "chronon-build".into())
}

/// This runner as its watchdog and its jobs name it (`runner_tag`).
pub fn tag() -> &'static str {
    static ME: OnceLock<String> = OnceLock::new();
    ME.get_or_init(|| runner_tag(&Identity::me()))
}

/// A runner as watchdogs and jobs name it: `pid:start`.
pub fn runner_tag(runner: &Identity) -> String {
    format!("{}:{}", runner.pid, runner.start)
}

/// The watchdog of a runner of this host, if it still runs: its pid and
/// stop grace, found by its command line in `/proc`.
pub fn of_runner(runner: &Identity) -> Option<(u32, Duration)> {
    if !runner.is_here() {
        return None;
    }
    let tag = runner_tag(runner);
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .find_map(|pid| Some((pid, watchdog_grace(pid, &tag)?)))
}

/// The stop grace of process `pid` if it is the watchdog of runner `tag`.
pub fn watchdog_grace(pid: u32, tag: &str) -> Option<Duration> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let mut args = cmdline.split(|&b| b == 0).skip(1);
    if args.next() != Some(ARG.as_bytes()) {
        return None;
    }
    let grace = std::str::from_utf8(args.next()?).ok()?.parse().ok()?;
    (args.next() == Some(tag.as_bytes())).then(|| Duration::from_millis(grace))
}

/// The watchdog's main: `args` after `ARG`. Returns its exit code.
pub fn main(args: &[OsString]) -> i32 {
    let [grace, runner, log] = args else {
        say(
            None,
            &format!("usage: chronon-build {ARG} GRACE_MS RUNNER_PID:START LOG"),
        );
        return 2;
    };
    let (Some(grace), Some(runner)) = (
        grace.to_str().and_then(|g| g.parse::<u64>().ok()),
        runner.to_str(),
    ) else {
        say(
            None,
            &format!("usage: chronon-build {ARG} GRACE_MS RUNNER_PID:START LOG"),
        );
        return 2;
    };
    // Also when started by hand: the runner starts it so already.
    super::command::ignore_stop_signals();
    let log = Path::new(log);
    let mut groups = BTreeSet::new();
    let input = std::io::BufReader::new(Paced {
        input: std::io::stdin().lock(),
        last: None,
    });
    for line in input.lines() {
        let Ok(line) = line else { break };
        let pgid = line.get(1..).and_then(|p| p.parse::<i32>().ok());
        match (line.as_bytes().first(), pgid) {
            _ if line == "end" => return 0,
            // Never 1 or less: kill(-1) would reach every process.
            (Some(b'+'), Some(pgid)) if pgid > 1 => {
                groups.insert(pgid);
            }
            (Some(b'-'), Some(pgid)) => {
                groups.remove(&pgid);
            }
            _ => say(
                Some(log),
                &format!("ignored a line it cannot read: {line:?}"),
            ),
        }
    }
    groups.extend(tagged_groups(runner));
    if !groups.is_empty() {
        stop(&groups, Duration::from_millis(grace), runner, log);
    }
    0
}

/// The watchdog's input, read at most once every `PACE`: meanwhile the
/// runner's lines wait in the pipe, and writing them wakes no one. Reading
/// each as it came woke the watchdog twice per job: with short jobs, the
/// wake-ups cost the runner more than its lines. The lines are read in
/// order all the same, and the end of the input `PACE` later at most.
struct Paced<R> {
    input: R,
    last: Option<Instant>,
}

/// How often the watchdog reads its input, at most.
const PACE: Duration = Duration::from_millis(20);

impl<R: std::io::Read> std::io::Read for Paced<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(wait) = self
            .last
            .and_then(|at| (at + PACE).checked_duration_since(Instant::now()))
        {
            std::thread::sleep(wait);
        }
        let read = self.input.read(buf);
        self.last = Some(Instant::now());
        read
    }
}

/// The runner is gone: SIGTERM to each group, SIGKILL after `grace` to
/// those still there.
fn stop(groups: &BTreeSet<i32>, grace: Duration, runner: &str, log: &Path) {
    let pid = runner.split(':').next().unwrap_or(runner);
    say(
        Some(log),
        &format!(
            "the runner (pid {pid}) is gone: stopping its {} job(s) (SIGTERM, SIGKILL in {} ms)",
            groups.len(),
            grace.as_millis()
        ),
    );
    signal_all(groups, libc::SIGTERM);
    let left = wait_gone(groups, grace);
    if left.is_empty() {
        return;
    }
    say(
        Some(log),
        &format!(
            "SIGKILL to {} job(s) still running after the grace",
            left.len()
        ),
    );
    signal_all(&left, libc::SIGKILL);
    // Bounded: a group whose last member is a zombie nobody reaps still
    // answers signal 0.
    wait_gone(&left, AFTER_KILL);
}

fn signal_all(groups: &BTreeSet<i32>, signal: i32) {
    for &pgid in groups {
        // SAFETY: kill has no memory-safety preconditions; pgid > 0.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

/// Waits up to `bound` for the groups to be gone; returns those left.
fn wait_gone(groups: &BTreeSet<i32>, bound: Duration) -> BTreeSet<i32> {
    let until = Instant::now() + bound;
    let mut left = groups.clone();
    loop {
        left.retain(|&pgid| {
            // SAFETY: signal 0 only checks; no memory is involved.
            let gone = unsafe { libc::kill(-pgid, 0) } != 0
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
            !gone
        });
        if left.is_empty() || Instant::now() >= until {
            return left;
        }
        std::thread::sleep(POLL);
    }
}

/// The process groups of processes that carry `ENV=runner` in their
/// environment (`/proc/PID/environ`, as they were started): the runner's
/// jobs, including one started just before the runner died.
fn tagged_groups(runner: &str) -> BTreeSet<i32> {
    let wanted = format!("{ENV}={runner}");
    // SAFETY: getpgrp has no preconditions.
    let own = unsafe { libc::getpgrp() };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == wanted.as_bytes()))
        })
        // SAFETY: getpgid has no memory-safety preconditions.
        .map(|pid| unsafe { libc::getpgid(pid) })
        // Never its own group, nor a failed look-up.
        .filter(|&pgid| pgid > 1 && pgid != own)
        .collect()
}

/// A line in the watchdog's log (or on standard error before it has one),
/// if it can be written: never a panic on a closed pipe.
fn say(log: Option<&Path>, line: &str) {
    let line = format!("chronon-build: {line}\n");
    let Some(log) = log else {
        let _ = std::io::stderr().write_all(line.as_bytes());
        return;
    };
    if let Some(parent) = log.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log);
    if let Ok(mut file) = file {
        let _ = file.write_all(line.as_bytes());
    }
}
