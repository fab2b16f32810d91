//! Where the state lives: a SQLite file, or a PostgreSQL database named by
//! a URL (`postgresql://user[:password]@host[:port]/db?sslmode=...`).
//!
//! The password comes from the URL, else `PGPASSWORD`, else the password
//! file (`PGPASSFILE`, default `~/.pgpass`), as libpq finds them
//! (<https://www.postgresql.org/docs/15/libpq-pgpass.html>). It never
//! leaves this module but inside the connection settings: the location's
//! display form (`name`) shows the URL with `***` in its place, and
//! `redact` takes it out of any text (a server's error message). The state
//! and the Iceberg SQL catalog on PostgreSQL connect through `connect`.

use std::path::{Path, PathBuf};

/// The TLS modes of libpq's `sslmode` this tool honours
/// (<https://www.postgresql.org/docs/15/libpq-ssl.html>): `prefer` and
/// `require` encrypt without checking the server's certificate, as libpq
/// does without a root certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
}

/// A PostgreSQL database, with everything needed to connect.
#[derive(Clone)]
pub struct PgLocation {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub database: String,
    pub password: Option<String>,
    pub ssl: SslMode,
    /// The URL with the password replaced by `***`.
    pub name: String,
}

impl PgLocation {
    /// A location from a `postgresql://` or `postgres://` URL; the error
    /// says what was expected, without the password.
    pub fn parse(url: &str) -> Result<PgLocation, String> {
        let Some(rest) = url
            .strip_prefix("postgresql://")
            .or_else(|| url.strip_prefix("postgres://"))
        else {
            return Err(format!(
                "{:?}: expected postgresql://user@host:5432/db",
                redact_url(url)
            ));
        };
        parse_postgres(rest)
    }

    /// `text` with the password (if any) replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        match &self.password {
            Some(p) if !p.is_empty() => text.replace(p.as_str(), "***"),
            _ => text.to_string(),
        }
    }

    /// A client connected to the database, with TLS as its `sslmode` says.
    pub fn connect(&self) -> Result<postgres::Client, postgres::Error> {
        let mut config = postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.database)
            .application_name("chronon-build")
            .connect_timeout(std::time::Duration::from_secs(10))
            .ssl_mode(match self.ssl {
                SslMode::Disable => postgres::config::SslMode::Disable,
                SslMode::Prefer => postgres::config::SslMode::Prefer,
                SslMode::Require => postgres::config::SslMode::Require,
            });
        if let Some(password) = &self.password {
            config.password(password);
        }
        match self.ssl {
            SslMode::Disable => config.connect(postgres::NoTls),
            _ => config.connect(super::tls::connector()),
        }
    }
}

impl std::fmt::Debug for PgLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

#[derive(Clone, Debug)]
pub enum StateLocation {
    File(PathBuf),
    Postgres(PgLocation),
}

impl StateLocation {
    /// A location from a URL (`postgresql://`, `postgres://`, `sqlite://`);
    /// a relative `sqlite://` path is relative to `base`. The error says
    /// what was expected, without the password.
    pub fn parse(url: &str, base: &Path) -> Result<StateLocation, String> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("sqlite:// needs a file path, e.g. sqlite:///var/lib/state.db".into());
            }
            return Ok(StateLocation::File(base.join(path)));
        }
        if !url.starts_with("postgresql://") && !url.starts_with("postgres://") {
            return Err(format!(
                "{:?}: expected postgresql://user@host:5432/db or sqlite:///path/state.db",
                redact_url(url)
            ));
        }
        PgLocation::parse(url).map(StateLocation::Postgres)
    }

    /// What messages call it: the file's path, or the URL without password.
    pub fn name(&self) -> String {
        match self {
            StateLocation::File(path) => path.display().to_string(),
            StateLocation::Postgres(pg) => pg.name.clone(),
        }
    }

    /// `text` with the password (if any) replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        match self {
            StateLocation::Postgres(pg) => pg.redact(text),
            StateLocation::File(_) => text.to_string(),
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            StateLocation::File(_) => "sqlite",
            StateLocation::Postgres(_) => "postgresql",
        }
    }
}

