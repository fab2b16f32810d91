//! A user's own repository: errors that say where the tool looked, a
//! report sized to the data, and the CLI versions named right.

use super::{Output, assert_contains, chronon_build, copy_dir, testdata};

fn demo() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("demo");
    copy_dir(&testdata("demo"), &root);
    let _ = std::fs::remove_dir_all(root.join(".chronon-build"));
    (dir, root)
}

#[test]
fn report_shows_the_range_the_data_covers_by_default() {
    let (_dir, root) = demo();
    // The demo's configs start on 2025-09-01: 29 days to 2025-09-29, not a
    // year of empty columns.
    let out = chronon_build(&root, &["report", "--until", "2025-09-29", "--out", "-"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_contains(&out.stderr, "row(s) x 29 day(s)");
    // --days and --from still choose.
    let out = chronon_build(
        &root,
        &[
            "report",
            "--until",
            "2025-09-29",
            "--days",
            "60",
            "--out",
            "-",
        ],
    );
    assert_contains(&out.stderr, "row(s) x 60 day(s)");
    let out = chronon_build(
        &root,
        &[
            "report",
            "--until",
            "2025-09-29",
            "--from",
            "2025-09-20",
            "--out",
            "-",
        ],
    );
    assert_contains(&out.stderr, "row(s) x 10 day(s)");
}

fn refused(out: &Output) -> &str {
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    &out.stderr
}

#[test]
fn a_repo_without_configs_says_where_it_looked_and_what_it_found() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mono");
    // The configs sit in a subfolder, as in airbnb's samples.
    std::fs::create_dir_all(root.join("api/py/test/sample/production")).unwrap();
    std::fs::create_dir_all(root.join("features/compiled")).unwrap();
    let out = chronon_build(&root, &["plan"]);
    let said = refused(&out);
    for looked in [root.join("compiled"), root.join("production")] {
        assert_contains(said, &looked.display().to_string());
    }
    assert_contains(said, "neither is a folder");
    assert_contains(
        said,
        &format!("found {}", root.join("features/compiled").display()),
    );
    let missing = dir.path().join("nowhere");
    let out = chronon_build(&missing, &["status"]);
    assert_contains(
        refused(&out),
        &format!("--repo {}: does not exist", missing.display()),
    );
}

#[test]
fn the_zipline_cli_is_named_with_the_version_its_conf_became_positional() {
    let p = super::run::Pipeline::new("");
    let out = p.run_with(&["run", "-n", "--until", "2025-01-03"], &[]);
    assert_contains(&out.stderr, "zipline-ai >= 1.0.13: positional CONF");
}

#[test]
fn an_empty_config_folder_is_refused_with_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    // production/ is there, but its configs are not: an empty kind folder
    // and a team folder where kind folders belong.
    std::fs::create_dir_all(root.join("production/joins")).unwrap();
    std::fs::create_dir_all(root.join("production/quickstart")).unwrap();
    let folder = root.join("production").display().to_string();
    for args in [
        &["plan"][..],
        &["run", "--until", "2025-09-29"],
        &["run", "-n"],
        &["validate"],
    ] {
        let out = chronon_build(&root, args);
        let said = refused(&out);
        assert_contains(said, &format!("no configs in {folder}"));
        assert_contains(
            said,
            "expected compiled Chronon configs, production/{group_bys,joins,staging_queries}/TEAM/NAME",
        );
        assert_contains(said, "it holds only joins/, quickstart/");
    }
    assert!(
        !root.join(".chronon-build").exists(),
        "a refused run wrote its state"
    );
    let json = chronon_build(&root, &["validate", "--format", "json"]);
    assert_eq!(json.code, 2, "{}", json.stderr);
    assert_contains(&json.stdout, "\"ok\": false");
    assert_contains(&json.stdout, "no configs in");
    // What looks at the state, not at configs, still works: `gc --orphans`
    // cleans up after every config was removed.
    let gc = chronon_build(&root, &["gc", "-n", "--orphans"]);
    assert_eq!(gc.code, 0, "{}\n{}", gc.stdout, gc.stderr);

    // An empty compiled/ beside the demo's production/ hides it: said.
    let (_demo_dir, demo) = demo();
    std::fs::create_dir(demo.join("compiled")).unwrap();
    let out = chronon_build(&demo, &["plan", "--until", "2025-09-29"]);
    let said = refused(&out);
    assert_contains(
        said,
        &format!("no configs in {}", demo.join("compiled").display()),
    );
    assert_contains(said, "it is empty; production/ is there too");
    std::fs::remove_dir(demo.join("compiled")).unwrap();
    let out = chronon_build(&demo, &["plan", "--until", "2025-09-29"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}
