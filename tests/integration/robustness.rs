//! Hostile input, found by fuzzing and by hand (issue 15): each test is
//! named after what broke. Nothing panics or hangs; bad values exit 2
//! naming the file and field.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::{Output, Scenario, assert_contains, assert_error, chronon_build};

fn group_by(name: &str) -> Value {
    json!({
        "metaData": {"name": name, "team": "t", "outputNamespace": "out"},
        "sources": [{"events": {"table": "raw.events", "query": {
            "selects": {"k": "k", "v": "v"}, "timeColumn": "ts"}}}],
        "keyColumns": ["k"],
        "aggregations": [{"inputColumn": "v", "operation": 7, "windows": [{"length": 2, "timeUnit": 1}]}],
        "backfillStartDate": "2025-01-02"
    })
}

/// A repository on the embedded default with `raw.events` seeded for
/// 2025-01-01..05, and the given group-bys under production/group_bys/t/.
fn repo(configs: &[(&str, String)], settings: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    std::fs::create_dir_all(root.join("data")).unwrap();
    let mut csv = String::from("k,v,ts,ds\n");
    for day in 1..=5 {
        csv.push_str(&format!(
            "1,{day},{},2025-01-0{day}\n",
            1_735_689_600_000i64 + (day - 1) * 86_400_000 + 1000
        ));
    }
    std::fs::write(root.join("data/events.csv"), csv).unwrap();
    std::fs::write(
        root.join("chronon-build.toml"),
        format!("{settings}\n[warehouse.seed]\n\"raw.events\" = \"data/events.csv\"\n"),
    )
    .unwrap();
    std::fs::write(root.join("teams.json"), r#"{"t": {"namespace": "out"}}"#).unwrap();
    for (file, text) in configs {
        let path = root.join("production/group_bys/t").join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    (dir, root)
}

/// A fresh copy of the demo, with no state or warehouse.
fn demo() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("demo");
    crate::copy_dir(&crate::testdata("demo"), &root);
    let _ = std::fs::remove_dir_all(root.join(".chronon-build"));
    (dir, root)
}

/// Reads a JSON file, changes it, writes it back.
fn edit_json(path: &Path, change: impl FnOnce(&mut Value)) {
    let mut value: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    change(&mut value);
    std::fs::write(path, text(&value)).unwrap();
}

fn text(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap()
}

#[test]
fn a_config_name_of_the_longest_allowed_plans_and_runs() {
    // Names are bounded at 1,024 characters (a 70,000-character name once
    // planned too: nothing needs one, and a plan holds names per target).
    let long = format!("t.{}", "x".repeat(1_022));
    let (_dir, root) = repo(&[("long", text(&group_by(&long)))], "");
    let plan = chronon_build(&root, &["plan", "--until", "2025-01-03"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert_contains(&plan.stdout.replace("\n    ", ""), "never-built");
    let longer = format!("t.{}", "x".repeat(1_023));
    let (_dir, root) = repo(&[("long", text(&group_by(&longer)))], "");
    let validate = chronon_build(&root, &["validate"]);
    assert_eq!(validate.code, 2, "{}", validate.stderr);
    assert_contains(
        &validate.stderr,
        "production/group_bys/t/long: metaData.name: a name of 1,025 characters: expected at most 1024",
    );
    // Its jobs' log files stay under the file name limit.
    let medium = format!("t.{}", "y".repeat(300));
    let (_dir, root) = repo(&[("medium", text(&group_by(&medium)))], "");
    let run = chronon_build(&root, &["run", "--until", "2025-01-03"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_contains(&run.stdout, "ok: 2 built");
}

/// A 5,000,000-character table name once made `plan` take gigabytes:
/// refused at load, naming the file, the field and the bound, at once.
#[test]
fn a_table_name_of_5000000_characters_is_refused_naming_file_field_and_bound() {
    let mut gb = group_by("t.g");
    gb["sources"][0]["events"]["table"] = json!(format!("raw.{}", "x".repeat(5_000_000)));
    let (_dir, root) = repo(&[("g", text(&gb))], "");
    let cases: [(&[&str], i32); 3] = [
        (&["validate"], 2),
        (&["plan", "--strict", "--until", "2025-01-03"], 2),
        // Without --strict the config is set apart and the rest planned.
        (&["plan", "--until", "2025-01-03"], 1),
    ];
    for (args, code) in cases {
        let started = std::time::Instant::now();
        let out = chronon_build(&root, args);
        assert_eq!(
            out.code,
            code,
            "{args:?}: {}",
            &out.stderr[..out.stderr.len().min(2000)]
        );
        assert_contains(
            &out.stderr,
            "production/group_bys/t/g: sources[0].events.table: a name of 5,000,004 characters: \
             expected at most 1024",
        );
        assert!(
            out.stderr.len() < 5_000,
            "{args:?}: the name is not echoed back"
        );
        assert!(
            started.elapsed().as_secs() < 20,
            "{args:?}: {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn jobs_limits_and_durations_out_of_range_are_refused_naming_the_field() {
    let gb = text(&group_by("t.g"));
    let cases: [(&str, &[&str], &str); 10] = [
        ("", &["-j", "1000000"], "expected 1 to 1024 jobs at once"),
        (
            "[state]\nlease = \"30s\"\n",
            &[],
            "state.lease: expected more than bounds.stop_grace + 5s (35s)",
        ),
        (
            "[state]\nlease = \"2m\"\n[bounds]\nstop_grace = \"2m\"\n",
            &[],
            "state.lease",
        ),
        (
            "[limits]\njobs = 1000000\n",
            &[],
            "limits.jobs: 1000000: expected 1 to 1024",
        ),
        (
            "[limits.steps]\ngroup-by-backfill = 0\n",
            &[],
            "limits.steps.group-by-backfill: 0: expected 1 to 1024",
        ),
        (
            "[limits.teams]\nt = 0\n",
            &[],
            "limits.teams.t: 0: expected 1 to 1024",
        ),
        (
            "[executor]\ntimeout = \"18446744073709551615s\"\n",
            &[],
            "executor.timeout",
        ),
        (
            "[retry]\nbackoff = \"18446744073709551615s\"\n",
            &[],
            "retry.backoff",
        ),
        ("", &["--wait", "18446744073709551615s"], "--wait"),
        ("", &["--retries", "1000"], "--retries"),
    ];
    for (settings, args, message) in cases {
        let (_dir, root) = repo(&[("g", gb.clone())], settings);
        let mut all = vec!["run", "--until", "2025-01-03"];
        all.extend(args);
        let out = chronon_build(&root, &all);
        assert_error(&out, message);
        assert!(
            !root.join(".chronon-build/state.db").exists(),
            "{settings} {args:?}"
        );
    }
    // The local engine's bounds: the file, the field, and what is taken.
    let bounds = [
        (
            "[bounds]\nmemory = \"1MiB\"\n",
            "bounds.memory",
            "\"1MiB\": expected 16MiB to 1024GiB",
        ),
        (
            "[bounds]\nmemory = \"2048GiB\"\n",
            "bounds.memory",
            "\"2048GiB\": expected 1KiB to 1024GiB",
        ),
        (
            "[bounds]\nmemory = \"lots\"\n",
            "bounds.memory",
            "expected a size such as 32MiB",
        ),
        (
            "[bounds]\ntime = \"0s\"\n",
            "bounds.time",
            "\"0s\": expected at least 1s",
        ),
        (
            "[bounds.steps.staging-query]\ntime = \"18446744073709551615s\"\n",
            "bounds.steps.staging-query.time",
            "is longer than the longest duration taken, 366d",
        ),
        (
            "[bounds.steps.join-part]\nmemory = \"8MiB\"\n",
            "bounds.steps.join-part.memory",
            "expected 16MiB to 1024GiB",
        ),
        (
            "[bounds.steps.join-part]\ncpu = \"1\"\n",
            "bounds.steps.join-part.cpu",
            "unknown field `cpu`, expected `memory` or `time`",
        ),
        (
            "[bounds.steps.group-by-backfil]\nmemory = \"1GiB\"\n",
            "bounds.steps.group-by-backfil",
            "expected a step name (staging-query, group-by-backfill,",
        ),
    ];
    for (settings, field, reason) in bounds {
        let (_dir, root) = repo(&[("g", gb.clone())], settings);
        let out = chronon_build(&root, &["run", "--until", "2025-01-03"]);
        assert_error(&out, reason);
        assert_contains(&out.stderr, &format!("chronon-build.toml: {field}: "));
        assert!(!root.join(".chronon-build/state.db").exists(), "{settings}");
    }
    let (_dir, root) = repo(&[("g", gb)], "[executor]\ntimeout = \"400d\"\n");
    let out = chronon_build(&root, &["plan", "--until", "2025-01-03"]);
    assert_error(&out, "longer than the longest duration taken, 366d");
}

#[test]
fn a_span_of_centuries_is_refused_quickly_not_planned() {
    let (_dir, root) = repo(&[("g", text(&group_by("t.g")))], "");
    let started = std::time::Instant::now();
    let out = chronon_build(&root, &["plan", "--until", "9999-12-31"]);
    assert_error(
        &out,
        "group-by-backfill:t.g: 2025-01-02..9999-12-31 is 2912807 daily partitions, more than the 10000",
    );
    let mut old = group_by("t.old");
    old["backfillStartDate"] = json!("0001-01-01");
    let (_dir, root) = repo(&[("old", text(&old))], "");
    let out = chronon_build(&root, &["plan", "--until", "2025-01-03"]);
    assert_error(&out, "group-by-backfill:t.old: 0001-01-01..2025-01-03");
    // Not a timing assertion: a guard against planning millions of days.
    assert!(started.elapsed().as_secs() < 60);
}

#[test]
fn impossible_dates_say_which_part_does_not_exist() {
    let (_dir, root) = repo(&[("g", text(&group_by("t.g")))], "");
    let out = chronon_build(&root, &["plan", "--until", "2025-09-31"]);
    assert_error(&out, "\"2025-09-31\" is not a day");
    assert_contains(&out.stderr, "1..=30");
    let mut bad = group_by("t.g");
    bad["backfillStartDate"] = json!("2025-02-29");
    let (_dir, root) = repo(&[("g", text(&bad))], "");
    let out = chronon_build(&root, &["validate"]);
    assert_error(
        &out,
        "production/group_bys/t/g: backfillStartDate: \"2025-02-29\" is not a day",
    );
}

#[test]
fn duplicate_keys_are_refused_and_a_byte_order_mark_is_read() {
    let gb = text(&group_by("t.g"));
    let duplicated = gb.replacen(
        "\"keyColumns\"",
        "\"keyColumns\": [\"v\"],\n  \"keyColumns\"",
        1,
    );
    let (_dir, root) = repo(&[("g", duplicated)], "");
    let out = chronon_build(&root, &["validate"]);
    assert_error(
        &out,
        "production/group_bys/t/g: malformed JSON: duplicate key \"keyColumns\" at line",
    );
    let (_dir, root) = repo(&[("g", format!("\u{feff}{gb}"))], "");
    let out = chronon_build(&root, &["validate"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn a_zero_window_a_negative_k_and_a_negative_sample_percent_are_refused() {
    let mut gb = group_by("t.g");
    gb["aggregations"][0]["windows"][0]["length"] = json!(0);
    gb["aggregations"]
        .as_array_mut()
        .unwrap()
        .push(json!({"inputColumn": "v", "operation": 13, "argMap": {"k": "-3"}}));
    gb["metaData"]["samplePercent"] = json!(-50);
    let (_dir, root) = repo(&[("g", text(&gb))], "");
    let out = chronon_build(&root, &["validate"]);
    assert_error(
        &out,
        "aggregations[0].windows[0].length: expected a window length from 1 to 36600 Days, got 0",
    );
    assert_contains(
        &out.stderr,
        "aggregations[1].argMap.k: expected a whole number of values from 1 to 1000000, got \"-3\"",
    );
    assert_contains(
        &out.stderr,
        "metaData.samplePercent: expected a percentage from 0 to 100, got -50",
    );
}

#[test]
fn a_state_path_that_is_a_device_or_a_folder_is_named_as_such() {
    let (_dir, root) = repo(&[("g", text(&group_by("t.g")))], "");
    let out = chronon_build(
        &root,
        &["--state", "/dev/null", "plan", "--until", "2025-01-03"],
    );
    assert_error(&out, "/dev/null: is not a regular file");
    let folder = root.join("somewhere");
    std::fs::create_dir_all(&folder).unwrap();
    let out = chronon_build(
        &root,
        &[
            "--state",
            folder.to_str().unwrap(),
            "run",
            "--until",
            "2025-01-03",
        ],
    );
    assert_error(&out, "is a folder; expected the state file");
}

/// A state file that a writer has created but not yet given its schema
/// reads as empty, rather than "schema version 0 needs an upgrade".
#[test]
fn a_state_being_created_reads_as_empty() {
    let (_dir, root) = repo(&[("g", text(&group_by("t.g")))], "");
    let state = root.join(".chronon-build/state.db");
    std::fs::create_dir_all(state.parent().unwrap()).unwrap();
    std::fs::write(&state, b"").unwrap();
    let out = chronon_build(&root, &["history"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = chronon_build(&root, &["status", "--until", "2025-01-03"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

/// `plan | head -1`: the reader goes away; the command ends without a
/// panic (killed by SIGPIPE, as Unix tools are).
#[test]
fn closed_output_ends_read_only_commands_quietly() {
    let s = Scenario::copy("scenario");
    crate::scenario::seed_sources(&s, 10);
    for args in [
        vec!["plan", "--until", "2025-01-10"],
        vec!["graph", "--format", "json"],
        vec!["completions", "bash"],
    ] {
        let mut child = crate::command(&s.repo)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_ne!(out.status.code(), Some(101), "{args:?}: {stderr}");
    }
}

/// A folder of configs that cannot be listed is an error, not an empty
/// folder. (Root reads any folder, so this runs the binary as `nobody`
/// when the tests run as root.)
#[test]
fn an_unreadable_config_folder_is_an_error_not_skipped() {
    let (_dir, root) = repo(&[("g", text(&group_by("t.g")))], "");
    let joins = root.join("production/joins/t");
    std::fs::create_dir_all(&joins).unwrap();
    let mut j = group_by("t.j");
    j["backfillStartDate"] = Value::Null;
    std::fs::write(joins.join("j"), "{}").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        root.join("production/joins"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    let out = as_unprivileged(&root, &["validate"]);
    std::fs::set_permissions(
        root.join("production/joins"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    assert_error(
        &out,
        "production/joins/: cannot read the folder: Permission denied",
    );
}

/// `run ... | head -1`: the run does its work and records it even when
/// nobody reads what it says.
#[test]
fn a_run_whose_reader_goes_away_still_finishes_and_records() {
    let (_dir, root) = repo(&[("g", text(&group_by("t.g")))], "");
    let mut child = crate::command(&root)
        .args(["run", "--until", "2025-01-03", "--progress", "plain"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
    let plan = chronon_build(&root, &["plan", "--until", "2025-01-03", "--exit-code"]);
    assert_eq!(
        plan.code, 0,
        "everything fresh after the run: {}",
        plan.stdout
    );
}

/// One team's broken file does not stop the others: the invalid config is
/// listed as an error, what reads its table is blocked (invalid config),
/// the rest runs, and the command exits 1; `--strict` refuses everything.
#[test]
fn an_invalid_config_blocks_only_what_reads_it() {
    let (_dir, root) = demo();
    let broken = root.join("production/staging_queries/quickstart/checkouts.v1");
    edit_json(&broken, |sq| sq["query"] = json!(5));

    let strict = chronon_build(&root, &["run", "--strict", "--until", "2025-09-03"]);
    assert_error(
        &strict,
        "production/staging_queries/quickstart/checkouts.v1: query: expected a string",
    );
    assert!(!root.join(".chronon-build/state.db").exists());

    let plan = chronon_build(&root, &["plan", "--until", "2025-09-03"]);
    assert_eq!(plan.code, 1, "{}\n{}", plan.stdout, plan.stderr);
    assert_contains(
        &plan.stderr,
        "error: production/staging_queries/quickstart/checkouts.v1: query: expected a string",
    );
    assert_contains(
        &plan.stdout,
        "blocked: invalid config production/staging_queries/quickstart/checkouts.v1 (it writes quickstart.quickstart_checkouts_v1)",
    );

    let run = chronon_build(&root, &["run", "--until", "2025-09-03"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    // The group-bys ran; the join, which reads the staging query's table,
    // did not, nor anything after it.
    assert_contains(
        &run.stdout,
        "ran     group-by-backfill:quickstart.purchases.v1",
    );
    assert!(!run.stdout.contains("ran     join-"), "{}", run.stdout);
    let status = chronon_build(&root, &["status", "--until", "2025-09-03"]);
    assert_eq!(status.code, 1, "{}", status.stderr);
    let json = chronon_build(
        &root,
        &["plan", "--until", "2025-09-03", "--format", "json"],
    );
    let plan: Value = serde_json::from_str(&json.stdout).unwrap();
    let groups = plan["groups"].as_array().unwrap();
    let final_ = groups
        .iter()
        .find(|g| g["step"] == "join-final")
        .expect("the join's final");
    assert_eq!(final_["status"], "blocked", "{final_:#}");
    let left = groups.iter().find(|g| g["step"] == "join-left").unwrap();
    assert_eq!(
        left["input"]["invalid_config"],
        "production/staging_queries/quickstart/checkouts.v1"
    );
}

/// A local job reads only its own config: it passes `--conf`, and a file it
/// does not compute (here one that is not even JSON) is never opened, so a
/// job costs the same in a repository of ten configs or ten thousand.
#[test]
fn local_jobs_load_only_the_config_they_compute() {
    let (_dir, root) = repo(&[("g", text(&group_by("t.g")))], "");
    // Imports the source (plan and a dry run read seed files in place and
    // import nothing).
    let events = root.join("data/events.csv").display().to_string();
    let import = chronon_build(&root, &["warehouse", "import", "raw.events", &events]);
    assert_eq!(import.code, 0, "{}", import.stderr);
    let dry = chronon_build(&root, &["run", "-n", "--until", "2025-01-03"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_contains(&dry.stdout, "--conf production/group_bys/t/g");
    std::fs::write(root.join("production/group_bys/t/other"), "not json").unwrap();
    let out = chronon_build(
        &root,
        &[
            "compute",
            "group-by-backfill",
            "t.g",
            "--from",
            "2025-01-02",
            "--until",
            "2025-01-03",
            "--conf",
            "production/group_bys/t/g",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("other"), "{}", out.stderr);
    let escape = chronon_build(
        &root,
        &[
            "compute",
            "group-by-backfill",
            "t.g",
            "--conf",
            "../etc/passwd",
        ],
    );
    assert_error(
        &escape,
        "--conf ../etc/passwd: expected a config file under production/",
    );
}

/// Runs the binary as `nobody` when the tests run as root (root writes
/// anywhere, so read-only folders mean nothing to it), else as is.
fn as_unprivileged(root: &Path, args: &[&str]) -> Output {
    use std::os::unix::fs::PermissionsExt;
    if unsafe { libc::geteuid() } != 0 {
        return chronon_build(root, args);
    }
    let mut at: &Path = root;
    while let Some(parent) = at.parent() {
        let _ = std::fs::set_permissions(at, std::fs::Permissions::from_mode(0o755));
        if parent == Path::new("/tmp") || parent == Path::new("/") {
            break;
        }
        at = parent;
    }
    let out = Command::new("runuser")
        .args(["-u", "nobody", "--"])
        .arg(env!("CARGO_BIN_EXE_chronon-build"))
        .arg("--repo")
        .arg(root)
        .args(args)
        .output()
        .expect("runuser (util-linux) runs");
    Output::from(out)
}

/// plan, status, history, report and explain read a state they cannot
/// write, in a folder they cannot write (a read-only mount, another
/// user's state), and change nothing in it.
#[test]
fn read_only_commands_read_a_state_they_cannot_write() {
    use std::os::unix::fs::PermissionsExt;
    if crate::postgres::on_postgres() {
        eprintln!(
            "read_only_commands_read_a_state_they_cannot_write: SQLite only: it makes the \
             state's folder read-only"
        );
        return;
    }
    let (_dir, root) = repo(&[("g", text(&group_by("t.g")))], "");
    let run = chronon_build(&root, &["run", "--until", "2025-01-03"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let state_dir = root.join(".chronon-build");
    // Everything readable, nothing writable, and the WAL files gone, as
    // after a clean close.
    let listing = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let before = listing(&state_dir);
    for entry in std::fs::read_dir(&state_dir).unwrap() {
        let path = entry.unwrap().path();
        let mode = if path.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::fs::set_permissions(&state_dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    // The warehouse is read too (plan probes it): readable, not writable.
    for args in [
        &["plan", "--until", "2025-01-03", "--exit-code"][..],
        &["status", "--until", "2025-01-03"],
        &["history"],
        &[
            "explain",
            "group-by-backfill:t.g@2025-01-03",
            "--until",
            "2025-01-03",
        ],
    ] {
        let out = as_unprivileged(&root, args);
        assert_eq!(out.code, 0, "{args:?}: {}\n{}", out.stdout, out.stderr);
    }
    std::fs::set_permissions(&state_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(
        listing(&state_dir),
        before,
        "a reader wrote into the state folder"
    );
}

/// Staging-query SQL runs read-only on the local engine: it can read every
/// namespace, and nothing else: no file created by ATTACH or VACUUM INTO, no
/// source row deleted, no table created; each refused with the config.
#[test]
fn staging_query_sql_cannot_write_anything() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("stolen.db");
    let target = target.display().to_string();
    let queries = [
        (format!("ATTACH DATABASE '{target}' AS p"), "ATTACH"),
        (format!("VACUUM INTO '{target}'"), "staging queries run read-only"),
        (
            "DELETE FROM raw.events WHERE ds BETWEEN '{{ start_date }}' AND '{{ end_date }}' RETURNING k, ds".to_string(),
            "DELETE from events",
        ),
        ("CREATE TABLE raw.x AS SELECT 1 AS ds".to_string(), "a schema change"),
        ("PRAGMA raw.journal_mode = DELETE".to_string(), "PRAGMA journal_mode"),
    ];
    for (query, refused) in queries {
        let (_dir, root) = repo(&[], "");
        let sq = json!({
            "metaData": {"name": "t.sq", "team": "t", "outputNamespace": "out"},
            "query": query,
            "startPartition": "2025-01-02"
        });
        let path = root.join("production/staging_queries/t/sq");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text(&sq)).unwrap();
        // Imports the source (plan reads seed files in place).
        let events = root.join("data/events.csv").display().to_string();
        let import = chronon_build(&root, &["warehouse", "import", "raw.events", &events]);
        assert_eq!(import.code, 0, "{}", import.stderr);
        let before = chronon_build(
            &root,
            &["warehouse", "ls", "raw.events", "--format", "json"],
        );
        let run = chronon_build(&root, &["run", "--until", "2025-01-03"]);
        assert_eq!(run.code, 1, "{query}: {}\n{}", run.stdout, run.stderr);
        let logs = chronon_build(&root, &["logs", "staging-query:t.sq"]);
        let said = format!("{}{}{}", run.stdout, logs.stdout, logs.stderr);
        assert_contains(&said, "staging queries run read-only");
        assert_contains(&said, refused);
        assert!(!Path::new(&target).exists(), "{query} created {target}");
        let after = chronon_build(
            &root,
            &["warehouse", "ls", "raw.events", "--format", "json"],
        );
        // The run imports the seed file again (same rows, a new write time).
        let content = |out: &super::Output| -> Vec<String> {
            out.stdout
                .lines()
                .filter(|l| !l.contains("written_at"))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(
            content(&before),
            content(&after),
            "{query} changed raw.events"
        );
        let listing = chronon_build(&root, &["warehouse", "ls"]);
        assert!(
            !listing.stdout.contains("raw.x"),
            "{query}: {}",
            listing.stdout
        );
    }
}

/// A seed file is the whole truth of its table: a day deleted from the file
/// is removed from the table on the next import, what read it restates,
/// and every output then equals a clean build from the edited file.
#[test]
fn a_day_deleted_from_a_seed_file_is_removed_and_restates_its_readers() {
    let gb = text(&group_by("t.g"));
    let (_dir, root) = repo(&[("g", gb.clone())], "");
    let run = chronon_build(&root, &["run", "--until", "2025-01-05"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let csv = std::fs::read_to_string(root.join("data/events.csv")).unwrap();
    let edited: String = csv
        .lines()
        .filter(|l| !l.ends_with("2025-01-03"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(root.join("data/events.csv"), &edited).unwrap();
    let plan = chronon_build(&root, &["plan", "--until", "2025-01-05"]);
    crate::assert_planned(&plan);
    assert_contains(&plan.stdout, "input-removed raw.events ds=2025-01-03");
    // The day the file lost is now missing: its own target is blocked, as
    // in a clean build (exit 3), and readers of it restate.
    let run = chronon_build(&root, &["run", "--until", "2025-01-05"]);
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    assert_contains(&run.stdout, "missing raw.events ds=2025-01-03");
    let gone = chronon_build(
        &root,
        &["warehouse", "show", "raw.events", "--ds", "2025-01-03"],
    );
    assert_contains(&gone.stderr, "no partition 2025-01-03");

    // A clean build from the edited file.
    let (_clean_dir, clean) = repo(&[("g", gb)], "");
    std::fs::write(clean.join("data/events.csv"), &edited).unwrap();
    let run = chronon_build(&clean, &["run", "--until", "2025-01-05"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    for day in ["2025-01-02", "2025-01-04", "2025-01-05"] {
        assert_eq!(
            crate::show_rows(&root, "out.t_g", day),
            crate::show_rows(&clean, "out.t_g", day),
            "{day}"
        );
    }
}

/// The ordering race: with the staging query starting later than the join
/// that reads it, a clean build ran the join's early days while the staging
/// query was creating its table, and exited 1 or 0 by luck. Days that no
/// target of the producer builds are missing inputs: the same answer every
/// time.
#[test]
fn a_clean_build_gives_the_same_answer_every_time() {
    let (_dir, root) = demo();
    let sq = root.join("production/staging_queries/quickstart/checkouts.v1");
    edit_json(&sq, |config| config["startPartition"] = json!("2025-09-10"));
    let mut answers = std::collections::BTreeSet::new();
    for _ in 0..8 {
        let _ = std::fs::remove_dir_all(root.join(".chronon-build"));
        crate::state_db::lose(&root);
        let run = chronon_build(&root, &["run", "--until", "2025-09-12", "-j", "4", "-v"]);
        let summary = run.stdout.lines().last().unwrap_or_default().to_string();
        let summary = summary.split("; wall time").next().unwrap().to_string();
        assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
        assert_contains(
            &run.stdout,
            "blocked join-left:quickstart.training_set.v1@2025-09-01..2025-09-09 (9 partition(s)): missing quickstart.quickstart_checkouts_v1 ds=2025-09-01..2025-09-09",
        );
        answers.insert(summary);
    }
    assert_eq!(answers.len(), 1, "{answers:#?}");
}

/// Every row of a KV dataset: (key, value).
fn kv_values(root: &Path) -> Vec<(String, String, String)> {
    let conn = rusqlite::Connection::open(root.join(".chronon-build/kv.sqlite")).unwrap();
    let mut stmt = conn
        .prepare("SELECT dataset, key, value FROM kv ORDER BY dataset, key")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Schema evolution: a window 3d -> 7d drops the `_3d` columns from every
/// table the step writes and from the KV values, as a clean build has them.
#[test]
fn a_changed_window_leaves_no_stale_column_behind() {
    let edit = |root: &Path| {
        for (path, part) in [
            ("production/group_bys/quickstart/returns.v1", None),
            ("production/joins/quickstart/training_set.v1", Some(1)),
        ] {
            edit_json(&root.join(path), |conf| {
                let gb = match part {
                    Some(i) => &mut conf["joinParts"][i]["groupBy"],
                    None => conf,
                };
                gb["aggregations"][0]["windows"][0]["length"] = json!(7);
            });
        }
    };
    let until = ["--until", "2025-09-04"];
    let (_a, incremental) = demo();
    let run = chronon_build(&incremental, &[&["run"][..], &until].concat());
    assert_eq!(run.code, 0, "{}", run.stderr);
    edit(&incremental);
    let run = chronon_build(&incremental, &[&["run"][..], &until].concat());
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (_b, clean) = demo();
    edit(&clean);
    let run = chronon_build(&clean, &[&["run"][..], &until].concat());
    assert_eq!(run.code, 0, "{}", run.stderr);

    for table in [
        "quickstart.quickstart_returns_v1",
        "quickstart.quickstart_training_set_v1_quickstart_returns_v1",
        "quickstart.quickstart_training_set_v1",
    ] {
        for day in ["2025-09-01", "2025-09-04"] {
            let got = crate::show_rows(&incremental, table, day);
            assert!(
                !got.to_string().contains("refund_amt_sum_3d"),
                "{table} {day} keeps the old column"
            );
            assert_eq!(got, crate::show_rows(&clean, table, day), "{table} {day}");
        }
    }
    let upload = crate::show_rows(
        &incremental,
        "quickstart.quickstart_returns_v1_upload",
        "2025-09-04",
    );
    assert!(!upload.to_string().contains("refund_amt_sum_3d"));
    assert_eq!(kv_values(&incremental), kv_values(&clean));
}

/// Edits behind the catalog: rows changed or deleted directly in SQLite are
/// found by `warehouse verify`, which corrects the catalog (exit 1); then
/// `plan` restates what wrote or read them, and a run converges. Damaged
/// files are named with a way out.
#[test]
fn warehouse_verify_finds_edits_behind_the_catalog() {
    let (_dir, root) = repo(&[("g", text(&group_by("t.g")))], "");
    let run = chronon_build(&root, &["run", "--until", "2025-01-04"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let clean = chronon_build(&root, &["warehouse", "verify"]);
    assert_eq!(clean.code, 0, "{}", clean.stderr);
    assert_contains(&clean.stdout, "0 partition(s) differed");

    let warehouse = root.join(".chronon-build/warehouse");
    let out = rusqlite::Connection::open(warehouse.join("out.sqlite")).unwrap();
    out.execute(
        "UPDATE t_g SET v_sum_2d = v_sum_2d + 1 WHERE ds = '2025-01-03'",
        [],
    )
    .unwrap();
    drop(out);
    let raw = rusqlite::Connection::open(warehouse.join("raw.sqlite")).unwrap();
    raw.execute("DELETE FROM events WHERE ds = '2025-01-04'", [])
        .unwrap();
    drop(raw);
    let before = chronon_build(&root, &["plan", "--until", "2025-01-04", "--exit-code"]);
    assert_eq!(before.code, 0, "edits behind the catalog are not seen yet");

    let verify = chronon_build(&root, &["warehouse", "verify"]);
    assert_eq!(verify.code, 1, "{}\n{}", verify.stdout, verify.stderr);
    assert_contains(&verify.stdout, "out.t_g 2025-01-03: 1 -> 1 row(s)");
    assert_contains(&verify.stdout, "raw.events 2025-01-04: 1 -> 0 row(s)");
    assert_contains(&verify.stdout, "2 partition(s) differed");
    let plan = chronon_build(&root, &["plan", "--until", "2025-01-04"]);
    assert_contains(&plan.stdout, "output-modified out.t_g ds=2025-01-03");
    assert_contains(&plan.stdout, "input-changed raw.events ds=2025-01-04");
    let run = chronon_build(&root, &["run", "--until", "2025-01-04"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(chronon_build(&root, &["warehouse", "verify"]).code, 0);

    // Random bytes in a warehouse file, and in the state.
    let file = warehouse.join("out.sqlite");
    let mut bytes = std::fs::read(&file).unwrap();
    for b in bytes.iter_mut().skip(100).step_by(7) {
        *b = 0x5a;
    }
    std::fs::write(&file, bytes).unwrap();
    let damaged = chronon_build(&root, &["warehouse", "verify"]);
    assert_eq!(damaged.code, 2, "{}\n{}", damaged.stdout, damaged.stderr);
    assert_contains(&damaged.stderr, "out.sqlite");
    if crate::postgres::on_postgres() {
        // A damaged file is SQLite's case; PostgreSQL keeps its own pages.
        return;
    }
    std::fs::write(root.join(".chronon-build/state.db"), vec![0x5au8; 8192]).unwrap();
    let _ = std::fs::remove_file(root.join(".chronon-build/state.db-wal"));
    let _ = std::fs::remove_file(root.join(".chronon-build/state.db-shm"));
    let state = chronon_build(&root, &["plan", "--until", "2025-01-04"]);
    assert_error(&state, "the state file is damaged");
    assert_contains(&state.stderr, "chronon-build adopt --until DAY");
}

/// Orphans: when a staging query's start moves later, its partitions before
/// the new start are listed by plan ("to remove"), removed by run before
/// anything reads them, and the outputs match a clean build.
#[test]
fn partitions_before_a_moved_start_are_removed_as_a_clean_build_has_none() {
    let later = |root: &Path| {
        let sq = root.join("production/staging_queries/quickstart/checkouts.v1");
        edit_json(&sq, |config| config["startPartition"] = json!("2025-09-03"));
    };
    let (_a, incremental) = demo();
    assert_eq!(
        chronon_build(&incremental, &["run", "--until", "2025-09-05"]).code,
        0
    );
    later(&incremental);
    let plan = chronon_build(&incremental, &["plan", "--until", "2025-09-05"]);
    assert_contains(
        &plan.stdout,
        "to remove  quickstart.quickstart_checkouts_v1 ds=2025-09-01..2025-09-02 (2 partition(s)): before staging-query:quickstart.checkouts.v1's start 2025-09-03",
    );
    let json = chronon_build(
        &incremental,
        &["plan", "--until", "2025-09-05", "--format", "json"],
    );
    let report: Value = serde_json::from_str(&json.stdout).unwrap();
    crate::assert_valid(
        &crate::schema("plan.schema.json"),
        &report,
        "plan --format json",
    );
    assert_eq!(
        report["orphans"][0]["partitions"],
        json!(["2025-09-01", "2025-09-02"])
    );
    let dry = chronon_build(&incremental, &["run", "-n", "--until", "2025-09-05"]);
    assert_contains(
        &dry.stderr,
        "would remove 2 partition(s) of quickstart.quickstart_checkouts_v1",
    );
    let run = chronon_build(&incremental, &["run", "--until", "2025-09-05"]);
    assert_contains(
        &run.stderr,
        "removed 2 partition(s) of quickstart.quickstart_checkouts_v1",
    );
    let gone = chronon_build(
        &incremental,
        &[
            "warehouse",
            "show",
            "quickstart.quickstart_checkouts_v1",
            "--ds",
            "2025-09-01",
        ],
    );
    assert_contains(&gone.stderr, "no partition 2025-09-01");
    let again = chronon_build(&incremental, &["plan", "--until", "2025-09-05"]);
    assert!(!again.stdout.contains("to remove"), "{}", again.stdout);

    let (_b, clean) = demo();
    later(&clean);
    chronon_build(&clean, &["run", "--until", "2025-09-05"]);
    for (table, day) in [
        ("quickstart.quickstart_checkouts_v1", "2025-09-03"),
        ("quickstart.quickstart_training_set_v1", "2025-09-03"),
        ("quickstart.quickstart_training_set_v1", "2025-09-05"),
    ] {
        assert_eq!(
            crate::show_rows(&incremental, table, day),
            crate::show_rows(&clean, table, day),
            "{table} {day}"
        );
    }
}

/// `gc` on an external warehouse: the orphans go through
/// `warehouse.delete_command`, one call per partition, in the table's own
/// partition column and format; `--dry-run` only lists them.
#[test]
fn gc_removes_orphans_of_an_external_warehouse_through_the_delete_command() {
    let s = Scenario::copy("scenario");
    crate::scenario::seed_sources(&s, 10);
    for day in 1..=4 {
        s.write_partition(
            "risk_db.risk_merchants_v1",
            &format!("2025-01-0{day}"),
            "built",
        );
    }
    let calls = s.repo.join("deleted.log");
    let script = s.repo.join("delete.sh");
    std::fs::write(
        &script,
        format!(
            "echo \"$1 $2 $3\" >> '{}'\nns=${{1%%.*}}; t=${{1#*.}}\nrm -r \"warehouse/$ns.db/$t/$2=$3\"\n",
            calls.display()
        ),
    )
    .unwrap();
    let settings = std::fs::read_to_string(s.repo.join("chronon-build.toml")).unwrap();
    std::fs::write(
        s.repo.join("chronon-build.toml"),
        settings.replace(
            "[warehouse]\n",
            &format!(
                "[warehouse]\ndelete_command = [\"bash\", \"{}\", \"{{table}}\", \"{{partition_column}}\", \"{{partition}}\"]\n",
                script.display()
            ),
        ),
    )
    .unwrap();
    let adopt = s.run(&[
        "adopt",
        "--until",
        "2025-01-04",
        "--select",
        "risk.merchants.v1",
    ]);
    assert_eq!(adopt.code, 0, "{}", adopt.stderr);
    s.edit("compiled/staging_queries/risk/risk.merchants.v1", |sq| {
        sq["startPartition"] = json!("2025-01-03");
    });
    let dry = s.run(&["gc", "--until", "2025-01-04", "-n"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_contains(
        &dry.stdout,
        "would remove 2 partition(s) of risk_db.risk_merchants_v1",
    );
    assert!(!calls.exists());
    let gc = s.run(&["gc", "--until", "2025-01-04"]);
    assert_eq!(gc.code, 0, "{}", gc.stderr);
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap(),
        "risk_db.risk_merchants_v1 ds 2025-01-01\nrisk_db.risk_merchants_v1 ds 2025-01-02\n"
    );
    assert!(
        !s.partition_dir("risk_db.risk_merchants_v1", "2025-01-01")
            .exists()
    );
    assert!(
        s.partition_dir("risk_db.risk_merchants_v1", "2025-01-03")
            .exists()
    );
    let again = s.run(&["gc", "--until", "2025-01-04"]);
    assert_contains(&again.stdout, "nothing to remove");
}

/// The KV store holds one version of a dataset: uploading an earlier day
/// (`--until` moved back) replaces the later one, so moving `--until`
/// forward again must upload again (found by the soundness property test).
#[test]
fn moving_until_back_and_forth_leaves_the_kv_store_as_a_clean_build() {
    let mut gb = group_by("t.g");
    gb["metaData"]["online"] = json!(1);
    let (_dir, root) = repo(&[("g", text(&gb))], "");
    for until in ["2025-01-05", "2025-01-03", "2025-01-05"] {
        let run = chronon_build(&root, &["run", "--until", until]);
        assert_eq!(run.code, 0, "{until}: {}", run.stderr);
    }
    let (_clean_dir, clean) = repo(&[("g", text(&gb))], "");
    let run = chronon_build(&clean, &["run", "--until", "2025-01-05"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(kv_values(&root), kv_values(&clean));
}

/// An online group-by with a mutation topic on the local engine: its
/// streaming step cannot be emulated, so it is reported as skipped, with
/// why, and the run still exits 0 (it used to fail every run). An events
/// topic, which the engine does stream, is deployed in the same run.
#[test]
fn streaming_the_local_engine_cannot_emulate_is_skipped_with_a_note_not_failed() {
    let mut mutations = json!({
        "metaData": {"name": "t.m", "team": "t", "outputNamespace": "out", "online": 1},
        "sources": [{"entities": {"snapshotTable": "raw.events", "mutationTopic": "kafka://cdc",
            "query": {"selects": {"k": "k", "v": "v"}}}}],
        "keyColumns": ["k"],
        "aggregations": [{"inputColumn": "v", "operation": 7}]
    });
    mutations["accuracy"] = json!(1);
    let mut events = group_by("t.g");
    events["metaData"]["online"] = json!(1);
    events["sources"][0]["events"]["topic"] = json!("kafka://events");
    let (_dir, root) = repo(&[("m", text(&mutations)), ("g", text(&events))], "");
    let run = chronon_build(&root, &["run", "--until", "2025-01-03"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_contains(&run.stdout, "skipped");
    assert_contains(&run.stdout, "group-by-streaming:t.m");
    assert_contains(
        &run.stdout,
        "mutation topics (TEMPORAL entities) are not emulated",
    );
    assert_contains(&run.stdout, "ran     group-by-streaming:t.g");
    assert!(!run.stdout.contains("FAILED"), "{}", run.stdout);
    let json = chronon_build(&root, &["run", "--until", "2025-01-03", "--format", "json"]);
    assert_eq!(json.code, 0, "{}", json.stderr);
    assert_contains(&json.stdout, "\"outcome\": \"skipped\"");
}

/// A run with nothing stale asks no program which CLI it is: cron on a
/// machine without the CLI (or with it broken) still gets its no-op run.
#[test]
fn a_run_with_nothing_to_do_needs_no_cli() {
    let (_dir, root) = repo(&[("g", text(&group_by("t.g")))], "");
    let run = chronon_build(&root, &["run", "--until", "2025-01-03"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let settings = std::fs::read_to_string(root.join("chronon-build.toml")).unwrap();
    std::fs::write(
        root.join("chronon-build.toml"),
        format!("[executor]\nkind = \"zipline\"\nprogram = [\"no-such-cli\", \"run\"]\n{settings}"),
    )
    .unwrap();
    let again = chronon_build(&root, &["run", "--until", "2025-01-03"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_contains(&again.stdout, "built in 0 job(s)");
    // With work to do, the missing CLI is said.
    let more = chronon_build(&root, &["run", "--until", "2025-01-04"]);
    assert_error(&more, "cannot run `no-such-cli run --help`");
}
