//! Who a process is, across time and hosts: its host name, its pid and
//! when it started. A pid alone is reused by the kernel; a pid with its
//! start time names one process for the life of the host, so a claim left
//! by a runner that was killed can be told from one whose runner lives.

/// A process as claims record it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub host: String,
    pub pid: u32,
    /// The process's start time, in clock ticks since the host booted
    /// (`/proc/<pid>/stat`, field 22; 0 where there is no `/proc`).
    pub start: u64,
}

impl Identity {
    /// This process.
    pub fn me() -> Identity {
        let pid = std::process::id();
        Identity {
            host: host_name(),
            pid,
            start: start_time(pid).unwrap_or(0),
        }
    }

    /// Whether this process is of this host.
    pub fn is_here(&self) -> bool {
        self.host == host_name()
    }

    /// Whether this process of this host still runs: the pid is there and
    /// started when it did (not a later process given the same pid).
    pub fn alive_here(&self) -> bool {
        self.is_here() && self.pid != 0 && start_time(self.pid) == Some(self.start)
    }
}

/// This host's name (`gethostname`), or "localhost" when it has none.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer and its length are valid; the result is
    // NUL-terminated within it when the call succeeds (POSIX truncates).
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(0);
    match (ok, end) {
        (true, 1..) => String::from_utf8_lossy(&buf[..end]).into_owned(),
        _ => "localhost".into(),
    }
}

/// When a process started (clock ticks after boot), from
/// `/proc/<pid>/stat`: the fields after the command name, which ends at
/// the last `)` (the name may hold spaces and parentheses); start time is
/// field 22 of proc(5), the 20th after the name.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_later_one_with_its_pid_is_not() {
        let me = Identity::me();
        assert!(me.start > 0);
        assert!(me.alive_here());
        let reused = Identity {
            start: me.start + 1,
            ..me.clone()
        };
        assert!(!reused.alive_here());
        let elsewhere = Identity {
            host: format!("{}-elsewhere", me.host),
            ..me
        };
        assert!(!elsewhere.is_here() && !elsewhere.alive_here());
    }

    #[test]
    fn an_ended_process_is_not_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let identity = Identity {
            host: host_name(),
            pid,
            start: start_time(pid).unwrap(),
        };
        child.wait().unwrap();
        assert!(!identity.alive_here());
    }
}
