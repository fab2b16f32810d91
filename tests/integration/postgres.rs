//! A PostgreSQL server the tests start themselves: `initdb` into a
//! temporary folder, `postgres` listening on 127.0.0.1 only (its unix
//! socket in that folder too), one database per test. Run as root, the
//! server runs as `nobody` (initdb and postgres refuse root).
//!
//! The server dies with the tests: a `PgServer` is stopped on drop (its
//! whole process group), the shared one (`shared`) at exit, and every
//! server gets SIGQUIT from the kernel when the thread that started it
//! ends (`PR_SET_PDEATHSIG`; the starting thread lives as long as the
//! test process), so a test binary killed outright leaves none behind.
//!
//! `CHRONON_BUILD_TEST_STATE=postgres` makes every command the tests run
//! (`chronon_build`) keep its state in a database of the shared server,
//! one per repository (`state_url_for`).

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The role the tests' commands connect as, with a password (so every
/// run on PostgreSQL authenticates with one, and must keep it out of what
/// it prints).
pub const USER: &str = "chronon";
pub const PASSWORD: &str = "pw-S3cr3t-xyzzy";

/// Whether the tests keep their state on PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var("CHRONON_BUILD_TEST_STATE").is_ok_and(|v| v == "postgres")
}

pub struct PgServer {
    /// The temporary folder: `data/`, the socket, the log.
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
    /// The postmaster's pid, also its process group; 0 when stopped.
    pid: i32,
    databases: Mutex<u32>,
    /// More `postgres` arguments (`start_tls`'s).
    settings: Vec<String>,
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The folder of the PostgreSQL server programs: `CHRONON_BUILD_PG_BIN`,
/// else the newest /usr/lib/postgresql/N/bin (Debian's layout), else
/// `pg_config --bindir`.
pub fn bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CHRONON_BUILD_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    dir.join("initdb").exists().then_some(dir)
}

/// The user and group the server runs as when the tests run as root.
fn unprivileged() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    // SAFETY: getpwnam reads a static entry, copied out at once; the
    // tests start servers from one thread at a time (`START`).
    let entry = unsafe { libc::getpwnam(c"nobody".as_ptr()) };
    assert!(
        !entry.is_null(),
        "running as root and there is no user nobody"
    );
    let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
    Some((uid, gid))
}

/// One server start at a time: `getpwnam` and the port search.
static START: Mutex<()> = Mutex::new(());

/// A command that runs as the unprivileged user (when root), in its own
/// process group, and gets SIGQUIT when the thread that spawned it ends.
fn server_command(program: PathBuf) -> Command {
    let mut command = Command::new(program);
    let user = unprivileged();
    if user.is_some() {
        command.env("HOME", "/tmp");
    }
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some((uid, gid)) = user
                && (libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            // After the user change, which clears it.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

/// Spawns `command` from a thread that never ends (the parent-death signal
/// follows the spawning thread, and test threads end with their test);
/// returns its pid.
fn spawn_detached(mut command: Command) -> std::io::Result<i32> {
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let spawned = command.spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) => {
                let _ = send.send(Err(e));
                return;
            }
        };
        let _ = send.send(Ok(child.id() as i32));
        // Reaps it when it ends; then stays, as the parent to the end.
        let mut child = child;
        let _ = child.wait();
        loop {
            std::thread::park();
        }
    });
    receive.recv().expect("the spawning thread answers")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn chown(path: &Path) {
    if let Some((uid, gid)) = unprivileged() {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    }
}

impl PgServer {
    /// `initdb` into a new temporary folder, then starts the server.
    pub fn start() -> PgServer {
        Self::start_with(false)
    }

    /// A server with TLS on (a self-signed certificate, made by `openssl`)
    /// that lets `USER` in over TLS only (`hostssl` in pg_hba.conf), and
    /// logs every connection (with its TLS protocol, when it has one).
    pub fn start_tls() -> PgServer {
        Self::start_with(true)
    }

