//! The state on PostgreSQL through the real binary: `--state-url`,
//! `CHRONON_BUILD_STATE_URL` and `[state] url`, the password kept out of
//! everything printed, and bad URLs refused.

use crate::postgres::{PASSWORD, PgServer, USER, bin_dir};
use crate::run::Pipeline;
use crate::{assert_contains, assert_error};

fn server_or_skip(test: &str) -> Option<PgServer> {
    crate::tool_or_skip(
        test,
        bin_dir().is_some(),
        "PostgreSQL (initdb) is not installed",
    )
    .then(PgServer::start)
}

/// Everything a command printed, checked for the password.
fn assert_no_password(out: &crate::Output) {
    for text in [&out.stdout, &out.stderr] {
        assert!(!text.contains(PASSWORD), "the password shows in:\n{text}");
    }
}

#[test]
fn a_run_on_postgres_records_there_and_the_password_never_shows() {
    let Some(server) =
        server_or_skip("a_run_on_postgres_records_there_and_the_password_never_shows")
    else {
        return;
    };
    let url = server.create_database();
    let p = Pipeline::new("");
    let until = ["--until", "2025-01-10"];
    let flag = ["--state-url", url.as_str()];
    let run = p.run(&[&flag[..], &["run", "--progress", "plain"], &until].concat());
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_contains(&run.stdout, "ok: 124 built");
    assert!(
        !p.s.repo.join(".chronon-build/state.db").exists(),
        "no state file beside the repository"
    );
    // Recorded in the database: a second run has nothing to do, whichever
    // way the URL is given.
    let again = p.run_with(
        &[&["run", "--progress", "plain"][..], &until].concat(),
        &[("CHRONON_BUILD_STATE_URL", url.as_str())],
    );
    assert_contains(&again.stdout, "ok: 0 built in 0 job(s), 124 fresh");
    let targets: i64 = postgres::Client::connect(&url, postgres::NoTls)
        .unwrap()
        .query_one("SELECT count(*) FROM targets", &[])
        .unwrap()
        .get(0);
    assert!(targets >= 124, "{targets} targets recorded");

    let mut outputs = vec![run, again];
    for args in [
        &["plan", "--until", "2025-01-10", "--format", "json"][..],
        &["status", "--until", "2025-01-10", "--format", "json"],
        &["history", "--format", "json"],
        &["run", "--dry-run", "--until", "2025-01-10"],
    ] {
        let out = p.run(&[&flag[..], args].concat());
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        outputs.push(out);
    }
    // A wrong password, and a server that is not there: the error names
    // the database without the password.
    let wrong = url.replace(PASSWORD, &format!("{PASSWORD}x"));
    let out = p.run(&["--state-url", &wrong, "plan", "--until", "2025-01-10"]);
    assert_ne!(out.code, 0);
    assert_contains(&out.stderr, "password authentication failed");
    assert!(
        !out.stderr.contains(&format!("{PASSWORD}x")),
        "{}",
        out.stderr
    );
    outputs.push(out);
    for out in &outputs {
        assert_no_password(out);
    }
}

#[test]
fn state_urls_that_cannot_work_are_refused_naming_where_they_came_from() {
    let p = Pipeline::new("");
    let out = p.run(&["--state-url", "mysql://u:hunter2@h/db", "plan"]);
    assert_error(&out, "--state-url: ");
    assert!(!out.stderr.contains("hunter2"), "{}", out.stderr);
    let out = p.run(&[
        "--state-url",
        "postgresql://u@h/db?sslmode=verify-all",
        "plan",
    ]);
    assert_error(
        &out,
        "sslmode=verify-all: expected disable, prefer or require",
    );
    let out = p.run_with(&["plan"], &[("CHRONON_BUILD_STATE_URL", "ftp://x")]);
    assert_error(&out, "CHRONON_BUILD_STATE_URL: ");
    let settings = p.s.repo.join("chronon-build.toml");
    let text = std::fs::read_to_string(&settings).unwrap();
    std::fs::write(
        &settings,
        format!("{text}\n[state]\nurl = \"postgresql://u:hunter2@h:99999/db\"\n"),
    )
    .unwrap();
    let out = p.run(&["plan"]);
    assert_error(&out, "state.url: port \"99999\"");
    assert!(!out.stderr.contains("hunter2"), "{}", out.stderr);
}

