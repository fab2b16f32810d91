//! Starting a job's process with `posix_spawnp` itself, as ninja does
//! (ninja-build/ninja, src/subprocess-posix.cc, `Subprocess::Start`): its
//! own process group, standard input from /dev/null, standard output and
//! error into one pipe, in the command's folder, with its environment.
//!
//! `std::process::Command` does the same, but reads this process's whole
//! environment into a map and builds it anew for every process when one
//! variable is added: with short jobs, a tenth of the runner's time per job
//! (`bench/run.sh`). Here it is read once (`inherited`), and each job adds
//! its own variables to it. What the child gets is what `Command` gives:
//! an empty signal mask, SIGPIPE back to its default (Rust ignores it in
//! this process), every descriptor but 0, 1 and 2 closed on exec, the
//! program found on this process's `PATH`.

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::OnceLock;

use super::command::CommandLine;

/// This process's environment, read once, without the state's URL (it may
/// carry its password: jobs never see it): (name, `NAME=value`).
fn inherited() -> &'static [(OsString, CString)] {
    static INHERITED: OnceLock<Vec<(OsString, CString)>> = OnceLock::new();
    INHERITED.get_or_init(|| {
        std::env::vars_os()
            .filter(|(name, _)| name != "CHRONON_BUILD_STATE_URL")
            .filter_map(|(name, value)| {
                let mut pair = name.as_bytes().to_vec();
                pair.push(b'=');
                pair.extend_from_slice(value.as_bytes());
                Some((name, CString::new(pair).ok()?))
            })
            .collect()
    })
}

/// Starts a job as `command::start` starts a command, but its standard
/// output and error go into one pipe the caller reads (to bound what
/// reaches its log, made when the first byte comes), `tag` added to its
/// environment (the run's watchdog finds its jobs by it: `watch`); returns
/// its pid and the pipe.
pub fn start_piped(
    command: &CommandLine,
    tag: (&str, &str),
) -> Result<(u32, std::io::PipeReader), String> {
    let (reader, writer) = std::io::pipe().map_err(|e| format!("cannot make a pipe: {e}"))?;
    let pid = spawn(command, tag, &writer.into())?;
    Ok((pid, reader))
}

/// Starts `command` with `tag` added to its environment, its output into
/// `output`; returns its pid, which leads its process group.
pub fn spawn(command: &CommandLine, tag: (&str, &str), output: &OwnedFd) -> Result<u32, String> {
    let program = command.argv.first().ok_or("empty command")?;
    let cannot = |why: String| format!("cannot start {program:?}: {why}");
    let nul = |what: &str| cannot(format!("{what} holds a NUL byte"));
    let argv = command
        .argv
        .iter()
        .map(|arg| CString::new(arg.as_bytes()).map_err(|_| nul("an argument")))
        .collect::<Result<Vec<_>, _>>()?;
    let added = command
        .env
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .chain(std::iter::once(tag));
    let own = added
        .clone()
        .map(|(name, value)| CString::new(format!("{name}={value}")).map_err(|_| nul(name)))
        .collect::<Result<Vec<_>, _>>()?;
    let dir = CString::new(command.dir.as_os_str().as_bytes()).map_err(|_| nul("its folder"))?;
    let mut envp: Vec<*const libc::c_char> = inherited()
        .iter()
        .filter(|(name, _)| !added.clone().any(|(n, _)| n.as_bytes() == name.as_bytes()))
        .map(|(_, pair)| pair.as_ptr())
        .collect();
    envp.extend(own.iter().map(|pair| pair.as_ptr()));
    envp.push(std::ptr::null());
    // Were the pipe's descriptor 1 or 2 (this process started with them
    // closed), dup2 onto itself would leave it closed on exec.
    let high;
    let fd = match output.as_raw_fd() {
        fd if fd > 2 => fd,
        _ => {
            high = rustix::io::fcntl_dupfd_cloexec(output, 3)
                .map_err(|e| cannot(format!("cannot copy its pipe: {e}")))?;
            high.as_raw_fd()
        }
    };
    match posix_spawn(&argv, &envp, &dir, fd) {
        Ok(pid) => Ok(pid),
        Err(e) => Err(cannot(std::io::Error::from_raw_os_error(e).to_string())),
    }
}

