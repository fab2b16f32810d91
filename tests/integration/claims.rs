//! Runs sharing one state: started together on overlapping selections,
//! they build each target once between them (per-target claims); a runner
//! killed with SIGKILL leaves no job behind, and its targets are built by
//! the others once its jobs are gone, never by two jobs at once.
//!
//! What the jobs did is read from their own journal: the fake CLI
//! (`FAKE_ZIPLINE_JOURNAL`) writes a line as each call starts (with its pid
//! and its runner's), "overlap" when an earlier call for the same target
//! and days still runs, and "done" when it exits 0.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::Output;
use crate::run::Pipeline;

const UNTIL: &str = "2025-01-10";

/// Overlapping selections: everything, a team's group-bys, a step, a join.
const SELECTIONS: [&[&str]; 4] = [
    &[],
    &["--select", "risk.purchases.v1"],
    &["--step", "group-by-backfill"],
    &["--select", "risk.checkout.v1"],
];

#[derive(Default, Debug)]
struct Journal {
    /// (target, pid, runner pid) per call started.
    starts: Vec<(String, u32, u32)>,
    /// Per target, the pids of the calls that exited 0.
    done: BTreeMap<String, Vec<u32>>,
    overlaps: Vec<String>,
}

fn journal(path: &Path) -> Journal {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut journal = Journal::default();
    for line in text.lines() {
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["start", target, from, to, pid, runner] => journal.starts.push((
                format!("{target} {from} {to}"),
                pid.parse().unwrap(),
                runner.parse().unwrap(),
            )),
            ["done", target, from, to, pid] => journal
                .done
                .entry(format!("{target} {from} {to}"))
                .or_default()
                .push(pid.parse().unwrap()),
            ["overlap", ..] => journal.overlaps.push(line.to_string()),
            _ => panic!("unexpected journal line {line:?}"),
        }
    }
    journal
}

