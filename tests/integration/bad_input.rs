//! Bad input: the exact message naming file, field and expectation; exit 2;
//! no panic; and no state written.

use serde_json::{Value, json};

use crate::chronon_build;

fn group_by(name: &str) -> Value {
    json!({
        "metaData": {"name": name, "team": "team", "outputNamespace": "db", "online": 1},
        "sources": [{"events": {"table": "raw.events", "query": {"selects": {"user": "user_id", "x": "x"}, "timeColumn": "ts"}}}],
        "keyColumns": ["user"],
        "aggregations": [{"inputColumn": "x", "operation": 7, "windows": [{"length": 7, "timeUnit": 1}]}],
        "backfillStartDate": "2024-01-01"
    })
}

fn join(name: &str, parts: Vec<Value>) -> Value {
    json!({
        "metaData": {"name": name, "team": "team", "outputNamespace": "db"},
        "left": {"events": {"table": "raw.requests", "query": {"selects": {"user": "user_id"}, "timeColumn": "ts", "startPartition": "2024-01-01"}}},
        "joinParts": parts.into_iter().map(|g| json!({"groupBy": g})).collect::<Vec<_>>()
    })
}

/// Writes files under `production/` of a fresh repo and runs `validate`.
fn validate(files: &[(&str, String)]) -> crate::Output {
    let dir = tempfile::tempdir().unwrap();
    for (rel, text) in files {
        let path = dir.path().join("production").join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let out = chronon_build(dir.path(), &["validate"]);
    assert!(
        !dir.path().join(".chronon-build").exists(),
        "validate wrote state"
    );
    // plan --strict refuses what validate refuses; plain plan sets the
    // invalid configs apart, says why, and exits 1.
    let strict = chronon_build(dir.path(), &["plan", "--strict", "--until", "2024-01-10"]);
    assert_eq!(
        strict.code, 2,
        "plan --strict must refuse what validate refuses: {}",
        strict.stderr
    );
    let plan = chronon_build(dir.path(), &["plan", "--until", "2024-01-10"]);
    assert!(
        plan.code == 1 || plan.code == 2,
        "plan: {}\n{}",
        plan.stdout,
        plan.stderr
    );
    for line in out.stderr.lines().filter(|l| !l.ends_with(" found")) {
        assert!(
            plan.stderr.contains(line),
            "plan did not say {line:?}:\n{}",
            plan.stderr
        );
    }
    assert!(
        !dir.path().join(".chronon-build").exists(),
        "plan wrote state on bad input"
    );
    out
}

fn assert_problems(out: &crate::Output, expected: &[&str]) {
    assert_eq!(
        out.code, 2,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    let mut lines: Vec<&str> = out.stderr.lines().collect();
    let summary = lines.pop().unwrap();
    assert_eq!(lines, expected);
    let n = expected.len();
    assert_eq!(
        summary,
        format!("{n} problem{} found", if n == 1 { "" } else { "s" })
    );
    assert!(!out.stderr.contains("panicked"));
}

fn text(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap()
}

#[test]
fn malformed_json_names_the_file_line_and_column() {
    let out = validate(&[(
        "group_bys/team/broken.v1",
        "{\"metaData\": {\"name\": \"team.broken.v1\"".into(),
    )]);
    assert_problems(
        &out,
        &[
            "production/group_bys/team/broken.v1: malformed JSON: EOF while parsing an object at line 1 column 38",
        ],
    );
}

#[test]
fn wrong_types_are_listed_with_their_paths() {
    let mut g = group_by("team.typed.v1");
    g["keyColumns"] = json!("user");
    g["metaData"]["online"] = json!("yes");
    g["aggregations"][0]["windows"][0]["length"] = json!("seven");
    let out = validate(&[("group_bys/team/typed.v1", text(&g))]);
    assert_problems(
        &out,
        &[
            "production/group_bys/team/typed.v1: aggregations[0].windows[0].length: expected an integer, got string \"seven\"",
            "production/group_bys/team/typed.v1: aggregations[0].windows[0].length: missing required window length",
            "production/group_bys/team/typed.v1: keyColumns: expected an array, got string \"user\"",
            "production/group_bys/team/typed.v1: metaData.online: expected a boolean (1, 0, true or false), got string \"yes\"",
        ],
    );
}

#[test]
fn unknown_enum_values_name_the_enum_and_the_value() {
    let mut g = group_by("team.inner.v1");
    g["aggregations"][0]["operation"] = json!(42);
    let mut other = group_by("team.other.v1");
    other["aggregations"][0]["windows"][0]["timeUnit"] = json!(7);
    let j = join(
        "team.x.v1",
        vec![group_by("team.ok.v1"), group_by("team.ok2.v1"), g],
    );
    let out = validate(&[
        ("joins/team/x.v1", text(&j)),
        ("group_bys/team/other.v1", text(&other)),
    ]);
    assert_problems(
        &out,
        &[
            "production/group_bys/team/other.v1: aggregations[0].windows[0].timeUnit: unknown time unit 7",
            "production/joins/team/x.v1: joinParts[2].groupBy.aggregations[0].operation: unknown operation 42",
        ],
    );
}

#[test]
fn a_source_needs_exactly_one_kind() {
    let mut none = group_by("team.none.v1");
    none["sources"] = json!([{}]);
    let mut two = group_by("team.two.v1");
    two["sources"][0]["entities"] = json!({"snapshotTable": "raw.users"});
    let out = validate(&[
        ("group_bys/team/none.v1", text(&none)),
        ("group_bys/team/two.v1", text(&two)),
    ]);
    assert_problems(
        &out,
        &[
            "production/group_bys/team/none.v1: sources[0]: expected exactly one of events, entities, joinSource; found none",
            "production/group_bys/team/two.v1: sources[0]: expected exactly one of events, entities, joinSource; found events, entities",
        ],
    );
}

#[test]
fn a_missing_name_is_reported() {
    let mut g = group_by("x");
    g["metaData"].as_object_mut().unwrap().remove("name");
    let out = validate(&[("group_bys/team/nameless", text(&g))]);
    assert_problems(
        &out,
        &["production/group_bys/team/nameless: metaData.name: missing required string"],
    );
}

#[test]
fn duplicate_config_names_name_both_files() {
    let g = text(&group_by("team.same.v1"));
    let out = validate(&[("group_bys/team/a", g.clone()), ("group_bys/team/b", g)]);
    assert_problems(
        &out,
        &[
            "production/group_bys/team/b: metaData.name: duplicate config name team.same.v1 (also in production/group_bys/team/a)",
        ],
    );
}

#[test]
fn a_join_source_cycle_is_named_with_its_path() {
    // Join a embeds a group-by over join b; join b embeds a group-by over join a.
    let chained = |name: &str, over: &str| {
        let mut g = group_by(name);
        g["sources"] = json!([{"joinSource": {"join": join(over, vec![]), "query": {"selects": {"user": "user"}, "timeColumn": "ts"}}}]);
        g
    };
    let a = join("team.a.v1", vec![chained("team.over_b.v1", "team.b.v1")]);
    let b = join("team.b.v1", vec![chained("team.over_a.v1", "team.a.v1")]);
    let out = validate(&[("joins/team/a.v1", text(&a)), ("joins/team/b.v1", text(&b))]);
    assert_problems(
        &out,
        &[
            "production/joins/team/b.v1: joinParts[0].groupBy.sources[0].joinSource.join: joinSource cycle: \
           join-final:team.a.v1 -> join-part:team.b.v1#team_over_a_v1 -> join-final:team.b.v1 -> \
           join-part:team.a.v1#team_over_b_v1 -> join-final:team.a.v1",
        ],
    );
}

#[test]
fn bad_settings_and_arguments_exit_2_without_writing_state() {
    let s = crate::Scenario::copy("scenario");
    std::fs::write(
        s.repo.join("chronon-build.toml"),
        "[warehouse]\nrooot = \"x\"\n",
    )
    .unwrap();
    let out = s.run(&["plan", "--until", "2025-01-10"]);
    crate::assert_error(
        &out,
        "chronon-build.toml: warehouse.rooot: TOML parse error at line 2, column 1",
    );
    crate::assert_error(&out, "unknown field `rooot`");
    // The local executor (the default) computes on the embedded warehouse,
    // and runs joins modular.
    for (settings, message) in [
        (
            "[warehouse]\nkind = \"hive-dir\"\n",
            "executor.kind: the local executor computes on the embedded warehouse",
        ),
        (
            "[executor]\njoins = \"whole\"\n",
            "executor.joins: the local executor runs joins modular",
        ),
        (
            "[executor]\nkind = \"zipline\"\n[warehouse]\nkind = \"hive-dir\"\n[warehouse.seed]\n\"raw.t\" = \"t.csv\"\n",
            "warehouse.seed: expected warehouse.kind = \"sqlite\"",
        ),
    ] {
        std::fs::write(s.repo.join("chronon-build.toml"), settings).unwrap();
        let out = s.run(&["plan", "--until", "2025-01-10"]);
        crate::assert_error(&out, message);
    }
    std::fs::remove_file(s.repo.join("chronon-build.toml")).unwrap();

    let out = s.run(&["plan", "--until", "2025-02-30"]);
    crate::assert_error(&out, "\"2025-02-30\" is not a day");
    let out = s.run(&["plan", "--until", "2025-01-10", "--select", "nothing.*"]);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (2, "error: --select \"nothing.*\": matches no config\n")
    );
    let out = s.run(&[
        "explain",
        "group-by-backfill:risk.nope.v1@2025-01-05",
        "--until",
        "2025-01-10",
    ]);
    crate::assert_error(
        &out,
        "no target \"group-by-backfill:risk.nope.v1@2025-01-05\" in the graph",
    );
    let out = chronon_build(&s.repo.join("compiled/joins"), &["validate"]);
    crate::assert_error(&out, "no compiled configs found");
    assert!(!s.repo.join(".chronon-build").exists());
}
