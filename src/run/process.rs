//! Job processes: each in its own process group (so a terminal's Ctrl-C
//! reaches the runner only, and a kill reaches the job's children too), with
//! stdout and stderr in its log file, and a thread that waits for it.
//!
//! Jobs are started with `posix_spawn` (std does so when nothing runs in the
//! child before `exec`), which costs a fraction of a `fork` of the runner.
//! So a job is not tied to the runner's life: if the runner is killed, its
//! jobs run on like any orphan, and nothing records them; the next run finds
//! their targets stale, as it must.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};

use crate::exec::{self, CommandLine};

type OnExit = Box<dyn FnOnce(Option<i32>) + Send>;

/// Threads that wait for jobs: one per job slot, reused, since starting a
/// thread per job costs more than the job's `true` in the benchmark.
pub struct Waiters {
    tx: Sender<(Child, OnExit)>,
}

impl Waiters {
    pub fn new(threads: usize) -> Waiters {
        let (tx, rx) = channel::<(Child, OnExit)>();
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..threads.max(1) {
            let rx = rx.clone();
            let _ = std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    loop {
                        let next = rx.lock().map(|r| r.recv());
                        let Ok(Ok((mut child, on_exit))) = next else {
                            break;
                        };
                        let code = child.wait().ok().and_then(|status| status.code());
                        on_exit(code);
                    }
                });
        }
        Waiters { tx }
    }
}

/// Starts the command; `on_exit` gets its exit code (`None` when a signal
/// ended it) from a waiting thread. Returns the pid.
pub fn spawn(
    waiters: &Waiters,
    command: &CommandLine,
    log: &Path,
    on_exit: impl FnOnce(Option<i32>) + Send + 'static,
) -> Result<u32, String> {
    let child = start(command, log)?;
    let pid = child.id();
    waiters
        .tx
        .send((child, Box::new(on_exit)))
        .map_err(|_| format!("cannot wait for {:?}: no waiting thread", command.argv[0]))?;
    Ok(pid)
}

/// Starts the command in its own process group, with its output in `log`
/// after a first line that shows the command. Jobs and hooks start here.
pub fn start(command: &CommandLine, log: &Path) -> Result<Child, String> {
    if let Some(parent) = log.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let mut file =
        File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    // One write: the header must not cost a syscall per piece.
    let _ = file.write_all(format!("$ {}\n", exec::display(&command.argv)).as_bytes());
    let stderr = file
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let (program, args) = command
        .argv
        .split_first()
        .ok_or_else(|| "empty command".to_string())?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(&command.env)
        .current_dir(&command.dir)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(stderr)
        .process_group(0);
    cmd.spawn()
        .map_err(|e| format!("cannot start {program:?}: {e}"))
}

/// Starts the command (as `start` does) and waits for it up to `timeout`;
/// past it, its whole process group is killed and `None` returned. Hooks
/// and the CLI detection's `--help` run here.
pub fn run_with_timeout(
    command: &CommandLine,
    log: &Path,
    timeout: std::time::Duration,
) -> Result<Option<std::process::ExitStatus>, String> {
    let mut child = start(command, log)?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(Some(status)),
            Ok(None) if std::time::Instant::now() >= deadline => {
                kill_group(child.id(), libc::SIGKILL);
                let _ = child.wait();
                return Ok(None);
            }
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(20)),
            Err(e) => return Err(format!("cannot wait for it: {e}")),
        }
    }
}

/// Signals a job's whole process group.
pub fn kill_group(pid: u32, signal: i32) {
    if pid == 0 {
        return;
    }
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(-(pid as i32), signal);
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

/// Forwards SIGINT and SIGTERM to the run's event channel.
pub fn forward_interrupts<E: Send + 'static>(
    tx: std::sync::mpsc::Sender<E>,
    event: impl Fn() -> E + Send + 'static,
) -> Option<signal_hook::iterator::Handle> {
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .ok()?;
    let handle = signals.handle();
    std::thread::spawn(move || {
        for _ in signals.forever() {
            if tx.send(event()).is_err() {
                break;
            }
        }
    });
    Some(handle)
}
