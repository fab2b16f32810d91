//! The field-mutation check (issue 28, "keys from what the job really
//! uses"): every field of the demo's compiled configs is changed, one at a
//! time (each leaf value, each object key removed, each key of a map
//! renamed, JSON inside strings included), and fields the model reads that
//! the demo leaves unset are set (`additions`). For each mutation, every
//! target whose key is the same as in the unmutated build must have the
//! same output, byte for byte: a key that misses something the job uses
//! fails here.
//!
//! Keys come from builds' states, which chain, so checking a mutation takes
//! a clean build of it. To stay fast, each mutation is first sorted without
//! building: it reruns no data when every data node (all but metadata
//! uploads, which hash the whole config) keeps its slice, inputs, schedule,
//! output and layout (`signature`). Those are then checked by clean builds
//! of groups of them applied together (a missed dependency would pass
//! unseen there: every target keeps its key, so every output must stay);
//! the rest by clean builds of each addition and of a sample (one in
//! `SAMPLE`, rotated by `CHRONON_BUILD_MUTATION_OFFSET`;
//! `CHRONON_BUILD_MUTATIONS=all` builds them all).
//!
//! It catches a key that drops a resolved value: without the effective
//! accuracy in the join part's and the upload's keys, adding a topic to
//! `returns.v1` changes their outputs under the same keys.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Map, Value, json};

use crate::chronon_build;
use crate::resolved::{Demo, Place, outputs};

const UNTIL: &str = "2025-09-05";
const SAMPLE: usize = 64;
const GROUP: usize = 24;

/// One step of a path into a config: an object key, an array index, or the
/// JSON inside a string (`customJson`, dependency specs).
#[derive(Clone, Debug)]
enum Seg {
    Key(String),
    Index(usize),
    Json,
}

#[derive(Clone, Debug)]
enum Op {
    Set(Value),
    Remove(String),
    Rename(String),
    Add(String, Value),
}

#[derive(Clone, Debug)]
struct Mutation {
    file: String,
    path: Vec<Seg>,
    op: Op,
    addition: bool,
}

impl Mutation {
    /// The field it changes, as path segments: mutations of fields that
    /// are not inside one another can be applied together.
    fn field(&self) -> Vec<String> {
        let mut field: Vec<String> = vec![self.file.clone()];
        field.extend(self.path.iter().map(|seg| format!("{seg:?}")));
        if let Op::Remove(k) | Op::Rename(k) | Op::Add(k, _) = &self.op {
            field.push(format!("{:?}", Seg::Key(k.clone())));
        }
        field
    }

    fn describe(&self) -> String {
        let mut path = String::new();
        for seg in &self.path {
            match seg {
                Seg::Key(k) => path.push_str(&format!(".{k}")),
                Seg::Index(i) => path.push_str(&format!("[{i}]")),
                Seg::Json => path.push_str("<json>"),
            }
        }
        format!("{} {path}: {:?}", self.file, self.op)
    }

    fn apply(&self, root: &Path) {
        crate::resolved::edit_json(root, &self.file, |v| apply(v, &self.path, &self.op));
    }
}

fn apply(value: &mut Value, path: &[Seg], op: &Op) {
    match path.split_first() {
        Some((Seg::Key(k), rest)) => apply(&mut value[k.as_str()], rest, op),
        Some((Seg::Index(i), rest)) => apply(&mut value[*i], rest, op),
        Some((Seg::Json, rest)) => {
            let mut inner: Value = serde_json::from_str(value.as_str().unwrap()).unwrap();
            apply(&mut inner, rest, op);
            *value = Value::String(inner.to_string());
        }
        None => {
            let map = value.as_object_mut();
            match (op, map) {
                (Op::Set(new), _) => *value = new.clone(),
                (Op::Remove(k), Some(map)) => {
                    map.remove(k);
                }
                (Op::Rename(k), Some(map)) => {
                    let v = map.remove(k).unwrap();
                    map.insert(format!("{k}_m"), v);
                }
                (Op::Add(k, v), Some(map)) => {
                    map.insert(k.clone(), v.clone());
                }
                (op, None) => panic!("{op:?} on a non-object"),
            }
        }
    }
}

/// Objects whose keys are names (columns, arguments), not fields.
const MAPS: &[&str] = &["selects", "argMap", "keyMapping", "tableProperties"];

