//! The command line itself: one name per concept, help everywhere, and the
//! documentation generated from it.

use crate::scenario::seed_sources;
use crate::{Scenario, assert_contains, chronon_build, copy_dir, testdata};

#[test]
fn help_completions_and_man_pages_come_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    let help = chronon_build(repo, &["help", "--help"]);
    assert_eq!(help.code, 0, "{}", help.stderr);
    assert_contains(&help.stdout, "Usage: chronon-build help");
    let sub = chronon_build(repo, &["help", "warehouse", "show"]);
    assert_eq!(sub.code, 0, "{}", sub.stderr);
    assert_contains(&sub.stdout, "Usage: chronon-build warehouse show");
    assert_eq!(chronon_build(repo, &["help", "nope"]).code, 2);
    let top = chronon_build(repo, &["--help"]);
    assert_contains(&top.stdout, "status with --exit-code");

    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = chronon_build(repo, &["completions", shell]);
        assert_eq!(out.code, 0, "{shell}: {}", out.stderr);
        assert_contains(&out.stdout, "chronon-build");
        assert_contains(&out.stdout, "until");
    }
    let man = chronon_build(repo, &["man"]);
    assert_eq!(man.code, 0, "{}", man.stderr);
    assert!(
        man.stdout.starts_with(".ie"),
        "{}",
        &man.stdout[..80.min(man.stdout.len())]
    );
    assert_contains(&man.stdout, ".TH chronon-build 1");
    let pages = repo.join("man");
    let out = chronon_build(repo, &["man", "--out", pages.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for page in [
        "chronon-build.1",
        "chronon-build-run.1",
        "chronon-build-warehouse-show.1",
    ] {
        assert!(pages.join(page).is_file(), "{page}");
    }
}

/// Dates are `--from`/`--until` on every command; the old names still work,
/// unlisted. `-n` is `--dry-run`; `-` is standard output for output files.
#[test]
fn one_name_per_concept_and_dash_for_standard_output() {
    let s = Scenario::copy("scenario");
    seed_sources(&s, 10);
    for (args, old) in [
        (vec!["history", "--help"], "--since"),
        (vec!["invalidate", "--help"], "--to "),
        (vec!["compute", "--help"], "--start-ds"),
    ] {
        let out = s.run(&args);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_contains(&out.stdout, "--from");
        assert!(!out.stdout.contains(old), "{old} listed:\n{}", out.stdout);
    }
    let out = s.run(&[
        "invalidate",
        "risk.purchases.v1",
        "--from",
        "2025-01-05",
        "--until",
        "2025-01-06",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let old = s.run(&[
        "invalidate",
        "risk.purchases.v1",
        "--from",
        "2025-01-05",
        "--to",
        "2025-01-06",
    ]);
    assert_eq!(old.code, 0, "{}", old.stderr);
    let out = s.run(&["history", "--from", "2025-01-01"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = s.run(&["history", "--since", "2025-01-01"]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    // On the demo (local engine).
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    copy_dir(&testdata("demo"), &demo);
    let _ = std::fs::remove_dir_all(demo.join(".chronon-build"));
    let dry = chronon_build(&demo, &["run", "-n", "--until", "2025-09-02"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_contains(&dry.stdout, "compute");
    assert!(
        !demo.join(".chronon-build/state.db").exists(),
        "a dry run wrote state"
    );

    let small = [
        "run",
        "--until",
        "2025-09-02",
        "--select",
        "quickstart.users.v1",
        "--step",
        "group-by-backfill",
        "--metrics-file",
        "-",
    ];
    let run = chronon_build(&demo, &small);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_contains(&run.stdout, "# TYPE chronon_build_");
    assert!(!demo.join("-").exists());

    let report = chronon_build(&demo, &["report", "--until", "2025-09-02", "--out", "-"]);
    assert_eq!(report.code, 0, "{}", report.stderr);
    assert!(
        report.stdout.starts_with("<!DOCTYPE html>"),
        "{}",
        &report.stdout[..60.min(report.stdout.len())]
    );
    assert!(!demo.join("-").exists());
}