/// `posix_spawnp` of `argv` with environment `envp` (null-terminated), in
/// folder `dir`, its output into `fd`; the pid, or the error number.
fn posix_spawn(
    argv: &[CString],
    envp: &[*const libc::c_char],
    dir: &std::ffi::CStr,
    fd: std::os::fd::RawFd,
) -> Result<u32, i32> {
    let mut args: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    args.push(std::ptr::null());
    let mut pid: libc::pid_t = 0;
    // SAFETY: every pointer handed to posix_spawnp points into `argv`,
    // `envp`'s strings (the caller's, alive until this returns) and `dir`;
    // both arrays end with a null pointer; the file actions and attributes
    // are initialized before use and destroyed after.
    let rc = unsafe {
        let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        libc::posix_spawn_file_actions_init(&mut actions);
        libc::posix_spawnattr_init(&mut attr);
        let mut rc = libc::posix_spawn_file_actions_addopen(
            &mut actions,
            0,
            c"/dev/null".as_ptr(),
            libc::O_RDONLY,
            0,
        );
        for target in [1, 2] {
            rc = rc.max(libc::posix_spawn_file_actions_adddup2(
                &mut actions,
                fd,
                target,
            ));
        }
        rc = rc.max(libc::posix_spawn_file_actions_addchdir_np(
            &mut actions,
            dir.as_ptr(),
        ));
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        let mut default: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut default);
        libc::sigaddset(&mut default, libc::SIGPIPE);
        rc = rc.max(libc::posix_spawnattr_setsigmask(&mut attr, &empty));
        rc = rc.max(libc::posix_spawnattr_setsigdefault(&mut attr, &default));
        rc = rc.max(libc::posix_spawnattr_setpgroup(&mut attr, 0));
        let flags = libc::POSIX_SPAWN_SETPGROUP
            | libc::POSIX_SPAWN_SETSIGMASK
            | libc::POSIX_SPAWN_SETSIGDEF;
        rc = rc.max(libc::posix_spawnattr_setflags(
            &mut attr,
            flags as libc::c_short,
        ));
        if rc == 0 {
            rc = libc::posix_spawnp(
                &mut pid,
                argv[0].as_ptr(),
                &actions,
                &attr,
                args.as_ptr() as *const *mut libc::c_char,
                envp.as_ptr() as *const *mut libc::c_char,
            );
        }
        libc::posix_spawn_file_actions_destroy(&mut actions);
        libc::posix_spawnattr_destroy(&mut attr);
        rc
    };
    match rc {
        0 => Ok(pid as u32),
        e => Err(e),
    }
}

/// Reaps child `pid`: its exit code, `None` when a signal ended it.
pub fn reap(pid: u32) -> Option<i32> {
    loop {
        let mut status = 0;
        // SAFETY: `status` is valid for writes; waiting for our own child.
        let done = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
        if done == pid as libc::pid_t {
            return libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// In its folder, leading its own group, with its variables and the
    /// tag, no input, no signal blocked and SIGPIPE not ignored; its exit
    /// code reaped.
    #[test]
    fn a_job_starts_as_command_would_start_it() {
        let dir = tempfile::tempdir().unwrap();
        let script = "echo \"$A $TAG $(pwd)\"; cat; echo \"$$ $(cut -d' ' -f5 /proc/$$/stat)\"; \
                      grep -E '^Sig(Blk|Ign)' /proc/$$/status; exit 3";
        let command = CommandLine {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            env: [("A".to_string(), "1".to_string())].into(),
            dir: dir.path().to_path_buf(),
        };
        let (mut reader, writer) = std::io::pipe().unwrap();
        let pid = spawn(&command, ("TAG", "t"), &writer.into()).unwrap();
        let mut out = String::new();
        reader.read_to_string(&mut out).unwrap();
        assert_eq!(reap(pid), Some(3));
        let lines: Vec<&str> = out.lines().collect();
        let here = dir.path().canonicalize().unwrap();
        assert_eq!(lines[0], format!("1 t {}", here.display()));
        assert_eq!(lines[1], format!("{pid} {pid}"), "its own group");
        assert_eq!(lines[2], "SigBlk:\t0000000000000000");
        let ignored = u64::from_str_radix(lines[3].trim_start_matches("SigIgn:\t"), 16).unwrap();
        assert_eq!(ignored & (1 << (libc::SIGPIPE - 1)), 0, "{out}");
    }

    #[test]
    fn a_missing_program_cannot_start() {
        let command = CommandLine {
            argv: vec!["chronon-build-no-such-program".into()],
            env: Default::default(),
            dir: std::env::temp_dir(),
        };
        let (_reader, writer) = std::io::pipe().unwrap();
        let error = spawn(&command, ("TAG", "t"), &writer.into()).unwrap_err();
        assert_eq!(
            error,
            "cannot start \"chronon-build-no-such-program\": No such file or directory (os error 2)"
        );
    }
}
