//! Starting a command, with one policy for every process the tool starts:
//! jobs, hooks, the warehouse's probe and delete commands, the streaming
//! status command and the CLI detection's `--help`.
//!
//! - an argv array, never a shell string (config names come from pull
//!   requests); placeholders are filled per argument, in one pass, so a
//!   value can neither split into two arguments nor be filled again;
//! - standard input closed (or a file the tool wrote), so nothing waits on
//!   a terminal;
//! - its own process group, so a terminal's Ctrl-C reaches the runner
//!   only, and a kill reaches the command's children too;
//! - standard output and error to files (for jobs, one pipe the waiting
//!   thread drains into the log, bounded: `run::log`), so a command that
//!   prints much never blocks on a full pipe;
//! - a time bound, past which its whole group is killed and reaped.
//!
//! Processes are started with `posix_spawn` (std does so when nothing runs
//! in the child before `exec`), which costs a fraction of a `fork`. Jobs,
//! started by the thousand, call it themselves (`spawn`), with this policy,
//! without std's rebuilding of the environment for each.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A command ready to start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandLine {
    pub argv: Vec<String>,
    /// Added to the tool's own environment.
    pub env: BTreeMap<String, String>,
    /// The folder it runs in (for jobs, the repository root: `--conf`
    /// paths are relative to it).
    pub dir: PathBuf,
}

impl CommandLine {
    /// `template` with its placeholders filled from `vars`, run in `dir`.
    pub fn filled(template: &[String], vars: &[(&str, &str)], dir: &Path) -> CommandLine {
        CommandLine {
            argv: template.iter().map(|arg| fill(arg, vars)).collect(),
            env: BTreeMap::new(),
            dir: dir.to_path_buf(),
        }
    }

    /// Adds an environment variable.
    pub fn with_env(mut self, name: &str, value: &str) -> CommandLine {
        self.env.insert(name.to_string(), value.to_string());
        self
    }
}

/// `arg` with each `{name}` of `vars` replaced by its value, in one pass:
/// a value is never read for placeholders itself. Braces that name no
/// variable stay as they are.
pub fn fill(arg: &str, vars: &[(&str, &str)]) -> String {
    if !arg.contains('{') {
        return arg.to_string();
    }
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let from_brace = &rest[open..];
        let value = from_brace.find('}').and_then(|close| {
            let name = &from_brace[1..close];
            let value = vars.iter().find(|(k, _)| *k == name)?.1;
            Some((value, close))
        });
        match value {
            Some((value, close)) => {
                out.push_str(value);
                rest = &from_brace[close + 1..];
            }
            None => {
                out.push('{');
                rest = &from_brace[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// An argv as a shell would need it quoted, for showing (never for running).
pub fn display(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c));
            if plain {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Starts the command in its own process group, its standard input
/// closed, with its output in `log` after a first line that shows the
/// command. Hooks and the CLI detection are started here.
pub fn start(command: &CommandLine, log: &Path) -> Result<Child, String> {
    let file = open_log(command, log)?;
    let stderr = file
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    spawn(command, Stdio::null(), file, stderr)
}

/// Starts the command in a session (and process group) of its own, with
/// SIGINT, SIGTERM and SIGHUP ignored (dispositions an `exec` keeps), so
/// nothing aimed at the runner's group or terminal reaches it; `stdin` as
/// its standard input, its output discarded. The run's watchdog is started
/// here (`watch`).
pub fn start_detached(command: &CommandLine, stdin: std::io::PipeReader) -> Result<Child, String> {
    let mut builder = builder(command, stdin, Stdio::null(), Stdio::null())?;
    // SAFETY: the closure runs in the child between fork and exec, and
    // calls only async-signal-safe functions (setsid, signal); it
    // allocates nothing.
    unsafe {
        builder.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            ignore_stop_signals();
            Ok(())
        });
    }
    builder.spawn().map_err(|e| cannot_start(command, e))
}

/// Ignores SIGINT, SIGTERM and SIGHUP in this process.
pub fn ignore_stop_signals() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: setting a disposition to SIG_IGN has no memory
        // preconditions and is async-signal-safe.
        unsafe {
            libc::signal(signal, libc::SIG_IGN);
        }
    }
}

/// Waits until child `pid` exited, without reaping it: its pid stays
/// taken (a zombie) until the caller reaps it.
pub fn wait_exited(pid: u32) {
    loop {
        // SAFETY: a zeroed siginfo_t is a valid output buffer for waitid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is valid for writes; WNOWAIT leaves the child
        // waitable.
        let done = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if done == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return;
        }
    }
}

/// Creates a command's log (and its folder), its first line the command.
fn open_log(command: &CommandLine, log: &Path) -> Result<File, String> {
    if let Some(parent) = log.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let mut file =
        File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    // One write: the header must not cost a syscall per piece.
    let _ = file.write_all(log_header(command).as_bytes());
    Ok(file)
}

/// A log's first line: the command.
pub fn log_header(command: &CommandLine) -> String {
    format!("$ {}\n", display(&command.argv))
}

fn spawn(
    command: &CommandLine,
    stdin: impl Into<Stdio>,
    stdout: impl Into<Stdio>,
    stderr: impl Into<Stdio>,
) -> Result<Child, String> {
    builder(command, stdin, stdout, stderr)?
        .process_group(0)
        .spawn()
        .map_err(|e| cannot_start(command, e))
}