#[test]
fn state_copy_moves_a_state_to_postgres_and_back_verified_and_info_describes_it() {
    let Some(server) = server_or_skip("state_copy_moves_a_state_to_postgres_and_back") else {
        return;
    };
    let url = server.create_database();
    let p = Pipeline::new("");
    let file = p.s.repo.join("local.db");
    let file = file.to_str().unwrap();
    let until = ["--until", "2025-01-10"];
    let run = p.run(&[&["--state", file, "run", "--progress", "plain"][..], &until].concat());
    assert_eq!(run.code, 0, "{}", run.stderr);

    let copy = p.run(&["state", "copy", file, &url, "--format", "json"]);
    assert_eq!(copy.code, 0, "{}", copy.stderr);
    assert_no_password(&copy);
    let copied: serde_json::Value = serde_json::from_str(&copy.stdout).unwrap();
    assert_eq!(copied["verified"], true);
    assert!(
        copied["rows"]["targets"].as_i64().unwrap() >= 124,
        "{copied}"
    );

    // The copy is the state: nothing to do on PostgreSQL, and a new run
    // there goes on with new ids after the copied ones.
    let again = p.run(
        &[
            &["--state-url", url.as_str(), "run", "--progress", "plain"][..],
            &until,
        ]
        .concat(),
    );
    assert_contains(&again.stdout, "ok: 0 built in 0 job(s), 124 fresh");
    let info = p.run(&["--state-url", &url, "state", "info", "--format", "json"]);
    assert_eq!(info.code, 0, "{}", info.stderr);
    assert_no_password(&info);
    let info: serde_json::Value = serde_json::from_str(&info.stdout).unwrap();
    assert_eq!(info["backend"], "postgresql");
    assert_eq!(info["runs"], 2, "{info}");
    assert_eq!(info["claims"], serde_json::json!([]));
    assert!(info["schema_version"].as_i64().unwrap() >= 7);

    // Into an occupied state: refused, nothing changed.
    let refused = p.run(&["state", "copy", file, &url]);
    assert_error(&refused, "already holds a state");

    // And back into a new file.
    let back = p.s.repo.join("back.db");
    let back = back.to_str().unwrap();
    let copy = p.run(&["state", "copy", &url, back]);
    assert_eq!(copy.code, 0, "{}", copy.stderr);
    assert_contains(&copy.stdout, "verified");
    let plan = p.run(&[&["--state", back, "plan", "--format", "json"][..], &until].concat());
    assert!(
        crate::plan_groups(&plan)
            .iter()
            .all(|g| g["status"] == "fresh")
    );
    let info = p.run(&["--state", back, "state", "info"]);
    assert_contains(&info.stdout, "backend: sqlite");
    assert_contains(&info.stdout, "runs: 2");
}

