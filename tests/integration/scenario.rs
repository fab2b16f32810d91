//! The hand-made scenario: every step kind's inputs, written out by hand.

use crate::{HIVE_DIR, Scenario, assert_contains, chronon_build, testdata};

/// (node, [(table, lookback, shift, cutoff_from, required, producer)]).
type Expected = (
    &'static str,
    Vec<(
        &'static str,
        &'static str,
        u64,
        Option<&'static str>,
        bool,
        Option<&'static str>,
    )>,
);

fn expected() -> Vec<Expected> {
    let purchases = ("raw.purchases", "4", 0, Some("2025-01-01"), true, None);
    let checkout_left = (
        "risk_db.risk_checkout_v1_bootstrap",
        "0",
        0,
        None,
        true,
        Some("join-left:risk.checkout.v1"),
    );
    let merchants = (
        "risk_db.risk_merchants_v1",
        "0",
        0,
        None,
        true,
        Some("staging-query:risk.merchants.v1"),
    );
    let mutations = ("raw.merchant_mutations/hr=00:00", "0", 0, None, true, None);
    let returns_left = (
        "risk_db.risk_returns_join_v1_bootstrap",
        "0",
        0,
        None,
        true,
        Some("join-left:risk.returns_join.v1"),
    );
    vec![
        (
            "staging-query:risk.merchants.v1",
            vec![("raw.merchants", "0", 0, None, true, None)],
        ),
        // Windows 3d and 12h: the longest, 3 days, plus the hop-tail day.
        ("group-by-backfill:risk.purchases.v1", vec![purchases]),
        ("group-by-upload:risk.purchases.v1", vec![purchases]),
        (
            "upload-to-kv:risk.purchases.v1",
            vec![(
                "risk_db.risk_purchases_v1__upload",
                "0",
                0,
                None,
                true,
                Some("group-by-upload:risk.purchases.v1"),
            )],
        ),
        (
            "group-by-streaming:risk.purchases.v1",
            vec![(
                "upload-to-kv:risk.purchases.v1",
                "0",
                0,
                None,
                true,
                Some("upload-to-kv:risk.purchases.v1"),
            )],
        ),
        ("metadata-upload:risk.purchases.v1", vec![]),
        // Unwindowed with lag 1: all history from the cutoff, shifted a day.
        (
            "group-by-backfill:risk.returns.v1",
            vec![("raw.returns", "all", 1, Some("2025-01-02"), true, None)],
        ),
        // TEMPORAL entities: the snapshot (written by the staging query) and the mutations.
        (
            "group-by-backfill:risk.merchant_profile.v1",
            vec![merchants, mutations],
        ),
        (
            "join-left:risk.checkout.v1",
            vec![("raw.checkouts", "0", 0, Some("2025-01-03"), true, None)],
        ),
        (
            "join-part:risk.checkout.v1#risk_purchases_v1",
            vec![checkout_left, purchases],
        ),
        (
            "join-part:risk.checkout.v1#m_risk_merchant_profile_v1",
            vec![checkout_left, merchants, mutations],
        ),
        (
            "join-final:risk.checkout.v1",
            vec![
                checkout_left,
                (
                    "risk_db.risk_checkout_v1_risk_purchases_v1",
                    "0",
                    0,
                    None,
                    true,
                    Some("join-part:risk.checkout.v1#risk_purchases_v1"),
                ),
                (
                    "risk_db.risk_checkout_v1_m_risk_merchant_profile_v1",
                    "0",
                    0,
                    None,
                    true,
                    Some("join-part:risk.checkout.v1#m_risk_merchant_profile_v1"),
                ),
                ("risk_db.checkout_labels", "0", 0, None, false, None),
            ],
        ),
        ("metadata-upload:risk.checkout.v1", vec![]),
        (
            "log-flattener:risk.checkout.v1",
            vec![("default.chronon_log_table", "0", 0, None, true, None)],
        ),
        (
            "build-comparison-table:risk.checkout.v1",
            vec![
                (
                    "risk_db.risk_checkout_v1_logged",
                    "0",
                    0,
                    None,
                    true,
                    Some("log-flattener:risk.checkout.v1"),
                ),
                ("raw.checkouts", "0", 0, Some("2025-01-03"), true, None),
                purchases,
                merchants,
                mutations,
            ],
        ),
        (
            "consistency-metrics-compute:risk.checkout.v1",
            vec![(
                "risk_db.risk_checkout_v1_comparison",
                "0",
                0,
                None,
                true,
                Some("build-comparison-table:risk.checkout.v1"),
            )],
        ),
        (
            "join-left:risk.returns_join.v1",
            vec![("raw.checkouts", "0", 0, Some("2025-01-03"), true, None)],
        ),
        (
            "join-part:risk.returns_join.v1#risk_purchases_v1",
            vec![returns_left, purchases],
        ),
        (
            "join-final:risk.returns_join.v1",
            vec![
                returns_left,
                (
                    "risk_db.risk_returns_join_v1_risk_purchases_v1",
                    "0",
                    0,
                    None,
                    true,
                    Some("join-part:risk.returns_join.v1#risk_purchases_v1"),
                ),
            ],
        ),
        // A joinSource: the join's output, with the 2-day window plus the hop tail.
        (
            "group-by-backfill:risk.checkout_chain.v1",
            vec![(
                "risk_db.risk_checkout_v1",
                "3",
                0,
                None,
                true,
                Some("join-final:risk.checkout.v1"),
            )],
        ),
    ]
}