fn changed_leaf(key: &str, value: &Value) -> Option<Value> {
    Some(match value {
        Value::Bool(b) => json!(!b),
        Value::Number(n) if n.is_i64() => {
            let n = n.as_i64().unwrap();
            json!(if n == 0 || n == 1 { 1 - n } else { n + 1 })
        }
        Value::Number(n) => json!(n.as_f64().unwrap() / 2.0),
        Value::String(s) => match chronon_build::testing::Day::parse(s) {
            Some(day) => json!(day.plus(1).to_string()),
            None if key == "query" => json!(format!("{s} AND 1 = 1")),
            None => json!(format!("{s}_m")),
        },
        Value::Null | Value::Array(_) | Value::Object(_) => return None,
    })
}

/// Fields the model reads that the demo leaves unset, by the kind of
/// object (the key that holds it), with a value that is valid there.
fn additions(kind: &str) -> Vec<(&'static str, Value)> {
    match kind {
        "events" => vec![
            ("topic", json!("events.added/host=kafka/port=9092")),
            ("isCumulative", json!(1)),
        ],
        "entities" => vec![
            (
                "mutationTopic",
                json!("entities.added/host=kafka/port=9092"),
            ),
            ("mutationTable", json!("data.users_mutations")),
        ],
        "query" => vec![
            ("partitionColumn", json!("ds")),
            ("timeColumn", json!("ts")),
            ("endPartition", json!("2025-09-03")),
        ],
        "metaData" => vec![
            (
                "executionInfo",
                json!({"outputTableInfo": {"table": "quickstart.renamed"}}),
            ),
            ("customJson", json!("{\"lag\": 1}")),
        ],
        "groupBy" => vec![("accuracy", json!(0)), ("accuracy", json!(1))],
        "joinPart" => vec![
            ("prefix", json!("p")),
            ("keyMapping", json!({"user_id": "user_id"})),
        ],
        "join" => vec![("rowIds", json!(["checkout_id"]))],
        _ => Vec::new(),
    }
}

struct Walk<'a> {
    file: &'a str,
    out: Vec<Mutation>,
}

impl Walk<'_> {
    fn push(&mut self, path: &[Seg], op: Op, addition: bool) {
        self.out.push(Mutation {
            file: self.file.to_string(),
            path: path.to_vec(),
            op,
            addition,
        });
    }

    fn walk(&mut self, value: &Value, path: &mut Vec<Seg>, key: &str, kind: &str) {
        match value {
            Value::Object(map) => self.object(map, path, key, kind),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    path.push(Seg::Index(i));
                    let kind = if key == "joinParts" { "joinPart" } else { "" };
                    self.walk(item, path, key, kind);
                    path.pop();
                }
            }
            Value::String(s) if key == "customJson" || s.starts_with('{') => {
                let inner: Value = serde_json::from_str(s).unwrap();
                path.push(Seg::Json);
                self.walk(&inner, path, "customJson", "customJson");
                path.pop();
            }
            leaf => {
                if let Some(new) = changed_leaf(key, leaf) {
                    self.push(path, Op::Set(new), false);
                }
            }
        }
    }

    fn object(&mut self, map: &Map<String, Value>, path: &mut Vec<Seg>, key: &str, kind: &str) {
        for (k, child) in map {
            self.push(path, Op::Remove(k.clone()), false);
            if MAPS.contains(&key) || kind == "customJson" {
                self.push(path, Op::Rename(k.clone()), false);
            }
            path.push(Seg::Key(k.clone()));
            let child_kind = if k == "groupBy" {
                "groupBy"
            } else {
                k.as_str()
            };
            self.walk(child, path, k, child_kind);
            path.pop();
        }
        for (field, value) in additions(kind) {
            if !map.contains_key(field) || field == "accuracy" {
                self.push(path, Op::Add(field.into(), value), true);
            }
        }
    }
}

fn mutations(root: &Path) -> Vec<Mutation> {
    let mut out = Vec::new();
    for (folder, kind) in [
        ("production/group_bys/quickstart", "groupBy"),
        ("production/joins/quickstart", "join"),
        ("production/staging_queries/quickstart", "stagingQuery"),
    ] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(folder))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for file in files {
            let rel = file.strip_prefix(root).unwrap().to_str().unwrap();
            let value: Value =
                serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
            let mut walk = Walk {
                file: rel,
                out: Vec::new(),
            };
            walk.walk(&value, &mut Vec::new(), "", kind);
            out.extend(walk.out);
        }
    }
    out
}

/// A built repository: each target's key, and each target's outputs.
struct Build {
    keys: BTreeMap<String, String>,
    outputs: BTreeMap<Place, String>,
}