fn start(p: &Pipeline, selection: &[&str], env: &[(&str, &str)]) -> Child {
    let mut args = vec!["run", "--until", UNTIL, "--progress", "plain"];
    args.extend(selection);
    p.command(&args, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child) -> Output {
    Output::from(child.wait_with_output().unwrap())
}

/// The targets one run alone builds for all the selections, on a fresh
/// copy of the scenario.
fn built_alone() -> BTreeSet<String> {
    let p = Pipeline::new("");
    let path = p.s.repo.join("journal");
    let env = [("FAKE_ZIPLINE_JOURNAL", path.to_str().unwrap())];
    for selection in SELECTIONS {
        let out = finish(start(&p, selection, &env));
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    journal(&path).done.into_keys().collect()
}

fn journal_env(path: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("FAKE_ZIPLINE_JOURNAL", path.display().to_string()),
        ("FAKE_ZIPLINE_SLEEP", "0.3".into()),
    ]
}

fn as_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// After the runs: a last run has nothing to do.
fn nothing_left(p: &Pipeline) {
    p.clear_calls();
    let out = p.run(&["run", "--until", UNTIL]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(p.calls().is_empty(), "a last run ran {:?}", p.calls());
}

#[test]
fn four_runs_started_together_build_each_target_once() {
    let alone = built_alone();
    let p = Pipeline::new("");
    let path: PathBuf = p.s.repo.join("journal");
    let env = journal_env(&path);
    let children: Vec<Child> = SELECTIONS
        .iter()
        .map(|selection| start(&p, selection, &as_refs(&env)))
        .collect();
    let outputs: Vec<Output> = children.into_iter().map(finish).collect();
    for out in &outputs {
        assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    }
    let journal = journal(&path);
    assert!(journal.overlaps.is_empty(), "{:?}", journal.overlaps);
    let twice: Vec<_> = journal.done.iter().filter(|(_, p)| p.len() > 1).collect();
    assert!(twice.is_empty(), "built more than once: {twice:?}");
    let built: BTreeSet<String> = journal.done.keys().cloned().collect();
    assert_eq!(built, alone, "the runs together built what one run builds");
    // (Whether the runs met depends on timing: with claims disabled, they
    // build targets twice and the assertions above fail.)
    nothing_left(&p);
}

#[test]
fn a_runner_killed_mid_run_leaves_no_job_behind_and_no_target_built_twice_at_once() {
    let p = Pipeline::new("\n[bounds]\nstop_grace = \"2s\"");
    let path: PathBuf = p.s.repo.join("journal");
    let env = journal_env(&path);
    // The run to be killed starts jobs that would run 20 s.
    let mut long = journal_env(&path);
    long[1].1 = "20".into();
    let mut children: Vec<Child> = SELECTIONS
        .iter()
        .enumerate()
        .map(|(i, selection)| start(&p, selection, &as_refs(if i == 0 { &long } else { &env })))
        .collect();
    // Kill the run of everything once two of its jobs are running.
    let victim = children[0].id();
    let deadline = Instant::now() + Duration::from_secs(60);
    while journal(&path)
        .starts
        .iter()
        .filter(|(_, _, runner)| *runner == victim)
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "the run started no job");
        std::thread::sleep(Duration::from_millis(20));
    }
    children[0].kill().unwrap();
    children.remove(0).wait().unwrap();
    // Its jobs are stopped by its watchdog, within the stop grace.
    let killed = Instant::now();
    let victims_jobs: Vec<(String, u32)> = journal(&path)
        .starts
        .into_iter()
        .filter(|s| s.2 == victim)
        .map(|(target, pid, _)| (target, pid))
        .collect();
    for (target, pid) in &victims_jobs {
        // SAFETY: kill with signal 0 only checks.
        while unsafe { libc::kill(*pid as i32, 0) } == 0 {
            assert!(
                killed.elapsed() < Duration::from_secs(4),
                "{target}: job {pid} of the killed run still runs"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for child in children {
        let out = finish(child);
        assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    }
    // What only the killed run selected is built by the next run.
    let out = p.run(&["run", "--until", UNTIL]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let journal = journal(&path);
    assert!(
        journal.overlaps.is_empty(),
        "{:?}\n{}",
        journal.overlaps,
        std::fs::read_to_string(&path).unwrap()
    );
    // Built once, but for a job the killed run's watchdog stopped after
    // it wrote its output and before it was recorded.
    let victims: BTreeSet<u32> = journal
        .starts
        .iter()
        .filter(|s| s.2 == victim)
        .map(|s| s.1)
        .collect();
    for (target, pids) in &journal.done {
        let by_others = pids.iter().filter(|p| !victims.contains(p)).count();
        assert!(by_others <= 1, "{target} built {by_others} times");
    }
    nothing_left(&p);
}

/// The runner's whole process group SIGKILLed (`kill -- -PGID`, as a
/// terminal's hang-up or systemd's stop reach a group) still stops its
/// jobs: the run's watchdog is in a session of its own. The jobs ignore
/// SIGTERM, so only the watchdog's SIGKILL after the grace ends them, and
/// it says so in the run's log folder.
#[test]
fn a_runners_whole_process_group_killed_still_stops_its_jobs() {
    use std::os::unix::process::CommandExt;
    let p = Pipeline::new("\n[bounds]\nstop_grace = \"1s\"");
    let marker = format!("67.{}", std::process::id());
    let sleeper = p.s.repo.join("sleeper.sh");
    std::fs::write(&sleeper, format!("trap '' TERM\nsleep {marker}\n")).unwrap();
    let mut child = p
        .command(
            &["run", "--until", UNTIL, "-j", "2", "--progress", "plain"],
            &[("FAKE_ZIPLINE_RUN_FIRST", sleeper.to_str().unwrap())],
        )
        // Its own group, so that killing the group spares the tests.
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sleeping = || {
        let out = std::process::Command::new("pgrep")
            .args(["-f", &format!("sleep {marker}")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while sleeping() < 2 {
        assert!(Instant::now() < deadline, "the run started no job");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: signalling the process group of a child we started in one.
    assert_eq!(
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) },
        0
    );
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while sleeping() > 0 || crate::run::jobs_left(&p.s.repo) > 0 {
        assert!(
            Instant::now() < deadline,
            "jobs outlived their runner's process group"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = p.s.repo.join(".chronon-build/logs/run-1/watchdog.log");
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("is gone: stopping its 2 job(s)"), "{log}");
    assert!(log.contains("SIGKILL to 2 job(s)"), "{log}");
}

/// A job its runner had no time to announce (killed between starting it
/// and telling the watchdog) is still stopped: the watchdog, its pipe
/// closed without `end`, stops every process group of a process whose
/// environment names its runner.
#[test]
fn the_watchdog_stops_a_job_it_was_never_told_of() {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let tag = format!("{}:{}", std::process::id(), line!());
    let mut job = std::process::Command::new("sleep")
        .arg(format!("68.{}", std::process::id()))
        .env("CHRONON_BUILD_RUNNER", &tag)
        .process_group(0)
        .spawn()
        .unwrap();
    let log = dir.path().join("watchdog.log");
    let mut watchdog = std::process::Command::new(env!("CARGO_BIN_EXE_chronon-build"))
        .args(["__watch-run", "1000", &tag, log.to_str().unwrap()])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    // Told of the job and told it ended, as if its pid were reused since:
    // only the environment still names it.
    let mut pipe = watchdog.stdin.take().unwrap();
    writeln!(pipe, "+{0}\n-{0}", job.id()).unwrap();
    drop(pipe);
    assert!(watchdog.wait().unwrap().success());
    // The job ends by the watchdog's SIGTERM, within the grace.
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(job.wait().unwrap().signal(), Some(libc::SIGTERM));
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("stopping its 1 job(s)"), "{log}");
}
