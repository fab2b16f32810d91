//! The live plan's unit tests.

use std::collections::HashMap;
use std::path::Path;

use serde_json::json;

use super::*;
use crate::config::Repo;
use crate::hash::Hash;
use crate::probe::Probe;
use crate::probe::ProbeError;
use crate::settings::Settings;

/// Tables and their partitions, in memory.
struct Tables(HashMap<String, Partitions>);

impl Probe for Tables {
    fn list(&self, table: &str) -> Result<Partitions, ProbeError> {
        Ok(self.0.get(table).cloned().unwrap_or_default())
    }
}

fn days(table: &str, from: i32, to: i32) -> Partitions {
    (from..=to)
        .map(|d| (Day(d), Hash::of(format!("{table} {d}").as_bytes())))
        .collect()
}

const JAN_1: i32 = 20_089; // 2025-01-01

/// A group-by served online with a topic (backfill, upload, KV upload,
/// streaming), and a join reading it.
fn repo(dir: &Path) -> (Repo, Settings) {
    let gb = json!({
        "metaData": {"name": "t.gb.v1", "team": "t", "outputNamespace": "out", "online": true},
        "sources": [{"events": {"table": "raw.events", "topic": "events_topic", "query": {
            "selects": {"k": "k", "v": "v"}, "timeColumn": "ts"}}}],
        "keyColumns": ["k"],
        "aggregations": [{"inputColumn": "v", "operation": 7,
            "windows": [{"length": 2, "timeUnit": 1}]}],
        "backfillStartDate": "2025-01-02"
    });
    let join = json!({
        "metaData": {"name": "t.j.v1", "team": "t", "outputNamespace": "out"},
        "left": {"events": {"table": "raw.left", "query": {
            "selects": {"k": "k"}, "timeColumn": "ts", "startPartition": "2025-01-03"}}},
        "joinParts": [{"groupBy": gb}]
    });
    for (path, conf) in [("group_bys/t/gb.v1", &gb), ("joins/t/j.v1", &join)] {
        let path = dir.join("production").join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, conf.to_string()).unwrap();
    }
    std::fs::write(dir.join("teams.json"), r#"{"t": {"namespace": "out"}}"#).unwrap();
    (Repo::load(dir).unwrap(), Settings::load(dir).unwrap())
}

/// The plan of the repository with these tables, until 2025-01-05.
fn plan(graph: &Graph, repo: &Repo, settings: &Settings, tables: Tables) -> Plan {
    let ctx = super::super::Context {
        repo,
        settings,
        graph,
        probe: &tables,
        store: None,
    };
    let opts = super::super::PlanOptions::new(Day(JAN_1 + 4), None, vec![true; graph.nodes.len()]);
    super::super::compute(&ctx, &opts).unwrap()
}

fn inputs(left_to: i32) -> Tables {
    Tables(HashMap::from([
        (
            "raw.events".to_string(),
            days("raw.events", JAN_1, JAN_1 + 4),
        ),
        ("raw.left".to_string(), days("raw.left", JAN_1, left_to)),
    ]))
}

/// The join's left, part and final nodes.
fn join_nodes(graph: &Graph) -> (NodeId, NodeId, NodeId) {
    (
        node(graph, "join-left:t.j.v1"),
        node(graph, "join-part:t.j.v1#t_gb_v1"),
        node(graph, "join-final:t.j.v1"),
    )
}

fn node(graph: &Graph, label: &str) -> NodeId {
    graph.nodes.iter().find(|n| n.label() == label).unwrap().id
}

/// The index of a node's target at a day.
fn at(live: &LivePlan, id: NodeId, day: i32) -> usize {
    (0..live.plan().nodes[id].targets.len())
        .find(|&i| live.target(id, i).day == Some(Day(day)))
        .unwrap()
}

/// Builds targets as a job would, each writing `output`.
fn build(live: &mut LivePlan, id: NodeId, targets: &[usize], output: Hash) -> Ready {
    let taken = live.take_ready(id, targets.to_vec());
    assert_eq!(taken, targets, "not ready: {targets:?}");
    let recorded = taken
        .iter()
        .map(|&i| {
            let target = live.target(id, i);
            let record = Recorded {
                key: target.key.unwrap(),
                slice: live.graph.nodes[id].slice_hash,
                inputs: Hash::of(b"inputs"),
                output,
                seq: 1,
            };
            (i, record)
        })
        .collect();
    live.built(id, &taken, recorded, &[])
}

