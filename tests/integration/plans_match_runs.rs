//! A plan is what the run does: `plan --format json`, `run -n --format
//! json` and `run` list the same targets for the same selection, upstream
//! work pulled in included, and `plan` and `run -n` write nothing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chronon_build::testing::{Day, DayRange};
use serde_json::Value;

use super::{Output, assert_contains, chronon_build, copy_dir, testdata};

/// One target: its label, its day (`-` when unpartitioned), and whether it
/// is there only as upstream of the selection.
type Target = (String, String, bool);

fn days(from: Option<&str>, to: Option<&str>) -> Vec<String> {
    match (from.and_then(Day::parse), to.and_then(Day::parse)) {
        (Some(a), Some(b)) => DayRange::new(a, b).days().map(|d| d.to_string()).collect(),
        _ => vec!["-".to_string()],
    }
}

fn json(out: &Output, what: &str) -> Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{what}: {e}\n{}\n{}", out.stdout, out.stderr))
}

/// The plan's targets that are not fresh.
fn planned(out: &Output) -> BTreeSet<Target> {
    let mut set = BTreeSet::new();
    for g in json(out, "plan")["groups"].as_array().unwrap() {
        if g["status"] == "fresh" {
            continue;
        }
        let pulled = g["pulled_in"].as_bool().expect("pulled_in in every group");
        for day in days(g["from"].as_str(), g["to"].as_str()) {
            set.insert((g["target"].as_str().unwrap().to_string(), day, pulled));
        }
    }
    set
}

/// `label@from..to`, `label@day` or `label`.
fn split_target(text: &str) -> (String, Vec<String>) {
    match text.split_once('@') {
        Some((label, range)) => {
            let (from, to) = range.split_once("..").unwrap_or((range, range));
            (label.to_string(), days(Some(from), Some(to)))
        }
        None => (text.to_string(), days(None, None)),
    }
}

/// A JSON command's target label: `STEP:CONFIG`, `#PART` for a join part.
fn command_label(c: &Value) -> String {
    let (step, config) = (c["step"].as_str().unwrap(), c["config"].as_str().unwrap());
    match c["part"].as_str() {
        Some(part) => format!("{step}:{config}#{part}"),
        None => format!("{step}:{config}"),
    }
}

/// What a run summary (`run` or `run -n`, JSON) says it ran, would run or
/// left, without the pulled-in mark (checked apart).
fn ran(summary: &Value) -> BTreeSet<(String, String)> {
    let mut set = BTreeSet::new();
    for c in summary["commands"].as_array().into_iter().flatten() {
        let label = command_label(c);
        for day in days(c["start_ds"].as_str(), c["end_ds"].as_str()) {
            set.insert((label.clone(), day));
        }
    }
    for job in summary["ran"].as_array().into_iter().flatten() {
        let (label, days) = split_target(job["target"].as_str().unwrap());
        set.extend(days.into_iter().map(|d| (label.clone(), d)));
    }
    for job in summary["failed"].as_array().into_iter().flatten() {
        let (label, days) = split_target(job["target"].as_str().unwrap());
        set.extend(days.into_iter().map(|d| (label.clone(), d)));
    }
    for left in summary["left"].as_array().into_iter().flatten() {
        for day in days(left["from"].as_str(), left["to"].as_str()) {
            set.insert((left["target"].as_str().unwrap().to_string(), day));
        }
    }
    set
}

/// Every file under `dir`, with its size and modification time; SQLite's
/// shared-memory index (`-shm`), which readers of a WAL database map, is
/// left out.
fn files(dir: &Path) -> BTreeSet<(PathBuf, u64, std::time::SystemTime)> {
    let mut out = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            out.extend(files(&entry.path()));
        } else if !entry.path().to_string_lossy().ends_with("-shm") {
            out.insert((entry.path(), meta.len(), meta.modified().unwrap()));
        }
    }
    out
}

