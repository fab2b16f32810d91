//! Issue 28, finding 6: a staging query that reads a table it does not
//! declare would never rerun when that table changes. The loader finds the
//! read in its SQL (`validate`, `diff`, and `run`, which sets the config
//! apart), and the local engine sees it when it runs the query.

use crate::{Scenario, assert_contains, assert_error, testdata};

const CHECKOUTS: &str = "production/staging_queries/quickstart/checkouts.v1";

const UNDECLARED: &str = "production/staging_queries/quickstart/checkouts.v1: query: reads \
                          data.users, which it does not declare";

/// The demo's checkouts, kept only for users with a snapshot that day.
const WITH_USERS: &str = "SELECT c.checkout_id, c.user_id, c.ts, c.ds\nFROM data.checkouts c\n\
                          JOIN data.users u ON u.user_id = c.user_id AND u.ds = c.ds\n\
                          WHERE c.ds BETWEEN '{{ start_date }}' AND '{{ end_date }}'\n  \
                          AND c.user_id IS NOT NULL";

#[test]
fn a_staging_query_reading_an_undeclared_table_is_refused_until_declared() {
    let s = Scenario::copy("demo");
    s.edit(CHECKOUTS, |sq| sq["query"] = WITH_USERS.into());

    let validate = s.run(&["validate"]);
    assert_error(&validate, UNDECLARED);
    assert_contains(&validate.stderr, "declare it in metaData.dependencies");
    let base = testdata("demo");
    let diff = s.run(&[
        "diff",
        "--base",
        base.to_str().unwrap(),
        "--until",
        "2025-09-29",
    ]);
    assert_error(&diff, UNDECLARED);

    // Set apart like any invalid config: the rest runs, the join waits.
    let run = s.run(&["run", "--until", "2025-09-29"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_contains(&run.stderr, UNDECLARED);
    assert_contains(&run.stderr, "1 invalid config(s) left out");
    assert_contains(
        &run.stdout,
        "invalid config production/staging_queries/quickstart/checkouts.v1",
    );
    assert!(
        !run.stdout.contains("ran     staging-query"),
        "{}",
        run.stdout
    );

    // The local engine, run as a job on this one file, refuses it too.
    let compute = s.run(&[
        "compute",
        "staging-query",
        "quickstart.checkouts.v1",
        "--conf",
        CHECKOUTS,
        "--from",
        "2025-09-01",
        "--until",
        "2025-09-02",
    ]);
    assert_eq!(compute.code, 1, "{}", compute.stderr);
    assert_contains(
        &compute.stderr,
        "query: reads data.users, which it does not declare: a change to data.users would \
         never rerun it; declare it in metaData.dependencies",
    );

    s.edit(CHECKOUTS, |sq| {
        sq["metaData"]["dependencies"]
            .as_array_mut()
            .unwrap()
            .push(
                r#"{"name": "wait_for_data.users_ds", "spec": "data.users/ds={{ ds }}", "start": null, "end": null}"#
                    .into(),
            );
    });
    let validate = s.run(&["validate"]);
    assert_eq!(validate.code, 0, "{}", validate.stderr);
    let diff = s.run(&[
        "diff",
        "--base",
        base.to_str().unwrap(),
        "--until",
        "2025-09-29",
    ]);
    assert_eq!(diff.code, 0, "{}", diff.stderr);
    let run = s.run(&["run", "--until", "2025-09-29"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_contains(
        &run.stdout,
        "ran     staging-query:quickstart.checkouts.v1@2025-09-01..2025-09-29",
    );

    // A change to data.users now reruns the query on the day it changed.
    let users = s.repo.join("data/users.csv");
    let text = std::fs::read_to_string(&users).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let row = lines
        .iter()
        .position(|l| l.ends_with(",2025-09-10"))
        .unwrap();
    let mut fields: Vec<&str> = lines[row].split(',').collect();
    fields[2] = if fields[2] == "0" { "1" } else { "0" };
    lines[row] = fields.join(",");
    std::fs::write(&users, lines.join("\n") + "\n").unwrap();
    let run = s.run(&["run", "--until", "2025-09-29"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_contains(
        &run.stdout,
        "ran     staging-query:quickstart.checkouts.v1@2025-09-10 ",
    );
}

/// SQL the parser cannot read is said, not passed in silence: `>>>` is
/// Spark's unsigned shift, which sqlparser does not know.
#[test]
fn a_staging_query_the_parser_cannot_read_is_noted() {
    let s = Scenario::copy("demo");
    s.edit(CHECKOUTS, |sq| {
        sq["query"] =
            "SELECT checkout_id FROM data.checkouts WHERE ds >>> '{{ start_date }}'".into()
    });
    let validate = s.run(&["validate"]);
    assert_eq!(validate.code, 0, "{}", validate.stderr);
    assert_contains(
        &validate.stdout,
        "note: production/staging_queries/quickstart/checkouts.v1: query: not read as Spark SQL",
    );
}