/// The command as every process is started: argv, environment (without
/// the state's URL), folder and standard streams.
fn builder(
    command: &CommandLine,
    stdin: impl Into<Stdio>,
    stdout: impl Into<Stdio>,
    stderr: impl Into<Stdio>,
) -> Result<Command, String> {
    let (program, args) = command
        .argv
        .split_first()
        .ok_or_else(|| "empty command".to_string())?;
    let mut builder = Command::new(program);
    builder
        .args(args)
        // The state's URL may carry its password: jobs never see it.
        .env_remove("CHRONON_BUILD_STATE_URL")
        .envs(&command.env)
        .current_dir(&command.dir)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr);
    Ok(builder)
}

fn cannot_start(command: &CommandLine, e: std::io::Error) -> String {
    let program = command.argv.first().map(String::as_str).unwrap_or("");
    format!("cannot start {program:?}: {e}")
}

/// Starts the command (as `start` does, output in `log`) and waits for it
/// up to `timeout`; past it, its whole process group is killed and `None`
/// returned.
pub fn run_logged(
    command: &CommandLine,
    log: &Path,
    timeout: Duration,
) -> Result<Option<ExitStatus>, String> {
    let mut child = start(command, log)?;
    wait(&mut child, timeout)
}

/// What a command that ran to its end printed.
#[derive(Debug)]
pub struct Captured {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Captured {
    /// Standard error, trimmed, for an error message.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }
}

/// Runs the command to its end, `stdin` as its standard input, and returns
/// what it printed; `Err` when it could not start or ran past `timeout`
/// (then its whole process group was killed). The output goes through
/// anonymous temporary files, not pipes.
pub fn run_captured(
    command: &CommandLine,
    stdin: &[u8],
    timeout: Duration,
) -> Result<Captured, String> {
    let temp = |what: &str| tempfile::tempfile().map_err(|e| format!("cannot create {what}: {e}"));
    let mut input = temp("a file for standard input")?;
    input
        .write_all(stdin)
        .and_then(|_| input.rewind())
        .map_err(|e| format!("cannot write standard input: {e}"))?;
    let (mut stdout, mut stderr) = (temp("a file for output")?, temp("a file for output")?);
    let out_handle = stdout.try_clone().map_err(|e| e.to_string())?;
    let err_handle = stderr.try_clone().map_err(|e| e.to_string())?;
    let mut child = spawn(command, input, out_handle, err_handle)?;
    let Some(status) = wait(&mut child, timeout)? else {
        return Err(format!(
            "killed after its timeout of {}",
            humantime::format_duration(timeout)
        ));
    };
    let read_all = |file: &mut File| -> Result<Vec<u8>, String> {
        let mut bytes = Vec::new();
        file.rewind()
            .and_then(|_| file.read_to_end(&mut bytes))
            .map_err(|e| format!("cannot read its output: {e}"))?;
        Ok(bytes)
    };
    Ok(Captured {
        status,
        stdout: read_all(&mut stdout)?,
        stderr: read_all(&mut stderr)?,
    })
}

/// Waits for `child` up to `timeout`; past it, kills its process group,
/// reaps it and returns `None`. Polls from 1 ms up to 20 ms, so a quick
/// command costs little wait.
fn wait(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>, String> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(Some(status)),
            Ok(None) if Instant::now() >= deadline => {
                kill_group(child.id(), libc::SIGKILL);
                let _ = child.wait();
                return Ok(None);
            }
            Ok(None) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(e) => return Err(format!("cannot wait for it: {e}")),
        }
    }
}

/// Whether any process of a command's group is still alive.
pub fn group_alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks; no memory is involved.
    pid != 0 && unsafe { libc::kill(-(pid as i32), 0) } == 0
}

/// Signals a command's whole process group.
pub fn kill_group(pid: u32, signal: i32) {
    if pid == 0 {
        return;
    }
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(-(pid as i32), signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> CommandLine {
        CommandLine {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            env: BTreeMap::new(),
            dir: PathBuf::from("."),
        }
    }

    #[test]
    fn fills_each_placeholder_once_and_leaves_unknown_braces() {
        let vars = [("table", "ns.{partition}"), ("partition", "2025-01-01")];
        assert_eq!(
            fill("{table}/{partition}", &vars),
            "ns.{partition}/2025-01-01"
        );
        assert_eq!(fill("{other} {", &vars), "{other} {");
        assert_eq!(fill("{{table}}", &vars), "{ns.{partition}}");
        assert_eq!(fill("plain", &vars), "plain");
    }

    #[test]
    fn captures_output_and_standard_input_through_files() {
        let big = "x".repeat(1 << 20);
        let command = sh("cat; echo err >&2; exit 3");
        let done = run_captured(&command, big.as_bytes(), Duration::from_secs(10)).unwrap();
        assert_eq!(done.status.code(), Some(3));
        assert_eq!(done.stdout.len(), big.len());
        assert_eq!(done.stderr_text(), "err");
    }

    #[test]
    fn a_command_past_its_timeout_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("child-alive");
        // The child outlives the shell unless its group is killed.
        let command = sh(&format!("(sleep 1; touch {}) & sleep 30", marker.display()));
        let started = Instant::now();
        let e = run_captured(&command, b"", Duration::from_millis(200)).unwrap_err();
        assert!(e.contains("timeout"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(1500));
        assert!(!marker.exists(), "the command's child outlived the timeout");
    }
}