fn ready_of(ready: &Ready, id: NodeId) -> Vec<usize> {
    let mut all: Vec<usize> = ready
        .0
        .iter()
        .filter(|(n, _)| *n == id)
        .flat_map(|(_, t)| t.iter().copied())
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

struct Fixture {
    _dir: tempfile::TempDir,
    repo: Repo,
    settings: Settings,
    graph: Graph,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (repo, settings) = repo(dir.path());
    let graph = Graph::build(&repo, &settings).unwrap();
    Fixture {
        _dir: dir,
        repo,
        settings,
        graph,
    }
}

#[test]
fn a_target_becomes_ready_when_the_days_it_reads_are_built() {
    let f = fixture();
    let (left, part, last) = join_nodes(&f.graph);
    let mut live = LivePlan::new(
        &f.graph,
        plan(&f.graph, &f.repo, &f.settings, inputs(JAN_1 + 4)),
    );
    let start = live.start();
    let (d3, d4) = (at(&live, left, JAN_1 + 2), at(&live, left, JAN_1 + 3));
    assert!(ready_of(&start, left).contains(&d3));
    assert!(ready_of(&start, part).is_empty(), "{start:?}");
    assert!(ready_of(&start, last).is_empty());

    let ready = build(&mut live, left, &[d3], Hash::of(b"left 3"));
    assert_eq!(ready_of(&ready, part), vec![at(&live, part, JAN_1 + 2)]);
    assert!(
        ready_of(&ready, last).is_empty(),
        "the final waits on the part"
    );
    assert_eq!(live.phase(left, d3), Phase::Built);
    // Undecided until the left's 01-04 is built.
    assert_eq!(live.target(part, at(&live, part, JAN_1 + 3)).key, None);

    let p3 = at(&live, part, JAN_1 + 2);
    let ready = build(&mut live, part, &[p3], Hash::of(b"part 3"));
    assert_eq!(ready_of(&ready, last), vec![at(&live, last, JAN_1 + 2)]);
    // Nothing else was touched, and nothing is handed out twice.
    assert_eq!(live.take_ready(left, vec![d3]), Vec::<usize>::new());
    assert_eq!(live.take_ready(left, vec![d4, d4]), vec![d4]);
    assert_eq!(live.phase(left, d4), Phase::Dispatched);
    assert_eq!(live.cutoff(), 0);
}

#[test]
fn a_failure_stops_what_reads_it_transitively_and_nothing_else() {
    let f = fixture();
    let (left, part, last) = join_nodes(&f.graph);
    let mut live = LivePlan::new(
        &f.graph,
        plan(&f.graph, &f.repo, &f.settings, inputs(JAN_1 + 4)),
    );
    let d3 = at(&live, left, JAN_1 + 2);
    assert_eq!(live.take_ready(left, vec![d3]), vec![d3]);
    let ready = live.failed(left, &[d3], 7);
    assert!(ready.is_empty(), "{ready:?}");
    assert_eq!(live.phase(left, d3), Phase::Failed);
    assert!(matches!(
        &live.target(left, d3).status,
        Status::Stale(r) if matches!(**r, StaleReason::PreviousRunFailed { run: 7 })
    ));
    for id in [part, last] {
        let i = at(&live, id, JAN_1 + 2);
        assert_eq!(live.phase(id, i), Phase::UpstreamFailed);
        assert_eq!(
            live.note(id, i).map(|n| &**n),
            Some("join-left:t.j.v1 failed")
        );
        // Other days read other days of the left: untouched.
        assert_eq!(live.phase(id, at(&live, id, JAN_1 + 3)), Phase::Idle);
    }
}

#[test]
fn a_rebuild_that_writes_the_same_output_cuts_off_what_reads_it() {
    let f = fixture();
    let (left, part, last) = join_nodes(&f.graph);
    // The key the part gets once the left's 01-03 wrote "left 3".
    let mut first = LivePlan::new(
        &f.graph,
        plan(&f.graph, &f.repo, &f.settings, inputs(JAN_1 + 4)),
    );
    let d3 = at(&first, left, JAN_1 + 2);
    let _ = build(&mut first, left, &[d3], Hash::of(b"left 3"));
    let p3 = at(&first, part, JAN_1 + 2);
    let key = first.target(part, p3).key.unwrap();

    // The part was built from that output before, and its partition is
    // in the warehouse as recorded.
    let written = Hash::of(b"part 3");
    let built_before = || {
        let mut tables = inputs(JAN_1 + 4);
        let partitions = Partitions::from([(Day(JAN_1 + 2), written)]);
        tables.0.insert("out.t_j_v1_t_gb_v1".into(), partitions);
        let mut plan = plan(&f.graph, &f.repo, &f.settings, tables);
        let recorded = Recorded {
            key,
            slice: f.graph.nodes[part].slice_hash,
            inputs: Hash::of(b"i"),
            output: written,
            seq: 1,
        };
        let day = day_column(Some(Day(JAN_1 + 2)));
        plan.state[part].built.insert(day, recorded);
        plan
    };
    let mut live = LivePlan::new(&f.graph, built_before());
    assert_eq!(
        live.target(part, p3).key,
        None,
        "{}",
        live.target(part, p3).status
    );
    let ready = build(&mut live, left, &[d3], Hash::of(b"left 3"));
    assert_eq!(
        live.target(part, p3).status.to_string(),
        Status::Fresh.to_string()
    );
    assert!(ready_of(&ready, part).is_empty(), "{ready:?}");
    assert_eq!(live.cutoff(), 1);
    // Fresh by cutoff, the part's output is known: the final can run.
    assert_eq!(ready_of(&ready, last), vec![at(&live, last, JAN_1 + 2)]);

    // Another output for the left: the part must run again.
    let mut live = LivePlan::new(&f.graph, built_before());
    let ready = build(&mut live, left, &[d3], Hash::of(b"left 3, other"));
    assert_eq!(ready_of(&ready, part), vec![p3]);
    assert_eq!(live.cutoff(), 0);
}

#[test]
fn the_streaming_deploy_waits_for_the_kv_upload() {
    let f = fixture();
    let (upload, kv, stream) = (
        node(&f.graph, "group-by-upload:t.gb.v1"),
        node(&f.graph, "upload-to-kv:t.gb.v1"),
        node(&f.graph, "group-by-streaming:t.gb.v1"),
    );
    let mut live = LivePlan::new(
        &f.graph,
        plan(&f.graph, &f.repo, &f.settings, inputs(JAN_1 + 4)),
    );
    let start = live.start();
    assert!(live.ordering_busy(stream), "the KV upload has work to do");
    assert!(
        ready_of(&start, kv).is_empty(),
        "the KV upload waits for the upload"
    );
    let uploads = ready_of(&start, upload);
    let ready = build(&mut live, upload, &uploads, Hash::of(b"upload"));
    let kvs = ready_of(&ready, kv);
    assert!(!kvs.is_empty(), "{ready:?}");
    assert!(live.ordering_busy(stream));
    let ready = build(&mut live, kv, &kvs, Hash::of(b"kv"));
    assert!(!live.ordering_busy(stream));
    assert_eq!(ready_of(&ready, stream), live.held(stream));
    assert!(!live.held(stream).is_empty());
}

#[test]
fn an_input_that_lands_unblocks_its_readers() {
    let f = fixture();
    let left = node(&f.graph, "join-left:t.j.v1");
    let mut live = LivePlan::new(
        &f.graph,
        plan(&f.graph, &f.repo, &f.settings, inputs(JAN_1 + 3)),
    );
    let d5 = at(&live, left, JAN_1 + 4);
    assert!(matches!(
        live.target(left, d5).status,
        Status::Blocked { .. }
    ));
    assert!(!ready_of(&live.start(), left).contains(&d5));
    assert_eq!(live.blocked_tables(), vec!["raw.left".to_string()]);

    // Listed again, unchanged: nothing landed.
    let (landed, ready) = live.landed(vec![(
        "raw.left".into(),
        days("raw.left", JAN_1, JAN_1 + 3),
    )]);
    assert!(landed.is_empty() && ready.is_empty());

    let (landed, ready) = live.landed(vec![(
        "raw.left".into(),
        days("raw.left", JAN_1, JAN_1 + 4),
    )]);
    assert_eq!(landed, vec!["raw.left".to_string()]);
    assert_eq!(ready_of(&ready, left), vec![d5]);
    assert!(live.blocked_tables().is_empty());
}

#[test]
fn a_node_built_whole_has_the_memo_a_later_plan_computes() {
    let f = fixture();
    let gb = node(&f.graph, "group-by-backfill:t.gb.v1");
    let mut live = LivePlan::new(
        &f.graph,
        plan(&f.graph, &f.repo, &f.settings, inputs(JAN_1 + 4)),
    );
    let all: Vec<usize> = (0..live.plan().nodes[gb].targets.len()).collect();
    assert!(all.len() > 1);
    assert!(!live.all_built(gb));
    let output = Hash::of(b"gb");
    let _ = build(&mut live, gb, &all[..1], output);
    assert!(!live.all_built(gb), "one target is not built yet");
    let _ = build(&mut live, gb, &all[1..], output);
    assert!(live.all_built(gb));

    // Its output as listed after the build, and a later plan's view of
    // its inputs: the memo that plan computes is the live plan's.
    let table = f.graph.nodes[gb].output.clone().unwrap();
    let listed: Partitions = all
        .iter()
        .filter_map(|&i| live.target(gb, i).day)
        .map(|d| (d, output))
        .collect();
    let column = Column::from_partitions(&table, &listed);
    let node = &f.graph.nodes[gb];
    let days: Vec<Option<Day>> = plan(&f.graph, &f.repo, &f.settings, inputs(JAN_1 + 4)).nodes[gb]
        .targets
        .iter()
        .map(|t| t.day)
        .collect();
    let memo = |inputs: Tables| {
        let later = plan(&f.graph, &f.repo, &f.settings, inputs);
        let columns = later.input_columns(&f.graph, node);
        let basis = super::super::memo::Basis {
            node,
            until: later.until,
            inputs: &columns,
            output: Some(&column),
        };
        basis.memo(&days, &Default::default())
    };
    let held = live.memo(gb, Some(&column));
    assert!(held.is_some());
    assert_eq!(held, memo(inputs(JAN_1 + 4)));
    // An input partition changed since: another memo.
    let mut changed = inputs(JAN_1 + 4);
    changed
        .0
        .get_mut("raw.events")
        .unwrap()
        .insert(Day(JAN_1 + 1), Hash::of(b"rewritten"));
    assert_ne!(held, memo(changed));
    // Another listing of its output: another memo.
    let other = Column::from_partitions(&table, &Partitions::new());
    assert_ne!(held, live.memo(gb, Some(&other)));
}

/// What dependents see of a node's targets that are not fresh holds the
/// node's one label, never a name per target (at 100,000 waiting targets,
/// one allocation per node); targets waiting on them clone it.
#[test]
fn targets_waiting_on_a_node_share_its_name() {
    let f = fixture();
    let (left, _, _) = join_nodes(&f.graph);
    let plan = plan(&f.graph, &f.repo, &f.settings, inputs(JAN_1 + 4));
    let output = f.graph.nodes[left].output.as_deref().unwrap();
    let column = &plan.columns[&super::super::internal_key(output)];
    let names: Vec<std::sync::Arc<str>> = (JAN_1 + 2..=JAN_1 + 4)
        .map(|d| match column.get(Day(d)) {
            Entry::Pending(Status::Waiting { upstream }) => {
                assert_eq!(upstream.to_string(), format!("join-left:t.j.v1@{}", Day(d)));
                upstream.node.clone()
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(
        names.iter().all(|n| std::sync::Arc::ptr_eq(n, &names[0])),
        "one name per upstream node"
    );
    // The day beside the name costs no target any room: a status is as
    // large as with a name alone.
    assert!(std::mem::size_of::<Status>() <= 3 * std::mem::size_of::<usize>());
}
