//! The embedded warehouse through the binary: import, ls, show, export, the
//! catalog's fingerprints, bad files, and the sqlite probe in a plan.

use std::path::Path;

use serde_json::{Value, json};

use crate::{Output, assert_contains, assert_error, chronon_build, not_fresh, show_rows};

/// A folder with no settings: the embedded warehouse is the default.
fn empty_repo() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn run(repo: &Path, args: &[&str]) -> Output {
    let out = chronon_build(repo, args);
    assert_eq!(
        out.code, 0,
        "{args:?}\nstdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    out
}

/// `warehouse ls TABLE --format json` as partition -> (rows, fingerprint).
fn catalog(repo: &Path, table: &str) -> Vec<(String, u64, String)> {
    let out = run(repo, &["warehouse", "ls", table, "--format", "json"]);
    let entries: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    entries
        .iter()
        .map(|e| {
            assert_eq!(e["table"], table);
            (
                e["partition"].as_str().unwrap().to_string(),
                e["rows"].as_u64().unwrap(),
                e["fingerprint"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

const PURCHASES: &str = "user_id,price,item,ds
1,10.5,book,2025-01-01
2,,pen,2025-01-01
1,3,,2025-01-02
";

#[test]
fn import_then_ls_show_and_export_round_trip() {
    let dir = empty_repo();
    let repo = dir.path();
    let file = write(repo, "purchases.csv", PURCHASES);
    let out = run(repo, &["warehouse", "import", "raw.purchases", &file]);
    assert_contains(
        &out.stdout,
        "imported 3 rows into raw.purchases: 2 partition(s)",
    );
    assert!(repo.join(".chronon-build/warehouse/raw.sqlite").exists());

    let entries = catalog(repo, "raw.purchases");
    assert_eq!(
        entries
            .iter()
            .map(|(p, n, _)| (p.as_str(), *n))
            .collect::<Vec<_>>(),
        [("2025-01-01", 2), ("2025-01-02", 1)]
    );
    let out = run(repo, &["warehouse", "ls"]);
    assert_eq!(
        out.stdout,
        "raw.purchases  2 partition(s) 2025-01-01..2025-01-02  3 rows\n"
    );

    let rows = show_rows(repo, "raw.purchases", "2025-01-01");
    assert_eq!(
        rows,
        json!([
            {"user_id": 1, "price": 10.5, "item": "book", "ds": "2025-01-01"},
            {"user_id": 2, "price": null, "item": "pen", "ds": "2025-01-01"},
        ])
    );
    let out = run(
        repo,
        &[
            "warehouse",
            "show",
            "raw.purchases",
            "--ds",
            "2025-01-01",
            "--limit",
            "1",
        ],
    );
    assert_eq!(
        out.stdout,
        "user_id  price  item  ds\n1        10.5   book  2025-01-01\n(1 row(s))\n"
    );

    // Export, then import the export into another table: the same rows, so
    // the same fingerprints.
    let mut exported = String::new();
    for day in ["2025-01-01", "2025-01-02"] {
        let out = run(repo, &["warehouse", "export", "raw.purchases", "--ds", day]);
        let text = out.stdout;
        if exported.is_empty() {
            exported.push_str(&text);
        } else {
            exported.push_str(text.split_once('\n').unwrap().1);
        }
    }
    assert_eq!(exported, PURCHASES);
    let copy = write(repo, "copy.csv", &exported);
    run(repo, &["warehouse", "import", "copy.purchases", &copy]);
    let fingerprints = |t| {
        catalog(repo, t)
            .into_iter()
            .map(|(_, _, f)| f)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        fingerprints("copy.purchases"),
        fingerprints("raw.purchases")
    );

    // JSON lines, with a partition column of another name.
    let file = write(
        repo,
        "users.jsonl",
        "{\"user_id\": 1, \"country\": \"FR\", \"vip\": true, \"dt\": \"2025-01-01\"}\n\n{\"user_id\": 2, \"dt\": \"2025-01-01\", \"tags\": [\"a\"]}\n",
    );
    run(
        repo,
        &[
            "warehouse",
            "import",
            "users",
            &file,
            "--partition-column",
            "dt",
        ],
    );
    let rows = show_rows(repo, "default.users", "2025-01-01");
    assert_eq!(
        rows,
        json!([
            {"user_id": 1, "country": "FR", "vip": 1, "dt": "2025-01-01", "tags": null},
            {"user_id": 2, "country": null, "vip": null, "dt": "2025-01-01", "tags": "[\"a\"]"},
        ])
    );
}

#[test]
fn fingerprints_change_when_and_only_when_a_partitions_rows_change() {
    let dir = empty_repo();
    let repo = dir.path();
    let import = |name: &str, text: &str| {
        let file = write(repo, name, text);
        run(repo, &["warehouse", "import", "raw.purchases", &file]);
        catalog(repo, "raw.purchases")
    };
    let first = import("a.csv", PURCHASES);

    // The same rows again, in another order and column order: unchanged.
    let reordered =
        "ds,item,price,user_id\n2025-01-02,,3,1\n2025-01-01,pen,,2\n2025-01-01,book,10.5,1\n";
    assert_eq!(import("b.csv", reordered), first);

    // One value changed in one partition: only that partition changes.
    let changed = import("c.csv", "user_id,price,item,ds\n1,4,,2025-01-02\n");
    assert_eq!(changed[0], first[0]);
    assert_ne!(changed[1].2, first[1].2);
    assert_eq!(changed[1].1, 1);

    // Back to the old value: the old fingerprint.
    let back = import("d.csv", "user_id,price,item,ds\n1,3,,2025-01-02\n");
    assert_eq!(back, first);

    // A duplicated row is a change; so is a removed one.
    let doubled = import(
        "e.csv",
        "user_id,price,item,ds\n1,3,,2025-01-02\n1,3,,2025-01-02\n",
    );
    assert_ne!(doubled[1].2, first[1].2);
    assert_eq!(doubled[1].1, 2);

    // Columns keep their type: a JSON number into the text-typed import of
    // the same value stores the same row.
    let number = import(
        "g.jsonl",
        "{\"user_id\": 1, \"price\": 3, \"ds\": \"2025-01-02\"}\n",
    );
    assert_eq!(number[1].2, first[1].2);

    // A new column, even one null in every row, is a new schema: every
    // partition's fingerprint changes, the catalog following for the
    // partition not imported; a value in it changes that partition again.
    let with_null = import("h.csv", "user_id,price,item,coupon,ds\n1,3,,,2025-01-02\n");
    assert_ne!(with_null[1].2, first[1].2);
    assert_ne!(with_null[0].2, first[0].2);
    assert_eq!(with_null[0].1, first[0].1);
    let with_value = import(
        "i.csv",
        "user_id,price,item,coupon,ds\n1,3,,X1,2025-01-02\n",
    );
    assert_ne!(with_value[1].2, with_null[1].2);
    assert_eq!(with_value[0], with_null[0]);
}

#[test]
fn bad_files_are_refused_with_file_and_field_and_nothing_is_written() {
    let dir = empty_repo();
    let repo = dir.path();
    let good = write(repo, "good.csv", PURCHASES);
    run(repo, &["warehouse", "import", "raw.purchases", &good]);
    let before = catalog(repo, "raw.purchases");
    let rows_before = show_rows(repo, "raw.purchases", "2025-01-01");

    let cases = [
        (
            "date.csv",
            "user_id,ds\n7,2025-01-01\n8,2025-13-01\n",
            "date.csv: raw.purchases: row 2: ds: expected a yyyy-MM-dd date, got \"2025-13-01\"",
        ),
        (
            "nods.csv",
            "user_id,day\n7,2025-01-01\n",
            "nods.csv: raw.purchases: no partition column \"ds\" among the columns [\"user_id\", \"day\"]",
        ),
        (
            "ragged.csv",
            "user_id,ds\n7,2025-01-01,extra\n",
            "ragged.csv: CSV error",
        ),
        (
            "broken.jsonl",
            "{\"user_id\": 7, \"ds\": \"2025-01-01\"}\n{\"user_id\": \n",
            "broken.jsonl:2: malformed JSON",
        ),
        (
            "list.jsonl",
            "[1, 2]\n",
            "list.jsonl:1: expected a JSON object",
        ),
        (
            "twice.csv",
            "ds,DS\n2025-01-01,x\n",
            "twice.csv: column \"DS\" appears twice",
        ),
        ("data.parquet", "PAR1", "data.parquet: expected a .csv file"),
    ];
    for (name, text, message) in cases {
        let file = write(repo, name, text);
        let out = chronon_build(repo, &["warehouse", "import", "raw.purchases", &file]);
        assert_error(&out, message);
    }
    let out = chronon_build(repo, &["warehouse", "import", "raw.pur-chases", &good]);
    assert_error(
        &out,
        "\"raw.pur-chases\": expected a table name like ns.table",
    );
    let out = chronon_build(
        repo,
        &["warehouse", "import", "raw.purchases", "missing.csv"],
    );
    assert_error(&out, "missing.csv");
    let out = chronon_build(
        repo,
        &[
            "warehouse",
            "import",
            "raw.purchases",
            &good,
            "--partition-column",
            "item",
        ],
    );
    assert_error(&out, "the table is partitioned by \"ds\", not \"item\"");
    let out = chronon_build(
        repo,
        &["warehouse", "show", "raw.nothing", "--ds", "2025-01-01"],
    );
    assert_error(&out, "raw.nothing: no such table");

    assert_eq!(catalog(repo, "raw.purchases"), before);
    assert_eq!(show_rows(repo, "raw.purchases", "2025-01-01"), rows_before);
    // A refused import into a new namespace leaves no file behind.
    let file = write(repo, "bad.csv", "user_id,ds\n7,yesterday\n");
    assert_error(
        &chronon_build(repo, &["warehouse", "import", "fresh.t", &file]),
        "ds: expected a yyyy-MM-dd date",
    );
    let files: Vec<String> = std::fs::read_dir(repo.join(".chronon-build/warehouse"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("fresh"))
        .collect();
    assert!(files.is_empty(), "{files:?}");
}

#[test]
fn the_sqlite_probe_finds_imported_sources_for_the_plan() {
    let s = crate::Scenario::copy("scenario");
    std::fs::write(
        s.repo.join("chronon-build.toml"),
        "[warehouse]\nkind = \"sqlite\"\n",
    )
    .unwrap();
    let mut csv = String::from("user_id,amount,ts,ds\n");
    for day in 1..=6 {
        csv.push_str(&format!("1,{day},0,2025-01-{day:02}\n"));
    }
    let file = write(&s.repo, "purchases.csv", &csv);
    run(&s.repo, &["warehouse", "import", "raw.purchases", &file]);
    let out = s.run(&[
        "plan",
        "--until",
        "2025-01-07",
        "--select",
        "risk.purchases.v1",
        "--step",
        "group-by-backfill",
        "--format",
        "json",
    ]);
    // The backfill starts 2025-01-05 and reads four days back: the 5th and
    // 6th have their inputs, the 7th is blocked on the missing day.
    assert_eq!(
        not_fresh(&out),
        [
            "group-by-backfill:risk.purchases.v1 2025-01-05..2025-01-06 stale never-built",
            "group-by-backfill:risk.purchases.v1 2025-01-07..2025-01-07 blocked",
        ]
    );
}

/// `warehouse show` for people: an aligned table wrapped to the terminal's
/// width, reals without float noise; CSV and JSON keep every digit; a
/// partition the table does not have is an error, an empty one is not.
#[test]
fn show_is_readable_in_a_terminal_and_exact_for_machines() {
    let dir = empty_repo();
    let repo = dir.path();
    let long = "a long description that goes on and on ".repeat(8);
    let file = write(
        repo,
        "wide.csv",
        &format!(
            "id,total,note,ds\n1,1125.1399999999999,{long},2025-01-01\n2,0.30000000000000004,short,2025-01-01\n"
        ),
    );
    run(repo, &["warehouse", "import", "raw.wide", &file]);
    let mut cmd = crate::command(repo);
    cmd.args(["warehouse", "show", "raw.wide", "--ds", "2025-01-01"])
        .env("COLUMNS", "60");
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.lines().all(|l| l.chars().count() <= 60), "{text}");
    assert!(text.lines().count() > 4, "the note wraps:\n{text}");
    // Too wide for the terminal: one block per row, long values wrapped.
    assert_contains(&text, "-[ row 1 ]\nid    | 1\ntotal | 1125.14\n");
    assert_contains(&text, "total | 0.3\n");
    assert!(!text.contains("1125.1399999999999"), "{text}");

    let csv = run(
        repo,
        &[
            "warehouse",
            "show",
            "raw.wide",
            "--ds",
            "2025-01-01",
            "--format",
            "csv",
        ],
    );
    assert!(
        csv.stdout
            .starts_with("id,total,note,ds\n1,1125.1399999999999,"),
        "{}",
        csv.stdout
    );
    let json = show_rows(repo, "raw.wide", "2025-01-01");
    assert_eq!(json[0]["total"], json!(1125.1399999999999));

    let out = chronon_build(
        repo,
        &["warehouse", "show", "raw.wide", "--ds", "2025-01-02"],
    );
    assert_error(
        &out,
        "raw.wide: no partition 2025-01-02: it has 1 partition(s), 2025-01-01..2025-01-01",
    );
    let out = chronon_build(
        repo,
        &["warehouse", "export", "raw.wide", "--ds", "2025-01-02"],
    );
    assert_error(&out, "raw.wide: no partition 2025-01-02");
}