#[test]
fn plan_run_n_and_run_list_the_same_targets_for_five_selections() {
    let dir = tempfile::tempdir().unwrap();
    // The demo built up to 2025-09-20, then asked about 2025-09-29: every
    // node has fresh days and stale ones, so what a selection pulls in
    // from upstream is a real choice.
    let built = demo(dir.path(), "built", Some("2025-09-20"));
    // A seed file changed since: `run` imports it, `plan` and `run -n` read
    // it in place.
    let users = built.join("data/users.csv");
    let text = std::fs::read_to_string(&users).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.pop();
    std::fs::write(&users, lines.join("\n") + "\n").unwrap();

    // The text plan marks what is pulled in.
    let text = chronon_build(
        &built,
        &[
            "plan",
            "--until",
            "2025-09-29",
            "--select",
            "quickstart.training_set.v1",
        ],
    );
    assert!(
        text.stdout
            .lines()
            .any(|l| l.contains("quickstart.checkouts.v1") && l.contains("pulled in")),
        "{}",
        text.stdout
    );

    let selections: [(&str, &[&str]); 5] = [
        ("a join", &["--select", "quickstart.training_set.v1"]),
        ("a group-by", &["--select", "quickstart.purchases.v1"]),
        ("a staging query", &["--select", "quickstart.checkouts.v1"]),
        ("a team", &["--select", "quickstart.*"]),
        ("a step filter", &["--step", "join-final"]),
    ];
    for (i, (what, selection)) in selections.iter().enumerate() {
        let repo = dir.path().join(format!("repo-{i}"));
        copy_dir(&built, &repo);
        let args = |command: &[&str]| -> Vec<String> {
            command
                .iter()
                .chain(["--until", "2025-09-29", "--format", "json"].iter())
                .chain(selection.iter())
                .map(|s| s.to_string())
                .collect()
        };
        let state = repo.join(".chronon-build");
        let before = files(&state);
        let plan_args = args(&["plan"]);
        let plan = chronon_build(
            &repo,
            &plan_args.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        assert_eq!(plan.code, 0, "{what}: plan: {}", plan.stderr);
        let dry_args = args(&["run", "-n"]);
        let dry = chronon_build(
            &repo,
            &dry_args.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        assert_eq!(dry.code, 0, "{what}: run -n: {}", dry.stderr);
        assert_eq!(
            before,
            files(&state),
            "{what}: plan and run -n write nothing"
        );

        let run_args = args(&["run"]);
        let run = chronon_build(
            &repo,
            &run_args.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        assert_eq!(run.code, 0, "{what}: run: {}\n{}", run.stdout, run.stderr);

        let plan_targets = planned(&plan);
        assert!(!plan_targets.is_empty(), "{what}: the plan has work");
        let plan_plain: BTreeSet<(String, String)> = plan_targets
            .iter()
            .map(|(t, d, _)| (t.clone(), d.clone()))
            .collect();
        let dry_json = json(&dry, "run -n");
        let run_json = json(&run, "run");
        assert_eq!(plan_plain, ran(&dry_json), "{what}: plan and run -n");
        assert_eq!(plan_plain, ran(&run_json), "{what}: plan and run");

        // Pulled in: the same nodes in the plan and the dry run, and never
        // a node the selection names.
        let pulled = |set: &BTreeSet<Target>| -> BTreeSet<String> {
            set.iter().filter(|t| t.2).map(|t| t.0.clone()).collect()
        };
        let dry_pulled: BTreeSet<String> = dry_json["commands"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["pulled_in"].as_bool().unwrap())
            .map(command_label)
            .collect();
        assert_eq!(pulled(&plan_targets), dry_pulled, "{what}: pulled in");
        // The run's jobs say so too.
        let run_pulled: BTreeSet<String> = run_json["ran"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["pulled_in"].as_bool().expect("pulled_in in every job"))
            .map(|j| split_target(j["target"].as_str().unwrap()).0)
            .collect();
        assert_eq!(dry_pulled, run_pulled, "{what}: run's pulled in");
        match i {
            // The join reads the staging query's output: pulled in.
            0 => assert!(
                dry_pulled.contains("staging-query:quickstart.checkouts.v1"),
                "{what}: {dry_pulled:?}"
            ),
            // The step filter keeps join-final; its upstream is pulled in.
            4 => {
                assert!(
                    dry_pulled.contains("join-left:quickstart.training_set.v1"),
                    "{dry_pulled:?}"
                );
                assert!(
                    plan_targets
                        .iter()
                        .any(|t| t.0 == "join-final:quickstart.training_set.v1" && !t.2)
                );
            }
            _ => {}
        }
    }
}

#[test]
fn plan_on_a_fresh_demo_lists_the_seeded_work_and_imports_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let repo = demo(dir.path(), "demo", None);
    let plan = chronon_build(&repo, &["plan", "--until", "2025-09-29"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(!plan.stdout.contains("blocked:"), "{}", plan.stdout);
    assert!(plan.stderr.contains("read in place"), "{}", plan.stderr);
    assert!(
        !repo.join(".chronon-build").exists(),
        "plan wrote {:?}",
        files(&repo.join(".chronon-build"))
    );
}

/// `run` marks the jobs pulled in from the selection's upstream as `plan`
/// marks their targets: on the job's start and end lines, in the summary's
/// lines, and with their count on the last line; `run -n` marks their
/// commands.
#[test]
fn run_text_marks_the_jobs_pulled_in() {
    const MARK: &str = "(pulled in: upstream of the selection)";
    let dir = tempfile::tempdir().unwrap();
    let repo = demo(dir.path(), "demo", Some("2025-09-20"));
    let select = [
        "--until",
        "2025-09-29",
        "--select",
        "quickstart.training_set.v1",
    ];
    // The staging query is pulled in; the join's own steps are selected.
    let marked = |text: &str, line_start: &str| -> (bool, bool) {
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(line_start)).collect();
        let staging = lines
            .iter()
            .filter(|l| l.contains("quickstart.checkouts.v1"))
            .all(|l| l.ends_with(MARK));
        let join = lines
            .iter()
            .filter(|l| l.contains("join-left:quickstart.training_set.v1"))
            .all(|l| !l.contains(MARK));
        assert!(
            lines.iter().any(|l| l.contains("quickstart.checkouts.v1")),
            "no {line_start} line of the staging query:\n{text}"
        );
        (staging, join)
    };

    let dry = chronon_build(&repo, &[&["run", "-n"][..], &select].concat());
    assert_eq!(dry.code, 0, "{}\n{}", dry.stdout, dry.stderr);
    assert!(
        dry.stdout
            .lines()
            .any(|l| l.contains("staging_queries/quickstart/checkouts.v1") && l.ends_with(MARK)),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout
            .lines()
            .filter(|l| l.contains("production/joins/"))
            .all(|l| !l.contains(MARK)),
        "{}",
        dry.stdout
    );
    assert_contains(
        &dry.stdout,
        &format!("dry run: 6 command(s) (1 {}", &MARK[1..]),
    );

    let run = chronon_build(
        &repo,
        &[&["run", "-v", "--progress", "plain"][..], &select].concat(),
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(marked(&run.stdout, "ran "), (true, true), "{}", run.stdout);
    assert_eq!(
        marked(&run.stderr, " start "),
        (true, true),
        "{}",
        run.stderr
    );
    assert_eq!(
        marked(&run.stderr, " done "),
        (true, true),
        "{}",
        run.stderr
    );
    assert_contains(
        &run.stdout,
        &format!("built in 6 job(s) (1 {}, ", &MARK[1..]),
    );

    // Nothing selected: nothing is pulled in, and nothing says it is.
    let all = chronon_build(&repo, &["run", "--until", "2025-09-30"]);
    assert_eq!(all.code, 0, "{}\n{}", all.stdout, all.stderr);
    assert!(!all.stdout.contains("pulled in"), "{}", all.stdout);
}

/// Waiting targets name the upstream target they wait on, `LABEL@DAY`: one
/// range per node (`LABEL@FIRST..LAST`), in JSON with the range's last,
/// and one line per upstream node when the ranges are many.
#[test]
fn waiting_targets_name_their_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let repo = demo(dir.path(), "demo", Some("2025-09-20"));
    let staging = "staging-query:quickstart.checkouts.v1";
    let force = |from: &str, to: &str| {
        let out = chronon_build(
            &repo,
            &["invalidate", staging, "--from", from, "--until", to],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
    };
    force("2025-09-10", "2025-09-12");
    let text = chronon_build(&repo, &["plan", "--until", "2025-09-20"]);
    assert_contains(
        &text.stdout,
        &format!("2025-09-10..2025-09-12 (3)  waiting: {staging}@2025-09-10..2025-09-12\n"),
    );
    let plan = chronon_build(
        &repo,
        &["plan", "--until", "2025-09-20", "--format", "json"],
    );
    let groups = json(&plan, "plan")["groups"].as_array().unwrap().clone();
    let left = groups
        .iter()
        .find(|g| g["target"] == "join-left:quickstart.training_set.v1" && g["status"] == "waiting")
        .unwrap_or_else(|| panic!("{groups:?}"));
    assert_eq!(left["upstream"], format!("{staging}@2025-09-10"));
    assert_eq!(left["last"]["upstream"], format!("{staging}@2025-09-12"));

    // Single days apart: more waiting ranges than lines listed, so one
    // line per upstream node, with the days waited on.
    for day in ["2025-09-14", "2025-09-16", "2025-09-18", "2025-09-20"] {
        force(day, day);
    }
    let text = chronon_build(&repo, &["plan", "--until", "2025-09-20"]);
    assert_contains(
        &text.stdout,
        &format!("waiting: 7 partition(s) of 1 config(s); on {staging} 2025-09-10..2025-09-20\n"),
    );
    assert_contains(
        &text.stdout,
        "; on join-left:quickstart.training_set.v1 2025-09-10..2025-09-20\n",
    );
}

/// A copy of the demo named `name` under `dir`, nothing recorded, then
/// built up to `until` when given.
fn demo(dir: &Path, name: &str, until: Option<&str>) -> PathBuf {
    let repo = dir.join(name);
    copy_dir(&testdata("demo"), &repo);
    let _ = std::fs::remove_dir_all(repo.join(".chronon-build"));
    if let Some(until) = until {
        let first = chronon_build(&repo, &["run", "--until", until]);
        assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    }
    repo
}
