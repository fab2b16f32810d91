//! Job processes: started as every command is (`exec::command`: its own
//! process group, output in its log file), each waited for by a thread of
//! a small pool.
//!
//! A job is not tied to the runner's life: if the runner is killed, its
//! jobs run on like any orphan, and nothing records them; the next run finds
//! their targets stale, as it must.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::process::Child;
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};

use crate::exec::command::{self, CommandLine};

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
    let child = command::start(command, log)?;
    let pid = child.id();
    waiters
        .tx
        .send((child, Box::new(on_exit)))
        .map_err(|_| format!("cannot wait for {:?}: no waiting thread", command.argv[0]))?;
    Ok(pid)
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