/// Reads a built repository: keys from its state, outputs from its
/// warehouse and KV store.
fn read_build(root: &Path) -> Build {
    let rows = crate::state_db::StateDb::open(root).rows(
        "SELECT n.step, n.config, n.part, t.day, t.key FROM targets t JOIN nodes n ON n.id = t.node",
        &[],
    );
    let keys = rows
        .iter()
        .map(|r| {
            let part = r[2].text();
            let label = format!(
                "{}:{}{}@{}",
                r[0].text(),
                r[1].text(),
                if part.is_empty() {
                    String::new()
                } else {
                    format!("#{part}")
                },
                // Unpartitioned targets are recorded at i64::MIN.
                i32::try_from(r[3].int())
                    .map_or("-".to_string(), |d| chronon_build::testing::Day(d)
                        .to_string())
            );
            let key: String = r[4].bytes().iter().map(|b| format!("{b:02X}")).collect();
            (label, key)
        })
        .collect();
    Build {
        keys,
        outputs: outputs(root),
    }
}

/// Where each target of the demo writes: `label@day` to its places.
fn places(root: &Path, build: &Build) -> BTreeMap<String, Vec<Place>> {
    let graph = chronon_build(root, &["graph", "--format", "json"]);
    let graph: Value = serde_json::from_str(&graph.stdout).unwrap();
    let mut by_node = BTreeMap::new();
    for node in graph["nodes"].as_array().unwrap() {
        let id = node["id"].as_str().unwrap().to_string();
        by_node.insert(
            id,
            (
                node["step"].clone(),
                node["config"].clone(),
                node["output"].clone(),
            ),
        );
    }
    let mut out = BTreeMap::new();
    for target in build.keys.keys() {
        let (label, day) = target.rsplit_once('@').unwrap();
        let (step, config, output) = &by_node[label];
        let dataset = |suffix: &str| {
            let name: String = config
                .as_str()
                .unwrap()
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            Place::Kv {
                dataset: format!("{name}_{suffix}"),
            }
        };
        let place = match (step.as_str().unwrap(), output.as_str()) {
            ("upload-to-kv", _) => dataset("BATCH"),
            ("group-by-streaming", _) => dataset("STREAMING"),
            (_, Some(table)) => Place::Partition {
                table: table.to_string(),
                day: day.to_string(),
            },
            // The metadata upload writes the raw config, which is what it
            // hashes.
            _ => continue,
        };
        assert!(
            build.outputs.contains_key(&place),
            "{target}: no output at {place:?}"
        );
        out.insert(target.clone(), vec![place]);
    }
    out
}

/// What decides every key of a data node (all but metadata uploads, which
/// hash the whole config): its step, output, schedule, inputs, slice and
/// job layout. Equal signatures make equal keys on the same warehouse.
fn signature(root: &Path) -> Option<Vec<String>> {
    // The pieces of `Workspace::load`, which would print each invalid
    // config: an invalid config is a change, said by `None`.
    let repo = chronon_build::testing::Repo::load_lenient(root).ok()?;
    if !repo.invalid.is_empty() {
        return None;
    }
    let settings = chronon_build::testing::Settings::load(root).ok()?;
    let graph = chronon_build::testing::Graph::build(&repo, &settings).ok()?;
    let partitioning = chronon_build::testing::Partitioning::of(&repo, &settings, &graph).ok()?;
    Some(
        graph
            .nodes
            .iter()
            .filter(|n| n.step != chronon_build::testing::Step::MetadataUpload)
            .map(|n| {
                format!(
                    "{} {:?} {:?} {:?} {:?} {} {:?}",
                    n.label(),
                    n.output,
                    n.schedule,
                    n.inputs,
                    n.slice_hash,
                    n.probed_output,
                    partitioning.jobs[n.id].layout
                )
            })
            .collect(),
    )
}

/// Whether the mutations, applied together, change the key of a data
/// target (an invalid config counts as a change). `scratch` is a copy of
/// the demo, given back unchanged.
fn reruns_data(scratch: &Path, base: &[String], mutations: &[&Mutation]) -> bool {
    let files: BTreeSet<&str> = mutations.iter().map(|m| m.file.as_str()).collect();
    let saved: Vec<(&str, String)> = files
        .iter()
        .map(|f| (*f, std::fs::read_to_string(scratch.join(f)).unwrap()))
        .collect();
    for m in mutations {
        m.apply(scratch);
    }
    let reruns = signature(scratch).as_deref() != Some(base);
    for (file, text) in saved {
        std::fs::write(scratch.join(file), text).unwrap();
    }
    reruns
}

