//! Generates a synthetic Chronon repository for the plan benchmark: N
//! windowed group-bys (with backfills) and M joins over D days of W-day
//! windows, a hive-dir warehouse holding the source partitions, and an
//! equivalent `build.ninja` (one edge per target, its inputs the partition
//! files the target reads) for comparison with `ninja -n`.
//!
//! cargo run --release --example gen_repo -- --group-bys 200 --days 365 --window 30 --out bench/out/73k

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use chronon_build::testing::Day;

struct Args {
    group_bys: usize,
    joins: usize,
    days: i32,
    window: i32,
    sources: usize,
    ninja: bool,
    out: PathBuf,
}

fn parse_args() -> Args {
    let mut args = Args {
        group_bys: 200,
        joins: 0,
        days: 365,
        window: 30,
        sources: 20,
        ninja: true,
        out: PathBuf::from("bench/out/repo"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--no-ninja" {
            args.ninja = false;
            continue;
        }
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--group-bys" => args.group_bys = value.parse().expect("a count"),
            "--joins" => args.joins = value.parse().expect("a count"),
            "--days" => args.days = value.parse().expect("a count"),
            "--window" => args.window = value.parse().expect("a count"),
            "--sources" => args.sources = value.parse().expect("a count"),
            "--out" => args.out = PathBuf::from(value),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn group_by(i: usize, a: &Args, start: Day) -> serde_json::Value {
    serde_json::json!({
        "metaData": {"name": format!("bench.gb_{i}.v1"), "team": "bench", "outputNamespace": "bench_db"},
        "sources": [{"events": {"table": format!("raw.src_{}", i % a.sources),
            "query": {"selects": {"user": "user_id", "x": "x"}, "timeColumn": "ts"}}}],
        "keyColumns": ["user"],
        "aggregations": [{"inputColumn": "x", "operation": 7, "windows": [{"length": a.window, "timeUnit": 1}]}],
        "backfillStartDate": start.to_string(),
    })
}

fn main() {
    let a = parse_args();
    let end = Day::parse("2025-12-31").unwrap();
    let start = end.minus(a.days - 1);
    let first_source_day = start.minus(a.window + 1);
    let _ = fs::remove_dir_all(&a.out);
    let repo = a.out.join("repo");
    for i in 0..a.group_bys {
        let path = repo.join(format!("production/group_bys/bench/gb_{i}.v1"));
        write(
            &path,
            &serde_json::to_string(&group_by(i, &a, start)).unwrap(),
        );
    }
    for j in 0..a.joins {
        let parts: Vec<_> = (0..2).map(|k| serde_json::json!({"groupBy": group_by((j * 2 + k) % a.group_bys.max(1), &a, start)})).collect();
        let join = serde_json::json!({
            "metaData": {"name": format!("bench.join_{j}.v1"), "team": "bench", "outputNamespace": "bench_db"},
            "left": {"events": {"table": format!("raw.src_{}", j % a.sources),
                "query": {"selects": {"user": "user_id"}, "timeColumn": "ts", "startPartition": start.to_string()}}},
            "joinParts": parts,
        });
        write(
            &repo.join(format!("production/joins/bench/join_{j}.v1")),
            &serde_json::to_string(&join).unwrap(),
        );
    }
    write(
        &repo.join("chronon-build.toml"),
        "[executor]\nkind = \"zipline\"\n[warehouse]\nkind = \"hive-dir\"\n",
    );
    let warehouse = repo.join("warehouse");
    for s in 0..a.sources {
        for d in first_source_day.0..=end.0 {
            let dir = warehouse.join(format!("raw.db/src_{s}/ds={}", Day(d)));
            write(&dir.join("part-00000.parquet"), "rows");
        }
    }

    // The equivalent ninja graph: one edge per group-by backfill target.
    if a.ninja {
        write_ninja(&a, start, end, first_source_day);
    }
    let targets = a.group_bys as i64 * a.days as i64;
    println!(
        "{}: {} group-bys, {} joins, {} days, {}-day windows: {targets} group-by backfill targets",
        a.out.display(),
        a.group_bys,
        a.joins,
        a.days,
        a.window
    );
}

fn write_ninja(a: &Args, start: Day, end: Day, first_source_day: Day) {
    let mut ninja = String::from("rule job\n  command = touch $out\n\n");
    let part = |s: usize, d: i32| {
        format!(
            "repo/warehouse/raw.db/src_{s}/ds={}/part-00000.parquet",
            Day(d)
        )
    };
    for i in 0..a.group_bys {
        for d in start.0..=end.0 {
            let _ = write!(
                ninja,
                "build out/bench_db.db/bench_gb_{i}_v1/ds={}/part-00000.parquet: job",
                Day(d)
            );
            for back in (d - a.window - 1).max(first_source_day.0)..=d {
                let _ = write!(ninja, " {}", part(i % a.sources, back));
            }
            ninja.push('\n');
        }
    }
    write(&a.out.join("build.ninja"), &ninja);
}