/// `scheme://user:***@host...`: a URL with any password hidden, for
/// messages about a URL that did not parse.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let tail = tail
        .split('&')
        .map(|part| match part.find("password=") {
            Some(i) => format!("{}password=***", &part[..i]),
            None => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&");
    format!("{scheme}://{authority}{tail}")
}

/// This process's command line with the password of any URL in it
/// hidden: what the run history and the lock's holder record.
pub fn redacted_args() -> Vec<String> {
    std::env::args()
        .map(|arg| match arg.split_once("://") {
            Some(_) => match arg.split_once('=') {
                Some((flag, url)) if flag.starts_with("--") => {
                    format!("{flag}={}", redact_url(url))
                }
                _ => redact_url(&arg),
            },
            None => arg,
        })
        .collect()
}

fn parse_postgres(rest: &str) -> Result<PgLocation, String> {
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, database) = main.split_once('/').unwrap_or((main, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (user, mut password) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((user, pw)) => (decode(user)?, Some(decode(pw)?)),
            None => (decode(u)?, None),
        },
        None => (String::new(), None),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || p.parse::<u16>().is_ok() => (
            h.to_string(),
            p.parse::<u16>()
                .map_err(|_| format!("port {p:?}: expected a number from 1 to 65535"))?,
        ),
        _ => (hostport.to_string(), 5432),
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let mut ssl = SslMode::Prefer;
    let mut user = user;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = decode(value)?;
        match key {
            "sslmode" => {
                ssl = match value.as_str() {
                    "disable" => SslMode::Disable,
                    "prefer" | "allow" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    other => {
                        return Err(format!(
                            "sslmode={other}: expected disable, prefer or require"
                        ));
                    }
                }
            }
            "password" => password = Some(value),
            "user" => user = value,
            "application_name" | "connect_timeout" => {}
            other => {
                return Err(format!(
                    "{other}: unknown URL parameter; expected sslmode, user, password, \
                     application_name or connect_timeout"
                ));
            }
        }
    }
    let host = if host.is_empty() {
        "localhost".to_string()
    } else {
        host
    };
    let user = if user.is_empty() {
        std::env::var("PGUSER").unwrap_or_else(|_| os_user())
    } else {
        user
    };
    let database = if database.is_empty() {
        user.clone()
    } else {
        decode(database)?
    };
    let mut location = PgLocation {
        host,
        port,
        user,
        database,
        password,
        ssl,
        name: String::new(),
    };
    location.name = redact_url(&format!("postgresql://{rest}"));
    if location.password.is_none() {
        location.password = std::env::var("PGPASSWORD")
            .ok()
            .filter(|p| !p.is_empty())
            .or_else(|| pgpass(&location));
    }
    Ok(location)
}

/// Percent-decoding of URL parts.
fn decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "a % in the URL must be followed by two hex digits".to_string())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the URL decodes to invalid UTF-8".into())
}

fn os_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "postgres".into())
}

/// The password for the location from the password file: the first line
/// `host:port:database:user:password` whose fields match (`*` matches
/// anything; `\:` and `\\` escape). As libpq, a file readable by group or
/// others is ignored, with a warning.
fn pgpass(location: &PgLocation) -> Option<String> {
    let path = match std::env::var_os("PGPASSFILE") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".pgpass"),
    };
    let meta = std::fs::metadata(&path).ok()?;
    use std::os::unix::fs::PermissionsExt;
    if meta.permissions().mode() & 0o077 != 0 {
        errln!(
            "warning: password file {} has group or world access; it is ignored (chmod 0600 it)",
            path.display()
        );
        return None;
    }
    let text = std::fs::read_to_string(&path).ok()?;
    let port = location.port.to_string();
    let wanted = [
        location.host.as_str(),
        port.as_str(),
        location.database.as_str(),
        location.user.as_str(),
    ];
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .find_map(|line| {
            let fields = split_pgpass(line);
            if fields.len() < 5 {
                return None;
            }
            let matches = wanted
                .iter()
                .zip(&fields)
                .all(|(w, f)| f == "*" || f == w || (f == "localhost" && *w == "127.0.0.1"));
            matches.then(|| fields[4].clone())
        })
}

fn split_pgpass(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut().expect("one field").push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut().expect("one field").push(c),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(url: &str) -> PgLocation {
        match StateLocation::parse(url, Path::new("/r")).unwrap() {
            StateLocation::Postgres(pg) => pg,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn urls_parse_and_their_names_hide_the_password() {
        let l = pg("postgresql://ann:p%40ss@db.example:6543/state?sslmode=require");
        assert_eq!(
            (
                l.user.as_str(),
                l.host.as_str(),
                l.port,
                l.database.as_str()
            ),
            ("ann", "db.example", 6543, "state")
        );
        assert_eq!(l.password.as_deref(), Some("p@ss"));
        assert_eq!(l.ssl, SslMode::Require);
        assert_eq!(
            l.name,
            "postgresql://ann:***@db.example:6543/state?sslmode=require"
        );
        let l = pg("postgres://ann@h/db?password=top&sslmode=disable");
        assert_eq!(l.password.as_deref(), Some("top"));
        assert!(!l.name.contains("top"), "{}", l.name);
        assert!(StateLocation::parse("postgresql://a@h/d?sslmode=bogus", Path::new("/")).is_err());
        let err = StateLocation::parse("mysql://u:hunter2@h/d", Path::new("/")).unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        match StateLocation::parse("sqlite://s/state.db", Path::new("/r")).unwrap() {
            StateLocation::File(p) => assert_eq!(p, Path::new("/r/s/state.db")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pgpass_lines_match_with_wildcards_and_escapes() {
        assert_eq!(
            split_pgpass(r"h:5432:*:u:pa\:ss:word"),
            ["h", "5432", "*", "u", "pa:ss:word"]
        );
    }
}
