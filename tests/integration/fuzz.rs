//! The fuzz harness: proptest-generated mutations of the real corpus and of
//! settings files, each run through the binary with a deadline. Whatever
//! the input, the tool answers with an exit code it documents (0 to 4),
//! never a panic (101) or a signal, and never hangs.
//!
//! CI runs a quick size; by hand, a long run:
//!
//!     CHRONON_BUILD_FUZZ_CASES=5000 cargo test --release --test integration fuzz -- --nocapture
//!
//! which prints how many inputs ran, crashed and hung.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

use crate::{copy_dir, testdata};

/// How long one command may take before it counts as a hang.
const DEADLINE: Duration = Duration::from_secs(60);

fn cases() -> u32 {
    std::env::var("CHRONON_BUILD_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(24)
}

/// A runner of `cases()` cases that leaves no regression files behind.
fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    })
}

/// Prints how many inputs ran and whether any crashed or hung, then
/// fails on the runner's error, which names the input.
fn report<E: std::fmt::Debug>(
    what: &str,
    started: Instant,
    runs: &std::sync::atomic::AtomicU64,
    result: Result<(), E>,
) {
    eprintln!(
        "fuzz {what}: {} case(s), {} command run(s) in {:.0?}, crashes and hangs: {}",
        cases(),
        runs.load(std::sync::atomic::Ordering::Relaxed),
        started.elapsed(),
        if result.is_ok() { "0" } else { "see below" }
    );
    result.unwrap();
}

/// Runs the binary on `repo`; an error naming the input on a panic, a
/// signal, an undocumented exit code, or a run past the deadline.
fn check(repo: &Path, args: &[&str], input: &str) -> Result<(), String> {
    // Standard error goes to a file: a pipe nobody reads until the end
    // would fill (a 70,000-character value in a message) and stall the
    // child, which is the harness hanging, not the tool.
    let err_path = repo.with_extension("stderr");
    let err_file = std::fs::File::create(&err_path).map_err(|e| e.to_string())?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_chronon-build"))
        .env("COLUMNS", "100000")
        .arg("--repo")
        .arg(repo)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::from(err_file))
        .spawn()
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
            return match status.code() {
                Some(0..=4) if !stderr.contains("panicked") => Ok(()),
                code => Err(format!(
                    "{args:?} on {input}: exit {code:?}\n{}",
                    stderr.chars().take(2000).collect::<String>()
                )),
            };
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{args:?} on {input}: HANG (over {DEADLINE:?})"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every JSON pointer in a value.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                pointers(
                    v,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                pointers(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// Values that have broken things, and random ones.
fn hostile_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(i64::MIN)),
        Just(json!(u64::MAX)),
        Just(json!(1e308)),
        Just(json!("")),
        Just(json!("0001-01-01")),
        Just(json!("9999-12-31")),
        Just(json!("2025-02-30")),
        Just(json!("x".repeat(70_000))),
        Just(json!([])),
        Just(json!({})),
        Just(json!([{"a": 1}])),
        any::<i64>().prop_map(|n| json!(n)),
        any::<bool>().prop_map(|b| json!(b)),
        "\\PC{0,24}".prop_map(|s| json!(s)),
    ]
}

#[derive(Clone, Debug)]
enum Mutation {
    Replace(Value),
    Remove,
    /// Cut the file's text: malformed JSON.
    Truncate,
    /// Write the file with one key twice.
    DuplicateKey,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        6 => hostile_value().prop_map(Mutation::Replace),
        2 => Just(Mutation::Remove),
        1 => Just(Mutation::Truncate),
        1 => Just(Mutation::DuplicateKey),
    ]
}

