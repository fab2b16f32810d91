//! Job processes: started as every command is (`exec::command`: its own
//! process group), their output copied into their log (made when the first
//! byte comes: `log::LazyLog`), each waited for by a thread of a small
//! pool.
//!
//! A job dies with its runner: the run's watchdog, told of each job's
//! process group as it starts and ends, stops the groups left when the
//! runner is gone (`exec::watch`); nothing records them, and the next run
//! finds their targets stale, as it must.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::exec::command::{self, CommandLine};
use crate::exec::watch::{self, Tell, Watchdog};

/// What a waiting thread does when a job ended: given its exit code and
/// whether it printed anything (its log was made).
type OnExit = Box<dyn FnOnce(Option<i32>, bool) + Send>;

/// A started job for a waiting thread: its process, its output to copy
/// into its log (bounded), and what to do when it ended.
struct Started {
    /// The job's pid, which leads its process group.
    pid: u32,
    output: std::io::PipeReader,
    log: super::log::LazyLog,
    limit: u64,
    on_exit: OnExit,
    /// Told when the job's leader exited, before it is reaped.
    watch: Tell,
}

/// Threads that wait for jobs: one per job slot, reused, since starting a
/// thread per job costs more than the job's `true` in the benchmark. Each
/// copies its job's output into the log (`log::copy_bounded`) until the
/// job's processes close it, then reaps the job.
pub struct Waiters {
    tx: Sender<Started>,
}

impl Waiters {
    pub fn new(threads: usize) -> Waiters {
        let (tx, rx) = channel::<Started>();
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..threads.max(1) {
            let rx = rx.clone();
            let _ = std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    loop {
                        let next = rx.lock().map(|r| r.recv());
                        let Ok(Ok(mut started)) = next else {
                            break;
                        };
                        if let Err(e) = super::log::copy_bounded(
                            &mut started.output,
                            &mut started.log,
                            started.limit,
                        ) {
                            use std::io::Write as _;
                            let _ = writeln!(started.log, "chronon-build: output lost: {e}");
                        }
                        // Told before the pid is freed: the watchdog never
                        // holds a group whose pid may be reused.
                        let pid = started.pid;
                        command::wait_exited(pid);
                        started.watch.ended(pid);
                        let code = crate::exec::spawn::reap(pid);
                        (started.on_exit)(code, started.log.made());
                    }
                });
        }
        Waiters { tx }
    }
}

/// Starts the command in its own process group and tells the run's
/// watchdog (`watch`: it stops the group if the runner dies); its output
/// goes to `log`, at most `limit` bytes; `on_exit` gets its exit code
/// (`None` when a signal ended it) and whether it printed anything, from a
/// waiting thread. Returns the pid of the group's leader.
pub fn spawn(
    waiters: &Waiters,
    command: &CommandLine,
    log: &Path,
    (limit, watch): (u64, &Tell),
    on_exit: impl FnOnce(Option<i32>, bool) + Send + 'static,
) -> Result<u32, String> {
    let (pid, output) = crate::exec::spawn::start_piped(command, (watch::ENV, watch::tag()))?;
    let log = super::log::LazyLog::new(log.to_path_buf(), command::log_header(command));
    // Before a waiting thread may see it end: `+` comes before `-`.
    if let Err(e) = watch.started(pid) {
        // Unwatched, it would not stop with the runner.
        command::kill_group(pid, libc::SIGKILL);
        crate::exec::spawn::reap(pid);
        return Err(e);
    }
    let started = Started {
        pid,
        output,
        log,
        limit,
        on_exit: Box::new(on_exit),
        watch: watch.clone(),
    };
    waiters
        .tx
        .send(started)
        .map_err(|_| format!("cannot wait for {:?}: no waiting thread", command.argv[0]))?;
    Ok(pid)
}

/// The run's watchdog, started with the run's first job (and again if
/// someone killed it): what tells it of jobs. It says what it does in
/// `run_dir()`/watchdog.log.
pub fn watchdog(
    slot: &mut Option<Watchdog>,
    grace: Duration,
    run_dir: impl FnOnce() -> std::path::PathBuf,
) -> Result<Tell, String> {
    if let Some(dog) = slot.as_mut()
        && dog.alive()
    {
        return Ok(dog.tell().clone());
    }
    let dog = Watchdog::start(grace, &run_dir().join("watchdog.log"))?;
    let tell = dog.tell().clone();
    *slot = Some(dog);
    Ok(tell)
}

/// The run ends: with no job left, its watchdog is told so and exits.
/// Otherwise (an error left jobs running) it sees the pipe close as the
/// runner exits and stops them, as if the runner had died.
pub fn end_watch(slot: Option<Watchdog>, jobs_left: bool) {
    if let Some(dog) = slot
        && !jobs_left
    {
        dog.end();
    }
}

/// Adds a line to a job's log (why it could not start).
pub fn append_log(log: &Path, line: &str) {
    if let Some(parent) = log.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    if let Ok(mut file) = OpenOptions::new().create(true).append(true).open(log) {
        let _ = writeln!(file, "chronon-build: {line}");
    }
}

/// Forwards SIGINT, SIGTERM and SIGHUP to the run's event channel.
pub fn forward_signals<E: Send + 'static>(
    tx: std::sync::mpsc::Sender<E>,
    event: impl Fn(i32) -> E + Send + 'static,
) -> Option<signal_hook::iterator::Handle> {
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])
    .ok()?;
    let handle = signals.handle();
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if tx.send(event(signal)).is_err() {
                break;
            }
        }
    });
    Some(handle)
}