#[test]
fn every_step_kind_has_the_inputs_written_out_by_hand() {
    let out = chronon_build(&testdata("scenario"), &["graph", "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let graph: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    crate::assert_valid(
        &crate::schema("graph.schema.json"),
        &graph,
        "graph --format json",
    );
    let mut actual: Vec<(String, Vec<String>)> = graph["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let inputs = n["inputs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| {
                    let lookback = match &i["lookback"] {
                        serde_json::Value::String(s) if s == "all-history" => "all".to_string(),
                        other => other["days"].to_string(),
                    };
                    format!(
                        "{} back={} shift={} from={} required={} producer={}",
                        i["table"].as_str().unwrap(),
                        lookback,
                        i["shift"],
                        i["cutoff_from"].as_str().unwrap_or("-"),
                        i["required"],
                        i["producer"].as_str().unwrap_or("-")
                    )
                })
                .collect();
            (n["id"].as_str().unwrap().to_string(), inputs)
        })
        .collect();
    let mut wanted: Vec<(String, Vec<String>)> = expected()
        .into_iter()
        .map(|(id, inputs)| {
            let inputs = inputs
                .into_iter()
                .map(|(table, back, shift, from, required, producer)| {
                    format!(
                        "{table} back={back} shift={shift} from={} required={required} producer={}",
                        from.unwrap_or("-"),
                        producer.unwrap_or("-")
                    )
                })
                .collect();
            (id.to_string(), inputs)
        })
        .collect();
    actual.sort();
    wanted.sort();
    assert_eq!(actual, wanted);
}

