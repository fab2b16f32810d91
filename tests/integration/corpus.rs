//! The real compiled samples of the open-source Chronon repository.

use crate::{Scenario, assert_valid, chronon_build, plan_groups, schema, testdata};

#[test]
fn every_corpus_config_validates() {
    let out = chronon_build(&testdata("corpus/airbnb-chronon-samples"), &["validate"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.ends_with("ok: 41 configs, 146 graph nodes\n"),
        "{}",
        out.stdout
    );
}

#[test]
fn every_corpus_config_matches_the_config_schemas() {
    let root = testdata("corpus/airbnb-chronon-samples/production");
    let mut checked = 0;
    for (folder, schema_name) in [
        ("group_bys", "group_by.schema.json"),
        ("joins", "join.schema.json"),
        ("staging_queries", "staging_query.schema.json"),
    ] {
        let validator = schema(schema_name);
        for team in std::fs::read_dir(root.join(folder)).unwrap() {
            for file in std::fs::read_dir(team.unwrap().path()).unwrap() {
                let path = file.unwrap().path();
                let value: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
                assert_valid(&validator, &value, &path.display().to_string());
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 41);
}

#[test]
fn the_corpus_plans_with_a_reason_for_every_target_that_is_not_fresh() {
    let s = Scenario::copy("corpus/airbnb-chronon-samples");
    for day in 1..=31 {
        let day = format!("2024-01-{day:02}");
        if day != "2024-01-15" {
            s.write_partition("sample_namespace.sample_table_group_by", &day, "events");
        }
        s.write_partition("sample_table.sample_entity_snapshot", &day, "snapshot");
        s.write_partition(
            "sample_table.sample_entity_mutations/hr=00:00",
            &day,
            "mutations",
        );
        s.write_partition("sample_namespace.sample_table", &day, "rows");
    }
    let out = s.run(&["plan", "--until", "2024-01-31", "--format", "json"]);
    let groups = plan_groups(&out);
    let value: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_valid(&schema("plan.schema.json"), &value, "plan --format json");
    assert!(groups.len() > 100, "{} groups", groups.len());
    for group in &groups {
        match group["status"].as_str().unwrap() {
            "fresh" => panic!("nothing was built, yet {group} is fresh"),
            "stale" => assert!(group["reason"].is_string(), "{group}"),
            "blocked" => assert!(group["input"]["table"].is_string(), "{group}"),
            "waiting" => assert!(group["upstream"].is_string(), "{group}"),
            other => panic!("unknown status {other}"),
        }
    }
    // The event sample has every day of January but the 15th: its upload at
    // the 31st runs, the join left on the 15th is blocked on exactly that day.
    let find = |target: &str, from: &str| {
        groups
            .iter()
            .find(|g| g["target"] == target && g["from"] == from)
            .unwrap_or_else(|| panic!("no group {target} from {from}"))
    };
    assert_eq!(
        find(
            "group-by-upload:sample_team.event_sample_group_by.v1",
            "2024-01-31"
        )["reason"],
        "never-built"
    );
    let blocked = find(
        "join-left:sample_team.sample_join_derivation.v1",
        "2024-01-15",
    );
    assert_eq!(blocked["count"], 1);
    assert_eq!(
        blocked["input"]["table"],
        "sample_namespace.sample_table_group_by"
    );
    assert_eq!(blocked["input"]["partition"], "2024-01-15");
    // The staging query's output is the left side of joins: an internal
    // edge. Its missing source blocks the joins from the day it is missing.
    let blocked = find("join-left:sample_team.sample_join.v1", "2021-03-01");
    assert_eq!(
        blocked["input"]["table"], "sample_namespace.sample_table",
        "{blocked}"
    );
    assert_eq!(blocked["to"], "2023-12-31");
    assert_eq!(
        find("join-left:sample_team.sample_join.v1", "2024-01-01")["reason"],
        "never-built"
    );
    // Blocked work exits 3, --exit-code or not, as the run would.
    assert_eq!(
        s.run(&["plan", "--until", "2024-01-31", "--exit-code"])
            .code,
        3
    );
}

#[test]
fn settings_example_matches_its_schema() {
    let text = "start = \"2024-01-01\"\n[state]\npath = \"state.db\"\n[warehouse]\nkind = \"command\"\ncommand = [\"probe\", \"{table}\"]\n[consistency]\nlog_table = \"logs.requests\"\n\
        [executor]\nkind = \"zipline\"\nprogram = [\"zipline\", \"run\"]\nartifact_prefix = \"gs://a\"\nversion = \"0.1\"\njoins = \"whole\"\nstep_days = 10\ntimeout = \"6h\"\n\
        [executor.templates]\ngroup-by-upload = [\"--mode\", \"upload\", \"--conf\", \"{conf}\", \"--ds\", \"{ds}\"]\n\
        [limits]\njobs = 8\n[limits.steps]\ngroup-by-backfill = 300\n[limits.teams]\nrisk = 2\n\
        [retry]\nretries = 2\nbackoff = \"1m\"\n[streaming]\nstatus_command = [\"flink-status\", \"{config}\"]\n\
        [hooks]\non_failure = [\"page-oncall\", \"--team\", \"risk\"]\non_success_run = [\"notify\"]\ntimeout = \"30s\"\n\
        [bounds]\nstop_grace = \"10s\"\nlog_limit = \"8MiB\"\nmemory = \"4GiB\"\ntime = \"2h\"\n\
        [bounds.steps.staging-query]\nmemory = \"8GiB\"\ntime = \"30m\"\n";
    let value: serde_json::Value = toml::from_str(text).unwrap();
    assert_valid(
        &schema("settings.schema.json"),
        &value,
        "chronon-build.toml",
    );
    let s = Scenario::copy("scenario");
    std::fs::write(s.repo.join("chronon-build.toml"), text).unwrap();
    assert_eq!(s.run(&["validate"]).code, 0);
}

/// The airbnb samples as the real chronon-ai 0.0.115 compiler writes them
/// (see testdata/corpus/ORIGIN.md): it leaves `outputNamespace` and
/// `tableProperties` out of the group-bys it inlines into joins, which is
/// no reason to recompile; a real difference in what a part computes is.
#[test]
fn real_compiler_output_gets_no_false_recompile_notes() {
    let s = Scenario::copy("corpus/chronon-ai-0.0.115-compiled");
    let out = s.run(&["validate"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stdout.contains("recompile"), "{}", out.stdout);
    assert!(
        out.stdout.ends_with("ok: 59 configs, 165 graph nodes\n"),
        "{}",
        out.stdout
    );

    s.edit("production/joins/quickstart/training_set.v1", |join| {
        join["joinParts"][0]["groupBy"]["aggregations"][0]["windows"][0]["length"] = 99.into();
    });
    let out = s.run(&["validate"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains(
            "production/joins/quickstart/training_set.v1: joinParts[0].groupBy differs from \
             production/group_bys/quickstart/purchases.v1: recompile the join"
        ),
        "{}",
        out.stdout
    );
}

/// The two files chronon-ai's compiler writes with `derivations[0].expression: ""`
/// put back into its output: validate refuses them; plan sets them apart,
/// plans every other config and exits 1.
#[test]
fn real_compiler_output_with_its_invalid_files_still_plans_the_rest() {
    let s = Scenario::copy("corpus/chronon-ai-0.0.115-compiled");
    crate::copy_dir(
        &crate::testdata("corpus/chronon-ai-0.0.115-rejected"),
        &s.repo,
    );
    let validate = s.run(&["validate"]);
    assert_eq!(validate.code, 2, "{}", validate.stderr);
    let plan = s.run(&["plan", "--until", "2023-12-01"]);
    assert_eq!(plan.code, 1, "{}", plan.stderr);
    crate::assert_contains(
        &plan.stderr,
        "production/group_bys/sample_team/sample_group_by.require_backfill: derivations[0].expression: expected a non-empty string",
    );
    crate::assert_contains(&plan.stderr, "2 invalid config(s) left out");
    crate::assert_contains(&plan.stdout, "targets up to 2023-12-01");
}

/// One rule for invalid configs: every command that loads the repository
/// sets them apart, says so, does the rest and exits 1 (`graph` and
/// `explain` used to exit 0 after saying "exits 1").
#[test]
fn every_command_that_loads_configs_exits_1_when_invalid_ones_are_left_out() {
    let s = Scenario::copy("corpus/chronon-ai-0.0.115-compiled");
    crate::copy_dir(
        &crate::testdata("corpus/chronon-ai-0.0.115-rejected"),
        &s.repo,
    );
    let commands: [&[&str]; 5] = [
        &["graph"],
        &[
            "explain",
            "join-left:sample_team.sample_backfill_mutation_join.v0@2023-12-01",
            "--until",
            "2023-12-01",
        ],
        &["plan", "--until", "2023-12-01"],
        &["status", "--until", "2023-12-01"],
        &["gc", "-n", "--until", "2023-12-01"],
    ];
    for args in commands {
        let out = s.run(args);
        assert_eq!(out.code, 1, "{args:?}: {}", out.stderr);
        crate::assert_contains(&out.stderr, "2 invalid config(s) left out");
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
    // --strict refuses the repository instead.
    let strict = s.run(&["graph", "--strict"]);
    assert_eq!(strict.code, 2, "{}", strict.stderr);
}