/// Applies a mutation to one file of a copy of the repository; returns what
/// was done, for the failure message.
fn mutate(file: &Path, pick: usize, change: &Mutation) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let mut value: Value = serde_json::from_str(&text).unwrap();
    let mut all = Vec::new();
    pointers(&value, String::new(), &mut all);
    let at = all[pick % all.len()].clone();
    let done = format!("{} {at} {change:?}", file.display())
        .chars()
        .take(300)
        .collect();
    let written = match change {
        Mutation::Replace(new) => {
            if at.is_empty() {
                value = new.clone();
            } else if let Some(slot) = value.pointer_mut(&at) {
                *slot = new.clone();
            }
            serde_json::to_string_pretty(&value).unwrap()
        }
        Mutation::Remove => {
            if let Some((parent, key)) = at.rsplit_once('/') {
                match value.pointer_mut(parent) {
                    Some(Value::Object(map)) => {
                        map.remove(&key.replace("~1", "/").replace("~0", "~"));
                    }
                    Some(Value::Array(items)) => {
                        if let Ok(i) = key.parse::<usize>()
                            && i < items.len()
                        {
                            items.remove(i);
                        }
                    }
                    _ => {}
                }
            }
            serde_json::to_string_pretty(&value).unwrap()
        }
        Mutation::Truncate => text.chars().take(pick % text.len().max(1)).collect(),
        Mutation::DuplicateKey => {
            text.replacen("\"metaData\"", "\"metaData\": {},\n\"metaData\"", 1)
        }
    };
    std::fs::write(file, written).unwrap();
    done
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Mutated copies of the airbnb corpus: validate, plan (text and JSON) and
/// a dry run always answer with a documented exit code, in time.
#[test]
fn fuzz_mutated_corpus_configs_never_crash_or_hang() {
    let corpus = testdata("corpus/airbnb-chronon-samples");
    let mut files = Vec::new();
    files_under(&corpus.join("production"), &mut files);
    let mut runner = runner();
    let started = Instant::now();
    let runs = std::sync::atomic::AtomicU64::new(0);
    let result = runner.run(
        &(any::<usize>(), any::<usize>(), mutation()),
        |(which, pick, change)| {
            let dir = tempfile::tempdir().unwrap();
            let repo = dir.path().join("repo");
            copy_dir(&corpus, &repo);
            let file = files[which % files.len()].strip_prefix(&corpus).unwrap();
            let input = mutate(&repo.join(file), pick, &change);
            for args in [
                &["validate"][..],
                &["plan", "--until", "2023-12-01"],
                &["plan", "--until", "2023-12-01", "--format", "json"],
                &["run", "-n", "--until", "2023-12-01"],
            ] {
                let n = runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                check(&repo, args, &input).map_err(TestCaseError::fail)?;
                if n.is_multiple_of(400) {
                    eprintln!(
                        "fuzz corpus: {n} command run(s) in {:.0?}, 0 crashes, 0 hangs so far",
                        started.elapsed()
                    );
                }
            }
            Ok(())
        },
    );
    report("corpus", started, &runs, result);
}

/// Settings keys and the values that broke them, and random ones.
fn settings_line() -> impl Strategy<Value = String> {
    let keys = prop_oneof![
        Just("[limits]\njobs"),
        Just("[limits.steps]\ngroup-by-backfill"),
        Just("[limits.teams]\nquickstart"),
        Just("[executor]\ntimeout"),
        Just("[executor]\nstep_days"),
        Just("[executor]\nkind"),
        Just("[executor]\nprogram"),
        Just("[retry]\nbackoff"),
        Just("[retry]\nretries"),
        Just("[state]\npath"),
        Just("[warehouse]\nkind"),
        Just("[warehouse]\npartition_column"),
        Just("[streaming]\nparallelism"),
        Just("[streaming]\nsavepoint"),
        Just("[hooks]\ntimeout"),
        Just("[bounds]\nmemory"),
        Just("[bounds]\ntime"),
        Just("[bounds.steps.staging-query]\nmemory"),
        Just("start"),
    ];
    let values = prop_oneof![
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("1000000".to_string()),
        Just("9223372036854775807".to_string()),
        Just("\"18446744073709551615s\"".to_string()),
        Just("\"0s\"".to_string()),
        Just("\"\"".to_string()),
        Just("\"9999-12-31\"".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("\"/dev/null\"".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        "[a-z0-9]{0,8}[smhd]?".prop_map(|s| format!("{s:?}")),
    ];
    (keys, values).prop_map(|(key, value)| format!("{key} = {value}\n"))
}

/// Mutated settings on the demo: plan and a dry run answer in time with a
/// documented exit code.
#[test]
fn fuzz_mutated_settings_never_crash_or_hang() {
    let demo = testdata("demo");
    let base = std::fs::read_to_string(demo.join("chronon-build.toml")).unwrap();
    let mut runner = runner();
    let started = Instant::now();
    let runs = std::sync::atomic::AtomicU64::new(0);
    let result = runner.run(&settings_line(), |line| {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("demo");
        copy_dir(&demo, &repo);
        let _ = std::fs::remove_dir_all(repo.join(".chronon-build"));
        // Tables after the seed table would reopen it: put the line first.
        std::fs::write(repo.join("chronon-build.toml"), format!("{line}{base}")).unwrap();
        for args in [
            &["plan", "--until", "2025-09-03"][..],
            &["run", "-n", "--until", "2025-09-03"],
        ] {
            runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            check(&repo, args, &line).map_err(TestCaseError::fail)?;
        }
        Ok(())
    });
    report("settings", started, &runs, result);
}