#[test]
fn models_folder_is_skipped_with_a_note() {
    let out = chronon_build(&testdata("scenario"), &["validate"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "note: skipped compiled/models/: not a config kind chronon-build schedules\nok: 7 configs, 20 graph nodes\n"
    );
}

#[test]
fn graph_dot_names_nodes_and_external_tables() {
    let out = chronon_build(
        &testdata("scenario"),
        &["graph", "--select", "risk.returns*"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.starts_with("digraph chronon {"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("\"raw.returns\" [shape=cylinder];"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("\"raw.returns\" -> \"group-by-backfill:risk.returns.v1\";"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("\"join-left:risk.returns_join.v1\" -> \"join-part:risk.returns_join.v1#risk_purchases_v1\";"));
    assert!(
        !out.stdout.contains("risk.checkout.v1"),
        "selection leaks: {}",
        out.stdout
    );
}

/// The scenario's external tables.
pub const SCENARIO_SOURCES: [&str; 6] = [
    "raw.purchases",
    "raw.checkouts",
    "raw.merchants",
    "raw.returns",
    "default.chronon_log_table",
    "risk_db.checkout_labels",
];

/// Source partitions 2025-01-01..=last for every external table of the scenario.
pub fn seed_sources(s: &Scenario, last: u32) {
    for day in 1..=last {
        let day = format!("2025-01-{day:02}");
        for table in SCENARIO_SOURCES {
            s.write_partition(table, &day, &format!("{table} {day}"));
        }
        s.write_partition("raw.merchant_mutations/hr=00:00", &day, "mutations");
    }
}

#[test]
fn a_fresh_scenario_plans_everything_as_never_built_or_blocked() {
    let s = Scenario::copy("scenario");
    seed_sources(&s, 10);
    let out = s.run(&[
        "plan",
        "--until",
        "2025-01-10",
        "--select",
        "risk.purchases.v1",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "\
group-by-backfill   risk.purchases.v1  2025-01-05..2025-01-10 (6)  stale: never-built
group-by-upload     risk.purchases.v1  2025-01-10 (1)              stale: never-built
upload-to-kv        risk.purchases.v1  2025-01-10 (1)              stale: never-built
group-by-streaming  risk.purchases.v1  -                           stale: never-built
metadata-upload     risk.purchases.v1  -                           stale: never-built
10 targets up to 2025-01-10: 0 fresh, 10 stale, 0 blocked, 0 waiting
"
    );
    // One missing source partition blocks exactly the targets that need it.
    std::fs::remove_dir_all(s.partition_dir("raw.purchases", "2025-01-08")).unwrap();
    let out = s.run(&[
        "plan",
        "--until",
        "2025-01-10",
        "--select",
        "risk.purchases.v1",
        "--step",
        "group-by-backfill",
    ]);
    assert_eq!(
        out.stdout,
        "\
group-by-backfill  risk.purchases.v1  2025-01-05..2025-01-07 (3)  stale: never-built
group-by-backfill  risk.purchases.v1  2025-01-08 (1)              blocked: missing raw.purchases ds=2025-01-08
group-by-backfill  risk.purchases.v1  2025-01-09..2025-01-10 (2)  stale: never-built
6 targets up to 2025-01-10: 0 fresh, 5 stale, 1 blocked, 0 waiting
"
    );
}

#[test]
fn the_command_probe_lists_each_table_with_one_call() {
    let s = Scenario::copy("scenario");
    let calls = s.repo.join("calls.log");
    let script = s.repo.join("probe.sh");
    std::fs::write(
        &script,
        format!(
            "echo \"$1\" >> '{}'\ncase \"$1\" in raw.purchases) for d in 01 02 03 04 05 06; do printf '2025-01-%s\\tetag-%s\\n' $d $d; done;; esac\n",
            calls.display()
        ),
    )
    .unwrap();
    std::fs::write(
        s.repo.join("chronon-build.toml"),
        format!(
            "[executor]\nkind = \"zipline\"\n[warehouse]\nkind = \"command\"\ncommand = [\"bash\", \"{}\", \"{{table}}\"]\n",
            script.display()
        ),
    )
    .unwrap();
    let out = s.run(&[
        "plan",
        "--until",
        "2025-01-07",
        "--select",
        "risk.purchases.v1",
        "--step",
        "group-by-backfill",
    ]);
    crate::assert_planned(&out);
    assert!(
        out.stdout.starts_with(
            "group-by-backfill  risk.purchases.v1  2025-01-05..2025-01-06 (2)  stale: never-built\n\
             group-by-backfill  risk.purchases.v1  2025-01-07 (1)              blocked: missing raw.purchases ds=2025-01-07\n"
        ),
        "{}",
        out.stdout
    );
    let calls = std::fs::read_to_string(&calls).unwrap();
    assert_eq!(
        calls.lines().filter(|l| *l == "raw.purchases").count(),
        1,
        "{calls}"
    );

    std::fs::write(&script, "echo 'not a partition line'\n").unwrap();
    let out = s.run(&["plan", "--until", "2025-01-07"]);
    crate::assert_error(
        &out,
        "printed a bad line 1: expected partition<TAB>fingerprint",
    );
}

/// `batch = true`: one run of the probe command for every table of a plan,
/// the tables on its standard input with their layouts; lines for a table
/// not asked for are refused.
#[test]
fn the_batch_command_probe_lists_every_table_in_one_run() {
    let s = Scenario::copy("scenario");
    let calls = s.repo.join("calls.log");
    let script = s.repo.join("probe.sh");
    std::fs::write(
        &script,
        format!(
            "echo run >> '{}'\nwhile IFS=$(printf '\\t') read -r table column format; do\n  \
             echo \"$table $column $format\" >> '{}'\n  \
             case \"$table\" in raw.purchases) for d in 01 02 03 04 05 06; do printf 'raw.purchases\\t2025-01-%s\\tetag-%s\\n' $d $d; done;; esac\n\
             done\n",
            calls.display(),
            calls.display()
        ),
    )
    .unwrap();
    std::fs::write(
        s.repo.join("chronon-build.toml"),
        format!(
            "[executor]\nkind = \"zipline\"\n[warehouse]\nkind = \"command\"\nbatch = true\ncommand = [\"bash\", \"{}\"]\n",
            script.display()
        ),
    )
    .unwrap();
    let out = s.run(&[
        "plan",
        "--until",
        "2025-01-07",
        "--select",
        "risk.purchases.v1",
        "--step",
        "group-by-backfill",
    ]);
    crate::assert_planned(&out);
    assert!(
        out.stdout.starts_with(
            "group-by-backfill  risk.purchases.v1  2025-01-05..2025-01-06 (2)  stale: never-built\n\
             group-by-backfill  risk.purchases.v1  2025-01-07 (1)              blocked: missing raw.purchases ds=2025-01-07\n"
        ),
        "{}",
        out.stdout
    );
    let calls = std::fs::read_to_string(&calls).unwrap();
    assert_eq!(calls.lines().filter(|l| *l == "run").count(), 1, "{calls}");
    assert!(calls.contains("raw.purchases ds yyyy-MM-dd"), "{calls}");

    std::fs::write(&script, "printf 'raw.nope\\t2025-01-01\\tx\\n'\n").unwrap();
    let out = s.run(&["plan", "--until", "2025-01-07"]);
    crate::assert_error(&out, "\"raw.nope\" is not a table that was asked for");
}

/// Zipline's Driver partitions by the Spark conf the compiler writes into
/// every config (`executionInfo.conf.common`'s
/// `spark.chronon.partition.column`/`.format`): with `dt` in `yyyyMMdd`, the
/// probe finds sources laid out `dt=20250110`, where before it found none.
#[test]
fn zipline_spark_conf_names_the_partition_column_and_format_probed() {
    let s = Scenario::copy("scenario");
    for day in 1..=10 {
        for table in SCENARIO_SOURCES {
            let (ns, name) = table.split_once('.').unwrap();
            let dir = s
                .repo
                .join(format!("warehouse/{ns}.db/{name}/dt=202501{day:02}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("part-00000"), table).unwrap();
        }
        let dir = s.repo.join(format!(
            "warehouse/raw.db/merchant_mutations/dt=202501{day:02}/hr=00:00"
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("part-00000"), "mutations").unwrap();
    }
    let summary = |s: &Scenario| {
        let out = s.run(&["plan", "--until", "2025-01-10"]);
        crate::assert_planned(&out);
        out.stdout.lines().last().unwrap_or_default().to_string()
    };
    // As the warehouse's default (`ds`), nothing is found.
    assert!(!summary(&s).contains(" 0 blocked"), "{}", summary(&s));
    for folder in ["group_bys", "joins", "staging_queries", "models"] {
        let dir = s.repo.join("compiled").join(folder).join("risk");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let rel = entry
                .unwrap()
                .path()
                .strip_prefix(&s.repo)
                .unwrap()
                .display()
                .to_string();
            s.edit(&rel, |conf| {
                conf["metaData"]["executionInfo"]["conf"] = serde_json::json!({"common": {
                    "spark.chronon.partition.column": "dt",
                    "spark.chronon.partition.format": "yyyyMMdd"
                }});
            });
        }
    }
    let found = summary(&s);
    assert!(found.contains(" 0 blocked"), "{found}");

    // A command probe is told the layout, and prints values in it.
    let calls = s.repo.join("calls.log");
    let script = s.repo.join("probe.sh");
    std::fs::write(
        &script,
        format!(
            "echo \"$1 $2 $3 $CHRONON_BUILD_PARTITION_COLUMN\" >> '{}'\n\
             for d in 01 02 03 04 05 06 07 08 09 10; do printf '202501%s\\tetag-%s\\n' $d $d; done\n",
            calls.display()
        ),
    )
    .unwrap();
    let settings = std::fs::read_to_string(s.repo.join("chronon-build.toml")).unwrap();
    std::fs::write(
        s.repo.join("chronon-build.toml"),
        format!(
            "[executor]\nkind = \"zipline\"\n[warehouse]\nkind = \"command\"\n\
             command = [\"bash\", \"{}\", \"{{table}}\", \"{{partition_column}}\", \"{{partition_format}}\"]\n",
            script.display()
        ),
    )
    .unwrap();
    let found = summary(&s);
    assert!(found.contains(" 0 blocked"), "{found}");
    let calls = std::fs::read_to_string(&calls).unwrap();
    assert!(
        calls.lines().any(|l| l == "raw.purchases dt yyyyMMdd dt"),
        "{calls}"
    );
    std::fs::write(s.repo.join("chronon-build.toml"), settings).unwrap();

    // An hourly format is no daily partition: refused, naming the config.
    s.edit("compiled/group_bys/risk/risk.purchases.v1", |conf| {
        conf["metaData"]["executionInfo"]["conf"]["common"]["spark.chronon.partition.format"] =
            serde_json::json!("yyyyMMddHH");
    });
    let out = s.run(&["plan", "--until", "2025-01-10"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("compiled/group_bys/risk/risk.purchases.v1")
            && out.stderr.contains("spark.chronon.partition.format")
            && out.stderr.contains("\"HH\" is not supported"),
        "{}",
        out.stderr
    );
}

/// Nothing vanishes from `plan` silently: a config without targets up to
/// `--until` is named with the reason and what to do.
#[test]
fn configs_without_targets_are_named_with_the_reason() {
    let s = Scenario::copy("scenario");
    // No start, and the primary input has no partitions yet.
    s.edit("compiled/joins/risk/risk.returns_join.v1", |join| {
        join["left"]["events"]["query"]
            .as_object_mut()
            .unwrap()
            .remove("startPartition");
    });
    // Neither backfilled nor online.
    s.edit("compiled/group_bys/risk/risk.returns.v1", |gb| {
        gb.as_object_mut().unwrap().remove("backfillStartDate");
    });
    let out = s.run(&["plan", "--until", "2025-01-10", "-v"]);
    crate::assert_planned(&out);
    let said = format!("{}{}", out.stdout, out.stderr);
    crate::assert_contains(
        &said,
        "join-left:risk.returns_join.v1: no targets: it starts at the first partition of \
         raw.checkouts, which has none yet (no startPartition names a start)",
    );
    crate::assert_contains(
        &said,
        "compiled/group_bys/risk/risk.returns.v1: no targets: the group-by has no \
         backfillStartDate and is not online",
    );
    // A start after --until.
    let out = s.run(&[
        "plan",
        "--until",
        "2025-01-04",
        "--select",
        "risk.purchases.v1",
    ]);
    crate::assert_planned(&out);
    crate::assert_contains(
        &format!("{}{}", out.stdout, out.stderr),
        "group-by-backfill:risk.purchases.v1: no targets up to --until 2025-01-04: its first \
         partition is 2025-01-05",
    );
}

/// `fingerprint = "folder"` stats each partition folder once, as ninja
/// stats an output: a file added to a partition (how Spark and Hive write)
/// restates what reads it, and a partition left alone keeps everything
/// fresh; a file rewritten in place, which it cannot see, is what the
/// default `listing` mode catches.
#[test]
fn folder_fingerprints_see_files_added_to_a_partition() {
    let s = Scenario::copy("scenario");
    std::fs::write(
        s.repo.join("chronon-build.toml"),
        format!("{HIVE_DIR}fingerprint = \"folder\"\n"),
    )
    .unwrap();
    seed_sources(&s, 10);
    let plan = |s: &Scenario| {
        let out = s.run(&[
            "plan",
            "--until",
            "2025-01-10",
            "--select",
            "risk.purchases.v1",
            "--step",
            "group-by-backfill",
        ]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.stdout
    };
    assert!(s.build_all("2025-01-10") > 0);
    assert_contains(&plan(&s), "6 targets up to 2025-01-10: 6 fresh");

    // Rewritten in place: the folder's times do not move.
    let dir = s.partition_dir("raw.purchases", "2025-01-08");
    let meta = std::fs::metadata(&dir).unwrap();
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("part-00000.csv"))
        .unwrap()
        .write_all(b" edited")
        .unwrap();
    assert_eq!(
        std::fs::metadata(&dir).unwrap().modified().unwrap(),
        meta.modified().unwrap()
    );
    assert_contains(&plan(&s), "6 fresh");

    // A file added: the folder changes, and the days that read it restate.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(dir.join("part-00001.csv"), "more").unwrap();
    let after = plan(&s);
    assert_contains(&after, "stale: input-changed raw.purchases ds=2025-01-08");
    assert!(
        !after.contains("2025-01-05..2025-01-10 (6)  fresh"),
        "{after}"
    );
}
