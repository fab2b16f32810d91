//! Summaries that never lie: the last line of a command says what its
//! exit code says, `run -n` exits as `plan` does, and a config with
//! nothing to build is not counted fresh.

use std::path::PathBuf;

use super::{Output, chronon_build, copy_dir, testdata};

fn demo() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("demo");
    copy_dir(&testdata("demo"), &root);
    let _ = std::fs::remove_dir_all(root.join(".chronon-build"));
    (dir, root)
}

fn last_line(out: &Output) -> &str {
    out.stdout.lines().last().unwrap_or_default()
}

#[test]
fn a_config_with_nothing_wanted_is_nothing_to_build_not_fresh() {
    let (_dir, root) = demo();
    // Before every start (2025-09-01): the staging query wants nothing and
    // nothing was built; the group-bys and the join want their uploads.
    let status = chronon_build(&root, &["status", "--until", "2025-08-15"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert_eq!(
        last_line(&status),
        "0 of 4 config(s) fresh up to 2025-08-15, 1 with nothing to build; 0 failed partition(s)",
        "{}",
        status.stdout
    );
    let only = chronon_build(
        &root,
        &[
            "status",
            "--until",
            "2025-08-15",
            "--select",
            "quickstart.checkouts.v1",
        ],
    );
    assert_eq!(
        last_line(&only),
        "0 of 0 config(s) fresh up to 2025-08-15, 1 with nothing to build; 0 failed partition(s)"
    );
}

#[test]
fn blocked_work_exits_3_in_plan_run_n_and_run_and_their_last_lines_say_so() {
    let (_dir, root) = demo();
    // The staging query starts at 2025-09-10 while the join reads it from
    // 2025-09-01: the join's days before it are blocked.
    let sq = root.join("production/staging_queries/quickstart/checkouts.v1");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&sq).unwrap()).unwrap();
    config["startPartition"] = "2025-09-10".into();
    std::fs::write(&sq, config.to_string()).unwrap();
    let until = ["--until", "2025-09-12"];
    let plan = chronon_build(&root, &[&["plan"][..], &until].concat());
    let dry = chronon_build(&root, &[&["run", "-n"][..], &until].concat());
    let run = chronon_build(&root, &[&["run"][..], &until].concat());
    for (what, out) in [("plan", &plan), ("run -n", &dry), ("run", &run)] {
        assert_eq!(out.code, 3, "{what}:\n{}\n{}", out.stdout, out.stderr);
        assert!(
            last_line(out).contains(" blocked"),
            "{what}: {}",
            out.stdout
        );
        assert!(!last_line(out).starts_with("ok"), "{what}: {}", out.stdout);
    }
    assert!(
        last_line(&dry).starts_with("blocked: dry run:"),
        "{}",
        dry.stdout
    );
    assert!(last_line(&run).starts_with("blocked: "), "{}", run.stdout);
    // --exit-code does not hide blocked work behind 4.
    let plan = chronon_build(&root, &[&["plan", "--exit-code"][..], &until].concat());
    assert_eq!(plan.code, 3, "{}", plan.stdout);
}

#[test]
fn a_run_that_exits_1_never_ends_with_ok() {
    let (_dir, root) = demo();
    std::fs::write(
        root.join("production/group_bys/quickstart/broken.v1"),
        "{\"metaData\": {\"name\": \"quickstart.broken.v1\"}, \"sources\": 3}",
    )
    .unwrap();
    let until = [
        "--until",
        "2025-09-05",
        "--select",
        "quickstart.purchases.v1",
    ];
    for command in [&["run"][..], &["run", "-n"], &["plan"], &["run"]] {
        let out = chronon_build(&root, &[command, &until[..]].concat());
        assert_eq!(out.code, 1, "{command:?}:\n{}\n{}", out.stdout, out.stderr);
        let last = last_line(&out);
        assert!(!last.starts_with("ok"), "{command:?}: {}", out.stdout);
        assert!(
            last.contains("1 invalid config(s) left out"),
            "{command:?}: {}",
            out.stdout
        );
    }
    let json = chronon_build(&root, &[&["run", "--format", "json"][..], &until].concat());
    assert_eq!(json.code, 1);
    let summary: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(summary["outcome"], "failed", "{summary}");
    assert_eq!(summary["invalid_configs"], 1, "{summary}");
}