/// `state copy` writes in bulk (PostgreSQL's `COPY` text format, batched
/// `INSERT`s into SQLite): values that format must escape (tab, newline,
/// return, backslash, `\N`), NULLs, and every byte of text come through
/// both ways, verified.
#[test]
fn state_copy_in_bulk_keeps_awkward_values_both_ways() {
    let Some(server) = server_or_skip("state_copy_in_bulk_keeps_awkward_values_both_ways") else {
        return;
    };
    let url = server.create_database();
    let p = Pipeline::new("");
    let file = p.s.repo.join("local.db");
    let until = ["--until", "2025-01-10"];
    let state = ["--state", file.to_str().unwrap()];
    let run = p.run(&[&state[..], &["run", "--progress", "plain"], &until].concat());
    assert_eq!(run.code, 0, "{}", run.stderr);
    let awkward = "tab\there\nnew line\r\\back \\N \\x00 'quoted' \"q\" é ☃";
    rusqlite::Connection::open(&file)
        .unwrap()
        .execute(
            "UPDATE runs SET args = ?1, result = NULL WHERE id = 1",
            [awkward],
        )
        .unwrap();
    let copy = p.run(&["state", "copy", file.to_str().unwrap(), &url]);
    assert_eq!(copy.code, 0, "{}\n{}", copy.stdout, copy.stderr);
    assert_contains(&copy.stdout, "verified");
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let row = client
        .query_one("SELECT args, result FROM runs WHERE id = 1", &[])
        .unwrap();
    assert_eq!(row.get::<_, String>(0), awkward);
    assert_eq!(row.get::<_, Option<String>>(1), None);
    let targets: i64 = client
        .query_one("SELECT count(*) FROM targets", &[])
        .unwrap()
        .get(0);
    assert!(targets >= 124, "{targets} targets copied");

    let back = p.s.repo.join("back.db");
    let copy = p.run(&["state", "copy", &url, back.to_str().unwrap()]);
    assert_eq!(copy.code, 0, "{}\n{}", copy.stdout, copy.stderr);
    let (args, result): (String, Option<String>) = rusqlite::Connection::open(&back)
        .unwrap()
        .query_row("SELECT args, result FROM runs WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((args.as_str(), result), (awkward, None));
    let plan = p.run(
        &[
            &[
                "--state",
                back.to_str().unwrap(),
                "plan",
                "--format",
                "json",
            ][..],
            &until,
        ]
        .concat(),
    );
    assert!(
        crate::plan_groups(&plan)
            .iter()
            .all(|g| g["status"] == "fresh")
    );
}

/// The server stopped in the middle of a run and started again: the jobs
/// that ended while it was away are recorded once it is back, the run
/// ends well, and the next run has nothing to do. A server that stays
/// away ends the run with an error naming the database.
#[test]
fn a_run_outlives_a_postgres_restart_and_fails_clearly_when_it_stays_down() {
    let Some(mut server) = server_or_skip("a_run_outlives_a_postgres_restart") else {
        return;
    };
    let url = server.create_database();
    let p = Pipeline::new("");
    let env = [
        ("CHRONON_BUILD_STATE_URL", url.as_str()),
        ("FAKE_ZIPLINE_SLEEP", "0.3"),
    ];
    let child = p.spawn(
        &["run", "--until", "2025-01-10", "--progress", "plain"],
        &env,
    );
    p.wait_for_calls(3);
    server.stop();
    std::thread::sleep(std::time::Duration::from_secs(3));
    server.restart();
    let out = child.wait_with_output().unwrap();
    let out = crate::Output::from(out);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_contains(&out.stderr, "connection lost");
    assert_contains(&out.stdout, "ok: 124 built");
    assert_no_password(&out);
    let again = p.run_with(
        &["run", "--until", "2025-01-10", "--progress", "plain"],
        &[("CHRONON_BUILD_STATE_URL", url.as_str())],
    );
    assert_contains(&again.stdout, "ok: 0 built in 0 job(s), 124 fresh");

    // Down for good: the run stops with an error naming the database.
    crate::forget_state(&p.s.repo);
    let url = server.create_database();
    let env = [
        ("CHRONON_BUILD_STATE_URL", url.as_str()),
        ("FAKE_ZIPLINE_SLEEP", "0.3"),
        ("CHRONON_BUILD_STATE_RECONNECT_SECS", "3"),
    ];
    p.clear_calls();
    let child = p.spawn(
        &["run", "--until", "2025-01-10", "--progress", "plain"],
        &env,
    );
    p.wait_for_calls(2);
    server.stop();
    let out = crate::Output::from(child.wait_with_output().unwrap());
    // The run failed (1), not a usage or settings error (2); its running
    // jobs were let finish, unrecorded.
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert_contains(&out.stderr, "waiting for");
    assert_contains(&out.stderr, "could not reconnect within 3 s");
    assert_contains(&out.stderr, "postgresql://chronon:***@127.0.0.1");
    assert_no_password(&out);
}

/// Readers never wait for a run writing the same database: `plan`,
/// `status`, `history`, `report` and `state info` answer while the run
/// records (PostgreSQL's MVCC; readers take no lock).
#[test]
fn readers_answer_while_a_run_writes_to_postgres() {
    let Some(server) = server_or_skip("readers_answer_while_a_run_writes_to_postgres") else {
        return;
    };
    let url = server.create_database();
    let p = Pipeline::new("");
    let env = [
        ("CHRONON_BUILD_STATE_URL", url.as_str()),
        ("FAKE_ZIPLINE_SLEEP", "0.5"),
    ];
    let child = p.spawn(&["run", "--until", "2025-01-10", "-j", "1"], &env);
    p.wait_for_calls(2);
    let report = p.s.repo.join("report.html");
    for args in [
        &["plan", "--until", "2025-01-10", "--format", "json"][..],
        &["status", "--until", "2025-01-10", "--format", "json"],
        &["history", "--format", "json"],
        &[
            "report",
            "--until",
            "2025-01-10",
            "--out",
            report.to_str().unwrap(),
        ],
        &["state", "info", "--format", "json"],
    ] {
        let started = std::time::Instant::now();
        let out = p.run_with(args, &env[..1]);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{args:?} took {:?}",
            started.elapsed()
        );
    }
    // The run was still going: the readers did not wait for its end.
    let calls_then = p.calls().len();
    let out = crate::Output::from(child.wait_with_output().unwrap());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        p.calls().len() > calls_then,
        "the run ended before the readers"
    );
}