/// The targets whose key did not change but whose output did, in a clean
/// build of the demo with the mutations applied.
fn unsound(
    base: &Build,
    places: &BTreeMap<String, Vec<Place>>,
    mutations: &[&Mutation],
) -> Vec<String> {
    let demo = Demo::new();
    for m in mutations {
        m.apply(&demo.root);
    }
    let what: Vec<String> = mutations.iter().map(|m| m.describe()).collect();
    // A mutation may make a config invalid or a job fail: what was built
    // is still compared.
    chronon_build(&demo.root, &["run", "--until", UNTIL]);
    let built = read_build(&demo.root);
    let mut out = Vec::new();
    for (target, key) in &built.keys {
        if base.keys.get(target) != Some(key) {
            continue;
        }
        for place in places.get(target).into_iter().flatten() {
            if base.outputs.get(place) != built.outputs.get(place) {
                out.push(format!(
                    "{}: {target} kept its key, but {place:?} changed",
                    what.join("; ")
                ));
            }
        }
    }
    out
}

/// Runs `work` on every item with one thread per core; `work` is told
/// which thread runs it (`0..workers()`), for per-thread scratch copies.
fn parallel<T: Sync, R: Send>(items: &[T], work: impl Fn(usize, &T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for worker in 0..workers() {
            let (next, results, work) = (&next, &results, &work);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let result = work(worker, item);
                    results.lock().unwrap().push((i, result));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// A build mostly waits on its jobs' processes: a few per core.
fn workers() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(4)
        * 4
}

/// Mutations that rerun no data, in groups that touch fields not inside
/// one another and together still rerun no data (first fit): one clean
/// build checks a whole group.
fn groups<'m>(scratch: &Path, base: &[String], quiet: &[&'m Mutation]) -> Vec<Vec<&'m Mutation>> {
    let mut out: Vec<Vec<&Mutation>> = Vec::new();
    for m in quiet {
        let field = m.field();
        let fits = |group: &Vec<&Mutation>| {
            group.len() < GROUP
                && group.iter().all(|o| {
                    let other = o.field();
                    !other.starts_with(&field) && !field.starts_with(&other)
                })
                && {
                    let mut candidate = group.clone();
                    candidate.push(m);
                    !reruns_data(scratch, base, &candidate)
                }
        };
        match out.iter().position(fits) {
            Some(i) => out[i].push(m),
            None => out.push(vec![m]),
        }
    }
    out
}

#[test]
fn every_config_field_changes_a_key_or_no_output() {
    let started = std::time::Instant::now();
    let base_demo = Demo::new();
    base_demo.run(UNTIL);
    let base = read_build(&base_demo.root);
    let places = places(&base_demo.root, &base);
    let scratches: Vec<Demo> = (0..workers()).map(|_| Demo::new()).collect();
    let scratch = &scratches[0];
    let signature = signature(&scratch.root).expect("the demo loads");
    let all = mutations(&scratch.root);
    let everything = std::env::var("CHRONON_BUILD_MUTATIONS").is_ok_and(|v| v == "all");
    let offset: usize = std::env::var("CHRONON_BUILD_MUTATION_OFFSET")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let reruns = parallel(&all, |worker, m| {
        reruns_data(&scratches[worker].root, &signature, &[m])
    });
    let (mut quiet, mut loud) = (Vec::new(), Vec::new());
    for (m, reruns) in all.iter().zip(reruns) {
        if reruns {
            loud.push(m);
        } else {
            quiet.push(m);
        }
    }
    let planned = started.elapsed();
    let mut checks: Vec<Vec<&Mutation>> = groups(&scratch.root, &signature, &quiet);
    let quiet_groups = checks.len();
    checks.extend(
        loud.iter()
            .enumerate()
            .filter(|(i, m)| everything || m.addition || (i + offset).is_multiple_of(SAMPLE))
            .map(|(_, m)| vec![*m]),
    );
    let mut found: Vec<String> = Vec::new();
    let results = parallel(&checks, |_, g| unsound(&base, &places, g.as_slice()));
    for (group, result) in checks.iter().zip(results) {
        if result.is_empty() {
            continue;
        }
        // Name the mutation: check a failing group's members one by one.
        if group.len() == 1 {
            found.extend(result);
        } else {
            for m in group {
                found.extend(unsound(&base, &places, &[*m]));
            }
        }
    }
    eprintln!(
        "field mutations: {} mutations of {} fields and keys; {} rerun no data, built clean in {} \
         groups; {} rerun data, {} of them built clean; {:.0?} ({:.0?} to sort them)",
        all.len(),
        all.iter()
            .map(Mutation::field)
            .collect::<BTreeSet<_>>()
            .len(),
        quiet.len(),
        quiet_groups,
        loud.len(),
        checks.len() - quiet_groups,
        started.elapsed(),
        planned,
    );
    assert!(
        found.is_empty(),
        "{} target(s) kept their key while their output changed:\n{}",
        found.len(),
        found.join("\n")
    );
}
