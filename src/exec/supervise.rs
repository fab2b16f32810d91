//! Jobs die with their runner: each job runs under a small supervisor, the
//! runner's own binary started as `chronon-build __supervise-job GRACE_MS
//! RUNNER -- ARGV...` (`RUNNER`: the runner's `pid:start`, so a later run
//! can find the jobs of a runner that is gone, `orphans_of`).
//!
//! The supervisor leads the job's process group (the runner starts it as
//! it starts every command, `command::spawn`), starts the job in that
//! group, and exits with the job's status (a job ended by a signal ends the
//! supervisor by the same signal), so the runner sees the job's own result.
//! Signals the runner sends to the group reach the job; the supervisor
//! itself outlives them to report how the job ended.
//!
//! When the runner dies (SIGKILL, OOM killer, a lost host session), the
//! supervisor is re-parented; it sees its parent change, sends SIGTERM to
//! the group, waits the stop grace (`[bounds] stop_grace`), then SIGKILLs
//! the group, itself included. So no job writes behind a runner that can no
//! longer record it, and the claims of that runner (`store::claims`) can be
//! taken over: a run on the same host waits for the group to be gone first.
//!
//! Why not `PR_SET_PDEATHSIG` on the job: it reaches only the process it is
//! set on (a CLI's JVM child would live on), it fires when the *thread*
//! that started the job ends, and it is Linux only; a supervisor covers the
//! whole group.

use std::ffi::OsString;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use std::sync::OnceLock;

use super::CommandLine;
use crate::identity::Identity;

/// The first argument that makes the binary a supervisor.
pub const ARG: &str = "__supervise-job";

/// How often the supervisor looks for its parent.
const POLL: Duration = Duration::from_millis(200);

/// The command that runs `command` under a supervisor whose group gets
/// `grace` between SIGTERM and SIGKILL when the runner dies.
pub fn wrap(command: &CommandLine, grace: Duration) -> CommandLine {
    // The running binary itself, even if its file was replaced or removed
    // since it started (an upgrade during a run): `/proc/self/exe` is
    // resolved by the child before it executes, so it names this binary.
    let me = if std::path::Path::new("/proc/self/exe").exists() {
        "/proc/self/exe".into()
    } else {
        std::env::current_exe()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "chronon-build".into())
    };
    let mut argv = vec![
        me,
        ARG.to_string(),
        grace.as_millis().to_string(),
        runner_tag(runner()),
        "--".to_string(),
    ];
    argv.extend(command.argv.iter().cloned());
    CommandLine {
        argv,
        ..command.clone()
    }
}

/// This process, as its jobs' supervisors name it.
fn runner() -> &'static Identity {
    static ME: OnceLock<Identity> = OnceLock::new();
    ME.get_or_init(Identity::me)
}

fn runner_tag(runner: &Identity) -> String {
    format!("{}:{}", runner.pid, runner.start)
}

/// The process groups of jobs a runner of this host started and that still
/// run (their supervisors are stopping them if the runner is gone): found
/// by their supervisors' command lines in `/proc`.
pub fn orphans_of(runner: &Identity) -> Vec<u32> {
    if !runner.is_here() {
        return Vec::new();
    }
    let tag = runner_tag(runner);
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let mut args = cmdline.split(|&b| b == 0).skip(1);
            args.next() == Some(ARG.as_bytes()) && args.nth(1) == Some(tag.as_bytes())
        })
        .collect()
}

/// The supervisor's main: `args` after `ARG`. Returns the exit code when
/// it does not end by the job's signal.
pub fn main(args: &[OsString]) -> i32 {
    let usage = || {
        say(&format!(
            "usage: chronon-build {ARG} GRACE_MS RUNNER_PID:START -- PROGRAM [ARG...]"
        ));
        2
    };
    let (Some(grace), Some(dashes)) = (args.first(), args.get(2)) else {
        return usage();
    };
    let Some(grace) = grace.to_str().and_then(|g| g.parse::<u64>().ok()) else {
        return usage();
    };
    let Some((program, rest)) = args.get(3..).and_then(|a| a.split_first()) else {
        return usage();
    };
    if dashes != "--" {
        return usage();
    }
    // Survive the group's SIGTERM (the job gets it) to report how the job
    // ended. A handler, not SIG_IGN: handlers are reset in the job.
    let caught = Arc::new(AtomicBool::new(false));
    for signal in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT] {
        let _ = signal_hook::flag::register(signal, caught.clone());
    }
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    let mut child = match Command::new(program).args(rest).spawn() {
        Ok(child) => child,
        Err(e) => {
            say(&format!("cannot start {program:?}: {e}"));
            return 127;
        }
    };
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let mut stop_at: Option<Instant> = None;
    loop {
        match rx.recv_timeout(POLL) {
            Ok(Ok(status)) => {
                if stop_at.is_some() {
                    // The runner is gone: sweep what is left of the group.
                    kill_own_group(libc::SIGKILL);
                }
                return exit_as(status);
            }
            Ok(Err(e)) => {
                say(&format!("lost the job: {e}"));
                return 1;
            }
            Err(RecvTimeoutError::Disconnected) => return 1,
            Err(RecvTimeoutError::Timeout) => {}
        }
        // SAFETY: getppid has no preconditions.
        let orphaned = unsafe { libc::getppid() } != parent;
        match stop_at {
            None if orphaned => {
                // The log's pipe closed with the runner: a failed write
                // must not end the supervisor (eprintln! would panic).
                say(&format!(
                    "the runner (pid {parent}) is gone: stopping the job (SIGTERM, SIGKILL in {grace} ms)"
                ));
                kill_own_group(libc::SIGTERM);
                stop_at = Some(Instant::now() + Duration::from_millis(grace));
            }
            Some(at) if Instant::now() >= at => kill_own_group(libc::SIGKILL),
            _ => {}
        }
    }
}

/// A line on standard error (the job's log), if it can still be written.
fn say(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "chronon-build: {line}");
}

/// Signals this process's group (the job's), this process included.
fn kill_own_group(signal: i32) {
    // SAFETY: kill with pid 0 signals the caller's process group.
    unsafe {
        libc::kill(0, signal);
    }
}

/// Ends as the job ended: its exit code, or its signal.
fn exit_as(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return code;
    }
    if let Some(signal) = status.signal() {
        // Default disposition, then the signal: the runner sees the job
        // killed by it, as without a supervisor.
        // SAFETY: resetting a disposition and raising have no memory
        // preconditions.
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
        }
        return 128 + signal;
    }
    1
}
