//! Output that stays readable at scale: blocked and waiting targets one
//! line per cause, notes on standard error, lines at most 100 columns
//! outside a terminal, one line per job, `-v` for every line, `-q` for
//! errors only, `--format json` complete.

use std::path::PathBuf;

use std::path::Path;

use crate::{Output, copy_dir, testdata};

/// The binary as a user's shell runs it outside a terminal: no `COLUMNS`.
fn chronon_build(repo: &Path, args: &[&str]) -> Output {
    let out = crate::command(repo)
        .env_remove("COLUMNS")
        .args(args)
        .output()
        .unwrap();
    Output::from(out)
}

/// The real compiled samples with no settings: an empty embedded warehouse
/// and the local engine, as a new user meets them.
fn corpus() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    copy_dir(&testdata("corpus/airbnb-chronon-samples"), &repo);
    (dir, repo)
}

fn lines(out: &Output) -> Vec<&str> {
    out.stdout.lines().chain(out.stderr.lines()).collect()
}

fn assert_readable(out: &Output, what: &str) {
    let all = lines(out);
    assert!(
        all.len() <= 50,
        "{what}: {} lines\n{}\n{}",
        all.len(),
        out.stdout,
        out.stderr
    );
    for line in &all {
        assert!(
            line.chars().count() <= 100,
            "{what}: a line of {} columns: {line}",
            line.chars().count()
        );
    }
}

#[test]
fn the_corpus_with_an_empty_warehouse_plans_and_runs_in_at_most_50_lines() {
    let (_dir, repo) = corpus();
    let plan = chronon_build(&repo, &["plan", "--until", "2025-09-29"]);
    // Blocked work: a plan exits as its run would (3).
    assert_eq!(plan.code, 3, "{}", plan.stderr);
    assert_readable(&plan, "plan");
    // Notes on standard error, in plan as in run.
    assert!(!plan.stdout.contains("note:"), "{}", plan.stdout);
    crate::assert_contains(&plan.stderr, "note: ");
    // One line per cause, with how many partitions of how many configs
    // and the days missing.
    crate::assert_contains(
        &plan.stdout,
        "blocked: 96,462 partition(s) of 22 config(s); missing sample_namespace.sample_table_group_by\n    2021-04-09..2025-09-29",
    );
    crate::assert_contains(&plan.stdout, "155046 targets up to 2025-09-29");

    // -v lists every range of every node; JSON has them all, whatever -v says.
    let every = chronon_build(&repo, &["plan", "--until", "2025-09-29", "-v"]);
    assert!(lines(&every).len() > 100, "{}", every.stdout);
    let json = chronon_build(
        &repo,
        &["plan", "--until", "2025-09-29", "--format", "json"],
    );
    let groups = crate::plan_groups(&json);
    let blocked: u64 = groups
        .iter()
        .filter(|g| g["status"] == "blocked")
        .map(|g| g["count"].as_u64().unwrap())
        .sum();
    assert_eq!(blocked, 155_028);

    // -q: errors only.
    let quiet = chronon_build(&repo, &["plan", "--until", "2025-09-29", "-q"]);
    assert_eq!(
        (quiet.code, quiet.stdout.as_str(), quiet.stderr.as_str()),
        (3, "", "")
    );

    let run = chronon_build(&repo, &["run", "--until", "2025-09-29"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_readable(&run, "run");
    // Outside a terminal, one line per job.
    let job = "metadata-upload:sample_team.event_sample_group_by.v1";
    assert_eq!(
        lines(&run).iter().filter(|l| l.contains(job)).count(),
        1,
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    crate::assert_contains(
        &run.stdout,
        "blocked: 48,911 partition(s) of 10 config(s); missing sample_namespace.sample_table\n",
    );
    let json = chronon_build(&repo, &["run", "--until", "2025-09-29", "--format", "json"]);
    let summary: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let left: u64 = summary["left"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["outcome"] == "blocked")
        .map(|l| l["count"].as_u64().unwrap())
        .sum();
    assert_eq!(left, 155_028);
    let verbose = chronon_build(&repo, &["run", "--until", "2025-09-29", "-v"]);
    assert!(lines(&verbose).len() > 100, "{}", verbose.stdout);
}

/// `run -n` lists what would be left as `run` does: one line per cause.
#[test]
fn a_dry_run_lists_blocked_work_per_cause_as_a_run_does() {
    let (_dir, repo) = corpus();
    let dry = chronon_build(&repo, &["run", "-n", "--until", "2025-09-29"]);
    assert_eq!(dry.code, 3, "{}", dry.stderr);
    // The commands, each wrapped to 100 columns, then what is left: as
    // few lines as `run` gives it.
    let run = chronon_build(&repo, &["run", "--until", "2025-09-29"]);
    let left = |out: &Output| -> Vec<String> {
        let mut left: Vec<String> = out
            .stdout
            .lines()
            .filter(|l| l.starts_with("blocked: ") || l.starts_with("waiting: "))
            .map(str::to_string)
            .collect();
        // The last is the summary, which starts with its outcome.
        left.pop();
        left
    };
    assert!(!left(&run).is_empty(), "{}", run.stdout);
    assert_eq!(left(&dry), left(&run), "{}", dry.stdout);
    assert!(lines(&dry).iter().all(|l| l.chars().count() <= 100));
    crate::assert_contains(
        &dry.stdout,
        "blocked: 48,911 partition(s) of 10 config(s); missing sample_namespace.sample_table\n",
    );
}

/// An error is wrapped to 100 columns outside a terminal, as every other
/// line is.
#[test]
fn an_error_is_wrapped_as_every_other_line() {
    let (_dir, repo) = corpus();
    std::fs::write(
        repo.join("chronon-build.toml"),
        "[executor]\nkind = \"zipline\"\n",
    )
    .unwrap();
    // No `zipline` to ask which CLI it is: a long error.
    let out = crate::command(&repo)
        .env_remove("COLUMNS")
        .env("PATH", "/nonexistent")
        .args(["run", "-n", "--until", "2025-09-29"])
        .output()
        .unwrap();
    let out = Output::from(out);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let said = out.stderr.replace("\n    ", " ");
    crate::assert_contains(
        &said,
        "error: executor.cli = \"auto\": cannot run `zipline run --help`",
    );
    assert_readable(&out, "the error");
}