/// Without a password in the URL, `PGPASSWORD` gives it, else the
/// password file (`PGPASSFILE`), which is ignored, saying so, when others
/// can read it.
#[test]
fn the_password_comes_from_pgpassword_or_the_password_file() {
    let Some(server) = server_or_skip("the_password_comes_from_pgpassword_or_the_password_file")
    else {
        return;
    };
    let url = server.create_database();
    let bare = url.replace(&format!(":{PASSWORD}@"), "@");
    let p = Pipeline::new("");
    let plan = [
        "--state-url",
        bare.as_str(),
        "plan",
        "--until",
        "2025-01-10",
    ];
    let out = p.run_with(
        &plan,
        &[("PGPASSWORD", PASSWORD), ("PGPASSFILE", "/nonexistent")],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let file = p.s.repo.join("pgpass");
    std::fs::write(&file, format!("127.0.0.1:*:*:chronon:{PASSWORD}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let file = file.to_str().unwrap();
    let out = p.run_with(&plan, &[("PGPASSFILE", file)]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_no_password(&out);
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = p.run_with(&plan, &[("PGPASSFILE", file)]);
    assert_ne!(out.code, 0);
    assert_contains(&out.stderr, "has group or world access; it is ignored");
}

/// The state's lock (`store::pg_lock::STATE_LOCK`, "chronon" in ASCII, as
/// pg_locks splits a bigint key) as granted in `database`: its modes.
fn state_locks(server: &PgServer, database: &str) -> Vec<String> {
    server
        .superuser(database)
        .query(
            "SELECT mode FROM pg_locks WHERE locktype = 'advisory' AND granted
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND classid = 6514802 AND objid = 1869508462",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Lets `USER` log in, or not (`NOLOGIN`): a command cannot connect
/// again until the test lets it.
fn set_login(server: &PgServer, login: &str) {
    server
        .admin()
        .batch_execute(&format!("ALTER ROLE {USER} {login}"))
        .unwrap()
}

/// A session of "the other holder" holding the state's lock exclusively.
fn hold_exclusive(server: &PgServer, database: &str) -> postgres::Client {
    let mut other = server.superuser(database);
    other
        .batch_execute("SET application_name = 'the other holder'")
        .unwrap();
    let taken: bool = other
        .query_one("SELECT pg_try_advisory_lock(27980863399423854)", &[])
        .unwrap()
        .get(0);
    assert!(taken);
    other
}

/// Waits (up to 30 s) until `done`.
fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !done() {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    true
}

/// A server restart lets every advisory lock go: the run takes its shared
/// lock again on a new connection, so an `adopt` started after the
/// restart is refused while the run goes on, and the run ends well.
/// A run on a fresh database of a server of its own, its jobs slow, two of
/// them started.
struct SlowRun {
    server: PgServer,
    url: String,
    database: String,
    p: Pipeline,
    child: std::process::Child,
}

fn slow_run(name: &str) -> Option<SlowRun> {
    let server = server_or_skip(name)?;
    let url = server.create_database();
    let database = url.rsplit('/').next().unwrap().to_string();
    let p = Pipeline::new("");
    let env = [
        ("CHRONON_BUILD_STATE_URL", url.as_str()),
        ("FAKE_ZIPLINE_SLEEP", "0.5"),
    ];
    let run = [
        "run",
        "--until",
        "2025-01-10",
        "--progress",
        "plain",
        "-j",
        "1",
    ];
    let child = p.spawn(&run, &env);
    p.wait_for_calls(2);
    Some(SlowRun {
        server,
        url,
        database,
        p,
        child,
    })
}

#[test]
fn a_run_takes_its_lock_again_after_a_postgres_restart_and_adopt_stays_refused() {
    let Some(SlowRun {
        mut server,
        url,
        database,
        p,
        mut child,
    }) = slow_run("a_run_takes_its_lock_again_after_a_postgres_restart")
    else {
        return;
    };
    let env = [("CHRONON_BUILD_STATE_URL", url.as_str())];
    assert_eq!(state_locks(&server, &database), ["ShareLock"]);
    server.stop();
    server.restart();
    let retaken = wait_until(|| !state_locks(&server, &database).is_empty());
    let adopt = p.run_with(&["adopt", "--until", "2025-01-10"], &env[..1]);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended before the adopt; it should still be running"
    );
    assert!(retaken, "the run did not take its lock again");
    assert_eq!(adopt.code, 2, "{}\n{}", adopt.stdout, adopt.stderr);
    assert_contains(&adopt.stderr, "is in use by one or more runs");
    let out = crate::Output::from(child.wait_with_output().unwrap());
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_contains(&out.stderr, "took the lock again (shared)");
    assert_contains(&out.stdout, "ok: 124 built");
    assert_no_password(&out);
}

/// When an exclusive holder gets the lock between the restart and the
/// run's attempt to take it again, the run no longer holds the state: it
/// starts nothing more, records nothing more, and fails (1) saying why.
#[test]
fn a_run_that_cannot_take_its_lock_again_stops_as_for_a_lost_state() {
    let Some(SlowRun {
        mut server,
        url: _,
        database,
        // Kept to the end: its folder is the running repository.
        p: _repo,
        child,
    }) = slow_run("a_run_that_cannot_take_its_lock_again_stops")
    else {
        return;
    };
    // The run cannot connect again until the other holder has the lock.
    set_login(&server, "NOLOGIN");
    server.stop();
    server.restart();
    let mut other = hold_exclusive(&server, &database);
    set_login(&server, "LOGIN");
    let out = crate::Output::from(child.wait_with_output().unwrap());
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert_contains(&out.stderr, "the other holder took it meanwhile");
    assert_contains(&out.stderr, "no new jobs");
    assert_no_password(&out);
    let recorded_after: i64 = other
        .query_one("SELECT count(*) FROM targets", &[])
        .unwrap()
        .get(0);
    assert!(recorded_after < 124, "{recorded_after} targets recorded");
}

/// TLS against a server that has it: `sslmode=require` (and `prefer`)
/// connect encrypted, and a run records its targets; the server lets the
/// role in over TLS only, so `sslmode=disable` is refused, the error naming
/// the host and the database and not the password.
#[test]
fn sslmode_require_runs_over_tls_and_disable_is_refused_by_a_tls_only_server() {
    let present = bin_dir().is_some() && PgServer::openssl_present();
    if !crate::tool_or_skip(
        "sslmode_require_runs_over_tls_and_disable_is_refused_by_a_tls_only_server",
        present,
        "PostgreSQL (initdb) or openssl is not installed",
    ) {
        return;
    }
    let server = PgServer::start_tls();
    let url = server.create_database();
    let database = url.rsplit('/').next().unwrap().to_string();
    let p = Pipeline::new("");
    let until = ["--until", "2025-01-10"];
    let require = format!("{url}?sslmode=require");
    let run = p.run(
        &[
            &["--state-url", &require, "run", "--progress", "plain"][..],
            &until,
        ]
        .concat(),
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_contains(&run.stdout, "ok: 124 built");
    assert_no_password(&run);
    let prefer = format!("{url}?sslmode=prefer");
    let again = p.run(
        &[
            &["--state-url", &prefer, "run", "--progress", "plain"][..],
            &until,
        ]
        .concat(),
    );
    assert_contains(&again.stdout, "ok: 0 built in 0 job(s), 124 fresh");
    // Every session of the role was TLS (the server logs each one).
    let log = server.log();
    let sessions: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains(&format!(
                "connection authorized: user={USER} database={database}"
            ))
        })
        .collect();
    assert!(!sessions.is_empty(), "no session logged:\n{log}");
    for line in &sessions {
        assert!(line.contains("SSL enabled"), "not over TLS: {line}");
    }

    let disable = format!("{url}?sslmode=disable");
    let out = p.run(&["--state-url", &disable, "plan", "--until", "2025-01-10"]);
    assert_error(&out, "no pg_hba.conf entry");
    assert_contains(
        &out.stderr,
        &format!("@127.0.0.1:{}/{database}", server.port),
    );
    assert_contains(&out.stderr, "no encryption");
    assert_no_password(&out);
}

/// A command waiting for the state's lock (`--wait-lock`) when the server
/// restarts waits again on a new connection, and goes on once the holder
/// lets the lock go: here `gc`, behind an exclusive holder that takes the
/// lock again after the restart before the command can reconnect.
#[test]
fn a_command_waiting_for_the_lock_waits_again_after_a_postgres_restart() {
    let name = "a_command_waiting_for_the_lock_waits_again_after_a_postgres_restart";
    let Some(mut server) = server_or_skip(name) else {
        return;
    };
    let url = server.create_database();
    let database = url.rsplit('/').next().unwrap().to_string();
    let p = Pipeline::new("");
    let env = [("CHRONON_BUILD_STATE_URL", url.as_str())];
    let built = p.run_with(&["run", "--until", "2025-01-10"], &env);
    assert_eq!(built.code, 0, "{}\n{}", built.stdout, built.stderr);
    let other = hold_exclusive(&server, &database);
    let waiting = |server: &PgServer| {
        server
            .superuser(&database)
            .query(
                "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
                   AND classid = 6514802 AND objid = 1869508462",
                &[],
            )
            .unwrap()
            .len()
            == 1
    };
    let gc = ["gc", "--until", "2025-01-10", "--wait-lock"];
    let child = p.spawn(&gc, &env);
    assert!(wait_until(|| waiting(&server)), "gc never waited");
    // The command cannot connect again until the holder has the lock back.
    set_login(&server, "NOLOGIN");
    // Stopped while the holder still holds it (the stop ends its session):
    // let go before, the lock would go to the command first.
    server.stop();
    drop(other);
    server.restart();
    let other = hold_exclusive(&server, &database);
    set_login(&server, "LOGIN");
    let waited = wait_until(|| waiting(&server));
    drop(other);
    let out = crate::Output::from(child.wait_with_output().unwrap());
    assert!(
        waited,
        "gc did not wait again:\n{}\n{}",
        out.stdout, out.stderr
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_contains(
        &out.stderr,
        "connection lost while waiting for the state's lock",
    );
    assert_contains(&out.stdout, "nothing to remove");
    assert_no_password(&out);
}