    /// Whether `openssl`, which `start_tls` needs, is installed.
    pub fn openssl_present() -> bool {
        Command::new("openssl")
            .arg("version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    fn start_with(tls: bool) -> PgServer {
        let _one = START.lock().unwrap_or_else(|e| e.into_inner());
        let bin = bin_dir().expect("PostgreSQL's initdb (scripts/test installs postgresql)");
        sweep_leftovers();
        let dir = std::env::temp_dir().join(format!(
            "chronon-build-pg-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        chown(&dir);
        let pwfile = dir.join("pw");
        std::fs::write(&pwfile, "postgres\n").unwrap();
        chown(&pwfile);
        let out = server_command(bin.join("initdb"))
            .args(["-D"])
            .arg(dir.join("data"))
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .stdin(Stdio::null())
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The superuser without a password, everyone else with one (with
        // TLS: over TLS only).
        let others = if tls { "hostssl" } else { "host" };
        std::fs::write(
            dir.join("data/pg_hba.conf"),
            format!(
                "local all all trust\n\
                 host all postgres 127.0.0.1/32 trust\n\
                 {others} all all 127.0.0.1/32 scram-sha-256\n"
            ),
        )
        .unwrap();
        let settings = if tls { certificate(&dir) } else { Vec::new() };
        let mut server = PgServer {
            dir,
            bin,
            port: free_port(),
            pid: 0,
            databases: Mutex::new(0),
            settings,
        };
        server.launch();
        server
            .admin()
            .batch_execute(&format!(
                "CREATE ROLE {USER} LOGIN CREATEDB PASSWORD '{PASSWORD}'"
            ))
            .unwrap();
        server
    }

    /// Starts the postmaster on the data folder and waits until it accepts
    /// connections.
    fn launch(&mut self) {
        let log = std::fs::File::create(self.dir.join("log")).unwrap();
        chown(&self.dir.join("log"));
        let mut command = server_command(self.bin.join("postgres"));
        command
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-k")
            .arg(&self.dir)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=300"])
            .args(&self.settings)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.pid = spawn_detached(command).expect("postgres starts");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let up = TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && postgres::Client::connect(&self.admin_url(), postgres::NoTls).is_ok();
            if up {
                return;
            }
            // SAFETY: signal 0 only checks that the process exists.
            let alive = unsafe { libc::kill(self.pid, 0) } == 0;
            assert!(
                alive && Instant::now() < deadline,
                "postgres did not start: {}",
                std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn admin_url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    /// A superuser connection to the `postgres` database.
    pub fn admin(&self) -> postgres::Client {
        postgres::Client::connect(&self.admin_url(), postgres::NoTls).unwrap()
    }

    /// A superuser connection to `database`.
    pub fn superuser(&self, database: &str) -> postgres::Client {
        let url = self
            .admin_url()
            .replace("dbname=postgres", &format!("dbname={database}"));
        postgres::Client::connect(&url, postgres::NoTls).unwrap()
    }

    /// A new empty database owned by `USER`; returns its URL (with the
    /// password).
    pub fn create_database(&self) -> String {
        let name = {
            let mut n = self.databases.lock().unwrap_or_else(|e| e.into_inner());
            *n += 1;
            format!("t{}", *n)
        };
        self.admin()
            .batch_execute(&format!("CREATE DATABASE {name} OWNER {USER}"))
            .unwrap();
        self.url(&name)
    }

    pub fn url(&self, database: &str) -> String {
        format!(
            "postgresql://{USER}:{PASSWORD}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// Fast shutdown (clients are disconnected), waiting until it is gone.
    pub fn stop(&mut self) {
        self.signal_and_wait(libc::SIGINT);
    }

    /// Starts it again on the same port and data.
    pub fn restart(&mut self) {
        self.launch();
    }

    fn kill(&mut self) {
        self.signal_and_wait(libc::SIGQUIT);
    }

    fn signal_and_wait(&mut self, signal: i32) {
        if self.pid == 0 {
            return;
        }
        // SAFETY: plain signals to the server's own process group.
        unsafe { libc::kill(-self.pid, signal) };
        let deadline = Instant::now() + Duration::from_secs(30);
        // SAFETY: signal 0 only checks that the process exists.
        while unsafe { libc::kill(self.pid, 0) } == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        unsafe { libc::kill(-self.pid, libc::SIGKILL) };
        self.pid = 0;
    }
}

/// A self-signed certificate and its key in `dir`, made by `openssl req
/// -x509` (<https://docs.openssl.org/3.0/man1/openssl-req/>); the key
/// readable by the server's user only, as the server requires
/// (<https://www.postgresql.org/docs/15/ssl-tcp.html#SSL-SETUP>). Returns
/// the server's settings that turn TLS on with them.
fn certificate(dir: &Path) -> Vec<String> {
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdin(Stdio::null())
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    for file in [&cert, &key] {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).unwrap();
        chown(file);
    }
    let setting = |name: &str, path: &Path| ["-c".into(), format!("{name}={}", path.display())];
    [
        vec!["-c".into(), "ssl=on".into()],
        setting("ssl_cert_file", &cert).to_vec(),
        setting("ssl_key_file", &key).to_vec(),
        vec!["-c".into(), "log_connections=on".into()],
    ]
    .concat()
}

/// Removes the folders of servers whose test process is gone (killed
/// outright, so nothing ran its cleanup).
fn sweep_leftovers() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("chronon-build-pg-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: signal 0 only checks that the process exists.
        if unsafe { libc::kill(pid, 0) } != 0 {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

static SHARED: OnceLock<Mutex<Option<PgServer>>> = OnceLock::new();

extern "C" fn stop_shared() {
    if let Some(server) = SHARED.get() {
        drop(server.lock().unwrap_or_else(|e| e.into_inner()).take());
    }
}

/// The server the tests share, started on first use, stopped at exit.
pub fn with_shared<T>(f: impl FnOnce(&PgServer) -> T) -> T {
    let cell = SHARED.get_or_init(|| {
        let server = PgServer::start();
        // SAFETY: registers a plain function, run by exit().
        unsafe { libc::atexit(stop_shared) };
        Mutex::new(Some(server))
    });
    let guard = cell.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.as_ref().expect("the shared server runs until exit"))
}

static URLS: OnceLock<Mutex<HashMap<PathBuf, String>>> = OnceLock::new();

/// Forgets a repository's database: its next command starts on a new,
/// empty one (what deleting its state file does on SQLite).
pub fn forget_state_of(repo: &Path) {
    let key = std::path::absolute(repo).unwrap_or_else(|_| repo.to_path_buf());
    if let Some(urls) = URLS.get() {
        urls.lock().unwrap().remove(&key);
    }
}

/// The state URL of a repository on the shared server: one database per
/// repository, made on first use.
pub fn state_url_for(repo: &Path) -> String {
    let urls = URLS.get_or_init(Default::default);
    let key = std::path::absolute(repo).unwrap_or_else(|_| repo.to_path_buf());
    if let Some(url) = urls.lock().unwrap().get(&key) {
        return url.clone();
    }
    let url = with_shared(|server| server.create_database());
    urls.lock().unwrap().insert(key, url.clone());
    url
}

#[test]
fn the_test_server_starts_serves_a_database_per_test_and_stops() {
    if !crate::tool_or_skip(
        "the_test_server_starts_serves_a_database_per_test_and_stops",
        bin_dir().is_some(),
        "PostgreSQL (initdb) is not installed",
    ) {
        return;
    }
    let mut server = PgServer::start();
    let url = server.create_database();
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let one: i32 = client.query_one("SELECT 1", &[]).unwrap().get(0);
    assert_eq!(one, 1);
    drop(client);
    let wrong = url.replace(PASSWORD, "wrong");
    assert!(postgres::Client::connect(&wrong, postgres::NoTls).is_err());
    server.stop();
    assert!(postgres::Client::connect(&url, postgres::NoTls).is_err());
    server.restart();
    assert!(postgres::Client::connect(&url, postgres::NoTls).is_ok());
    let (dir, pid) = (server.dir.clone(), server.pid);
    drop(server);
    assert!(!dir.exists(), "its folder is removed");
    // SAFETY: signal 0 only checks that the process exists.
    assert_ne!(unsafe { libc::kill(pid, 0) }, 0, "the postmaster is gone");
}
