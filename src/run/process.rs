//! Job processes: each in its own process group (so a terminal's Ctrl-C
//! reaches the runner only, and a kill reaches the job's children too), with
//! stdout and stderr in its log file, and a thread that waits for it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::exec::{self, CommandLine};

/// Starts the command; `on_exit` gets its exit code (`None` when a signal
/// ended it) from a waiting thread. Returns the pid.
pub fn spawn(
    command: &CommandLine,
    log: &Path,
    on_exit: impl FnOnce(Option<i32>) + Send + 'static,
) -> Result<u32, String> {
    if let Some(parent) = log.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let mut file =
        File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let _ = writeln!(file, "$ {}", exec::display(&command.argv));
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
    #[cfg(target_os = "linux")]
    // SAFETY: prctl is async-signal-safe; the closure allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            // If the runner dies (even by SIGKILL), its jobs die with it:
            // nothing keeps writing after the state stopped listening.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {program:?}: {e}"))?;
    let pid = child.id();
    std::thread::spawn(move || {
        let code = child.wait().ok().and_then(|status| status.code());
        on_exit(code);
    });
    Ok(pid)
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
